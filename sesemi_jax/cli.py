"""`sesemi-jax train | eval | predict`: the same options and config file as `sesemi-torch`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax

from sesemi_common import commands
from sesemi_common.config import Config
from sesemi_common.runs import RunDir

from sesemi_common.methods import ema_decay

from . import checkpoints, loop
from .convert import WeightsError
from .methods import registry
from .models import init_variables, make_model
from .optim import make_optimizer
from .train import create_state, make_eval_logits, predict_logits


class JaxBackend:
    name = "jax"
    user_errors = (WeightsError,)

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict:
        return loop.fit(config, run_dir, resume=resume, **options)

    def classifier(self, run: RunDir, config: Config, num_classes: int) -> commands.Classifier:
        model = make_model(config.model.backbone, num_classes, registry.get(config.method.name).heads,
                           config.model.dropout)
        like = create_state(model, init_variables(model, jax.random.PRNGKey(0), config.data.image_size),
                            make_optimizer(config.optim, config.train.steps), config.train.seed, ema_decay(config))
        variables = loop.eval_variables(checkpoints.restore(run.checkpoints, like), config)
        split = run.read_split()
        eval_logits = make_eval_logits(model)
        zca = (split["zca_mean"], split["zca_matrix"]) if config.augment.normalize == "zca" else None
        return lambda images: predict_logits(eval_logits, variables, images, split["mean"], split["std"],
                                             config.train.eval_batch_size, zca)


def main(argv: Sequence[str] | None = None) -> int:
    return commands.main(JaxBackend(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
