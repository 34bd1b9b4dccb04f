"""`sesemi export RUN_DIR --to PATH`: a run's model (either framework's) as a PyTorch state dict.

Default: the state dict of `sesemi_torch.models.SesemiNet` (every head), for
`model.load_state_dict(torch.load(PATH))`. With `--torchvision` (backbones resnet18 and
resnet50 only): the state dict of a plain `torchvision.models.resnet18(num_classes=C)`, whose
`fc` is the supervised head, loadable with `strict=True` without this package installed.
The key renaming is numpy; only the final `torch.save` needs torch, imported then.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import run_weights
from .commands import run_to_read

TORCHVISION_BACKBONES = ("resnet18", "resnet50")


class ExportError(ValueError):
    """A run that cannot be exported as asked; the one-line message says why and what to do."""


def torchvision_state_dict(state_dict: dict[str, np.ndarray], backbone: str) -> dict[str, np.ndarray]:
    """`backbone.*` without its prefix, `sup_head.linear.*` as `fc.*`; a method's heads are dropped
    (torchvision's ResNet has one classifier)."""
    if backbone not in TORCHVISION_BACKBONES:
        raise ExportError(f"--torchvision needs a run of {' or '.join(TORCHVISION_BACKBONES)}, and this run's "
                          f"backbone is {backbone}: drop --torchvision to export the SesemiNet state dict")
    renamed = {key.removeprefix("backbone."): value for key, value in state_dict.items()
               if key.startswith("backbone.")}
    renamed["fc.weight"], renamed["fc.bias"] = state_dict["sup_head.linear.weight"], state_dict["sup_head.linear.bias"]
    return renamed


def export(run_dir: str | Path, to: str | Path, torchvision: bool = False, step: int | None = None) -> dict:
    """Write the state dict; returns what was written (for the user's one-line report)."""
    to = Path(to)
    if not (to.parent if str(to.parent) else Path(".")).is_dir():
        raise ExportError(f"--to {to}: folder {to.parent} does not exist: create it or choose another path")
    run = run_to_read(str(run_dir), "sesemi-<framework>")
    path = run_weights.require(run, step)
    config = run.read_config()
    state_dict, info = run_weights.read(path, config)
    backbone = config.model.backbone
    if torchvision:
        state_dict = torchvision_state_dict(state_dict, backbone)
    import torch  # only here: the rest of sesemi_common is numpy-only

    torch.save({key: torch.from_numpy(np.array(value)) for key, value in state_dict.items()}, to)
    return {"to": str(to), "weights": str(path), "trained_by": info.get("framework"), "step": info.get("step"),
            "format": f"torchvision.models.{backbone}" if torchvision else "sesemi_torch SesemiNet",
            "num_classes": int(np.shape(state_dict["fc.weight" if torchvision else "sup_head.linear.weight"])[0])}
