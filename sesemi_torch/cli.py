"""`sesemi-torch train | eval | predict`: the same options and config file as `sesemi-jax`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from sesemi_common import commands
from sesemi_common.config import Config
from sesemi_common.runs import RunDir

from . import checkpoints, loop, transforms
from .convert import WeightsError
from .methods import registry
from .models import make_model
from .train import predict_logits


class TorchBackend:
    name = "torch"
    user_errors = (WeightsError,)

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict:
        return loop.fit(config, run_dir, resume=resume, **options)

    def classifier(self, run: RunDir, config: Config, num_classes: int) -> commands.Classifier:
        model = make_model(config.model.backbone, num_classes, registry.get(config.method.name).heads,
                           config.model.dropout)
        saved = checkpoints.restore(run.checkpoints)
        model.load_state_dict(ema_weights(saved["ema"]) if config.train.eval_ema else saved["model"])
        split = run.read_split()
        mean, std = torch.as_tensor(split["mean"]), torch.as_tensor(split["std"])
        zca = None
        if config.augment.normalize == "zca":
            zca = transforms.zca_tensors((split["zca_mean"], split["zca_matrix"]))
        return lambda images: predict_logits(model, images, mean, std, config.train.eval_batch_size, zca=zca)


def ema_weights(ema_state_dict: dict) -> dict:
    """The model's state dict inside an `AveragedModel`'s (its `module.` entries)."""
    return {k.removeprefix("module."): v for k, v in ema_state_dict.items() if k.startswith("module.")}


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster on CPU)")
    parser.add_argument("--device", default="cpu", help="torch device to train on: cpu (default), cuda or cuda:N")


def main(argv: Sequence[str] | None = None) -> int:
    return commands.main(TorchBackend(), argv, train_options=_train_options,
                         fit_options=lambda args: {"channels_last": args.channels_last,
                                                            "device": args.device})


if __name__ == "__main__":
    raise SystemExit(main())
