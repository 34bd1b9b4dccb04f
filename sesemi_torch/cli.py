"""`sesemi-torch train | eval | predict | export`: the same options and config file as `sesemi-jax`.

`torchrun --nproc-per-node N -m sesemi_torch.cli train ...` trains in N processes (see distributed.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sesemi_common import commands
from sesemi_common.config import Config
from sesemi_common.runs import RunDir
from sesemi_common.weights import extra_heads

from . import checkpoints, distributed, loop, transforms, tta
from .convert import WeightsError, load_arrays
from .methods import registry
from .models import make_model
from .run_weights import state_dict_arrays


class TorchBackend:
    name = "torch"
    user_errors = (WeightsError, distributed.PeerStopped)

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict:
        return loop.fit(config, run_dir, resume=resume, **options)

    def classifier(self, state_dict: dict, source: str, config: Config, mean: np.ndarray, std: np.ndarray,
                   zca: tuple[np.ndarray, np.ndarray] | None) -> commands.Classifier:
        # Built from the state dict's own heads and classes (see sesemi_jax/cli.py).
        model = make_model(config.model.backbone, state_dict["sup_head.linear.weight"].shape[0],
                           extra_heads(state_dict), config.model.dropout)
        load_arrays(model, state_dict, source)
        mean, std = torch.as_tensor(mean), torch.as_tensor(std)
        zca = None if zca is None else transforms.zca_tensors(zca)
        return lambda images: tta.predict_scores(model, images, config, mean, std, zca=zca)

    def checkpoint_state_dict(self, run: RunDir, config: Config, num_classes: int,
                              step: int | None) -> tuple[dict, int]:
        model = make_model(config.model.backbone, num_classes, registry.get(config.method.name).heads,
                           config.model.dropout)
        saved = checkpoints.restore(run.checkpoints, step)
        model.load_state_dict(ema_weights(saved["ema"]) if config.train.eval_ema else saved["model"])
        return state_dict_arrays(model), int(saved["step"])


def ema_weights(ema_state_dict: dict) -> dict:
    """The model's state dict inside an `AveragedModel`'s (its `module.` entries)."""
    return {k.removeprefix("module."): v for k, v in ema_state_dict.items() if k.startswith("module.")}


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster on CPU)")
    parser.add_argument("--device", default="cpu", help="torch device to train on: cpu (default), cuda or cuda:N "
                                                        "(under torchrun: cuda, the GPU of each LOCAL_RANK)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the train step's model (needs a C++ compiler; the first steps compile)")


def main(argv: Sequence[str] | None = None) -> int:
    process = distributed.start()
    try:
        return commands.main(TorchBackend(), argv, train_options=_train_options,
                             fit_options=lambda args: {"channels_last": args.channels_last, "device": args.device,
                                                       "compile_model": args.compile},
                             process=process, synchronize=distributed.synchronize)
    finally:
        distributed.stop()


if __name__ == "__main__":
    raise SystemExit(main())
