"""`sesemi-jax train | eval | predict | export`: the same options and config file as `sesemi-torch`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from sesemi_common import commands
from sesemi_common.config import Config
from sesemi_common.methods import ema_decay
from sesemi_common.runs import RunDir
from sesemi_common.weights import extra_heads

from . import checkpoints, distributed, loop, tta
from .convert import WeightsError, state_dict_from_variables, variables_from_state_dict
from . import methods
from .methods import registry
from .models import init_variables, make_model
from .optim import make_optimizer
from .train import create_state


class JaxBackend:
    name = "jax"
    user_errors = (WeightsError,)

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict:
        return loop.fit(config, run_dir, resume=resume, **options)

    def classifier(self, state_dict: dict, source: str, config: Config, mean: np.ndarray, std: np.ndarray,
                   zca: tuple[np.ndarray, np.ndarray] | None) -> commands.Classifier:
        # The network is built from the state dict's own heads and classes, so a run of a method
        # registered elsewhere (examples/flip_proxy) needs no import to be evaluated.
        model = make_model(config.model.backbone, state_dict["sup_head.linear.weight"].shape[0],
                           extra_heads(state_dict), config.model.dropout)
        variables = variables_from_state_dict(state_dict, config.model.backbone, source=source)
        predict_scores = tta.make_predict_scores(model, config, mean, std, zca)
        return lambda images: predict_scores(variables, images)

    def checkpoint_state_dict(self, run: RunDir, config: Config, num_classes: int,
                              step: int | None) -> tuple[dict, int]:
        model = make_model(config.model.backbone, num_classes, registry.get(config.method.name).heads,
                           config.model.dropout)
        like = create_state(model, init_variables(model, jax.random.PRNGKey(0), config.data.image_size),
                            make_optimizer(config.optim, config.train.steps), config.train.seed, ema_decay(config),
                            methods.initial_state(config, num_classes, _pool_size(run)))
        state = checkpoints.restore(run.checkpoints, like, step)
        return state_dict_from_variables(loop.eval_variables(state, config), config.model.backbone), int(state.step)


def _pool_size(run: RunDir) -> int | None:
    """The run's unlabeled pool size (its split's fingerprint), which shapes a per-image method
    state (FlexMatch's); None for a run written before the split recorded it."""
    pool_n = run.read_split().get("data_pool_n")
    return None if pool_n is None else int(pool_n)


def _train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several processes", "start one `train` per process, each with the same options and its own "
        "--process-id; left out, they come from JAX_COORDINATOR_ADDRESS, Slurm or Open MPI as "
        "jax.distributed.initialize reads them")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and a free port")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes train together")
    group.add_argument("--process-id", type=int, metavar="I", help="this process: 0 to N-1 (0 writes the run)")


def _join(args: argparse.Namespace) -> dict:
    process = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    return {"process": process} if process.count > 1 else {}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = commands.main(JaxBackend(), argv, train_options=_train_options, fit_options=_join,
                             synchronize=lambda: distributed.sync("sesemi: run directory read by every process"))
    except Exception as err:  # one line from each process, not a traceback from each
        if not distributed.joined():
            raise
        print(distributed.failure_message(err), file=sys.stderr)
        code = 1
    if code and distributed.joined():
        distributed.leave(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
