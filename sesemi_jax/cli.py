"""`sesemi-jax train | eval | predict | export`: the same options and config file as `sesemi-torch`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from sesemi_common import commands
from sesemi_common.config import Config
from sesemi_common.methods import ema_decay
from sesemi_common.runs import RunDir
from sesemi_common.weights import extra_heads

from . import checkpoints, loop, tta
from .convert import WeightsError, state_dict_from_variables, variables_from_state_dict
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
                            make_optimizer(config.optim, config.train.steps), config.train.seed, ema_decay(config))
        state = checkpoints.restore(run.checkpoints, like, step)
        return state_dict_from_variables(loop.eval_variables(state, config), config.model.backbone), int(state.step)


def main(argv: Sequence[str] | None = None) -> int:
    return commands.main(JaxBackend(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
