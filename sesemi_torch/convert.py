"""PyTorch state dicts <-> the framework-free `.npz` that `sesemi_jax.convert` reads and writes.

The file holds the model's state dict as numpy arrays under the same names, so it needs no
conversion here: `sesemi_jax.convert` does the layout changes (OIHW <-> HWIO, ...).

Also: `python -m sesemi_torch.convert resnet18.pth resnet18.npz` turns a torchvision
state-dict file into the `.npz` that `sesemi_jax.convert.load_torchvision_weights` reads, and
`python -m sesemi_torch.convert torchvision:resnet18` does so for torchvision's ImageNet weights
by name, writing the file where sesemi_jax looks for `model.weights=torchvision:resnet18`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sesemi_common import pretrained
from sesemi_common.weights import WeightsError, read_npz, write_npz
from sesemi_torch.models import SesemiNet


def save_npz(model: nn.Module, path: str | Path) -> None:
    """Write `model.state_dict()` to exactly `path`."""
    write_npz({key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}, path)


def _checked_state_dict(module: nn.Module, arrays: dict[str, np.ndarray], source: str) -> dict:
    """`arrays` as tensors once every key and shape fits `module`; a missing
    num_batches_tracked (unused with momentum 0.1) keeps the module's own value."""
    expected = module.state_dict()
    for key in expected:
        if key not in arrays and not key.endswith("num_batches_tracked"):
            raise WeightsError(f"{source}: missing key '{key}' that the model needs "
                               "(was the file saved from another backbone?)")
    state_dict = dict(expected)
    for key, array in arrays.items():
        if key not in expected:
            raise WeightsError(f"{source}: unexpected key '{key}' that the model does not have "
                               "(was the file saved from another backbone?)")
        if tuple(array.shape) != tuple(expected[key].shape):
            raise WeightsError(f"{source}: key '{key}' has shape {tuple(array.shape)}, "
                               f"the model expects {tuple(expected[key].shape)}")
        state_dict[key] = torch.as_tensor(array, dtype=expected[key].dtype)
    return state_dict


def load_arrays(model: nn.Module, arrays: dict[str, np.ndarray], source: str) -> nn.Module:
    """Load a state dict of numpy arrays (e.g. read from a run's weights file) into `model`, in place;
    a missing, unexpected or misshapen key is a WeightsError that names it and `source`."""
    model.load_state_dict(_checked_state_dict(model, arrays, source))
    return model


def load_npz(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a `.npz` written by either framework's `save_npz` into `model`, in place."""
    return load_arrays(model, read_npz(path), f"weights file {path}")


def read_torchvision_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict (as `torch.save(resnet18().state_dict(), path)` writes it)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: pass a torchvision .pth state dict")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        # torch's own text advises weights_only=False, i.e. running the file's code: not shown.
        raise WeightsError(f"weights file {path} is not a readable torch state dict (torch.load: {type(err).__name__}): "
                           "pass a torchvision .pth, or a run's model.npz or weights/step_<N>.npz") from err
    if not isinstance(state_dict, dict):
        raise WeightsError(f"weights file {path} holds a {type(state_dict).__name__}, not a state dict")
    return state_dict


def load_torchvision_weights(model: SesemiNet, path: str | Path) -> SesemiNet:
    """Load a torchvision ResNet `.pth` into `model.backbone`; its ImageNet `fc.*` is dropped."""
    state_dict = read_torchvision_pth(path)
    if any(key.startswith("backbone.") for key in state_dict):  # a whole SesemiNet: `sesemi export`'s .pth
        return _load_sesemi_backbone(model, {k: v.numpy() for k, v in state_dict.items()}, path)
    return load_torchvision_state_dict(model, state_dict, f"weights file {path}")


def load_torchvision_state_dict(model: SesemiNet, state_dict: dict[str, torch.Tensor], source: str) -> SesemiNet:
    """A torchvision ResNet state dict into `model.backbone`: ImageNet's `fc.*` is dropped, the
    run's heads stay as they are."""
    arrays = {k: v.numpy() for k, v in state_dict.items() if not k.startswith("fc.")}
    model.backbone.load_state_dict(_checked_state_dict(model.backbone, arrays, source))
    return model


def load_backbone_weights(model: SesemiNet, path: str | Path) -> SesemiNet:
    """`model.weights`: torchvision's ImageNet weights by name (`torchvision:resnet18`), a torchvision
    `.pth`, or a `.npz` holding a whole SesemiNet (a run's `model.npz`, trained in either framework),
    whose backbone is loaded and heads dropped."""
    if pretrained.is_torchvision(path):
        from .pretrained import load_state_dict

        return load_torchvision_state_dict(model, load_state_dict(str(path)), f"model.weights={path}")
    if not str(path).endswith(".npz"):
        return load_torchvision_weights(model, path)
    return _load_sesemi_backbone(model, read_npz(path), path)


def _load_sesemi_backbone(model: SesemiNet, state_dict: dict, path) -> SesemiNet:
    """The backbone of a whole SesemiNet state dict (a run's model.npz, or the .pth `sesemi export`
    writes of it); its heads are dropped."""
    backbone_only = {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
    if not backbone_only:
        raise WeightsError(f"weights file {path} holds no 'backbone.*' keys, so it is not a run's model.npz: "
                           "pass a run's model.npz or a torchvision .pth")
    model.backbone.load_state_dict(_checked_state_dict(model.backbone, backbone_only, f"weights file {path}"))
    return model


def torchvision_pth_to_npz(pth_path: str | Path, npz_path: str | Path) -> None:
    """Rewrite a torchvision `.pth` state dict as `.npz`, same keys (fc included), for JAX."""
    write_npz({key: value.numpy() for key, value in read_torchvision_pth(pth_path).items()}, npz_path)


def torchvision_weights_to_npz(spec: str, npz_path: str | Path | None = None) -> Path:
    """Download torchvision's weights `spec` (`torchvision:resnet18`) and write them as `.npz`, same
    keys, to `npz_path`, by default where sesemi_jax looks for `model.weights=spec`."""
    from .pretrained import load_state_dict, weights_enum, weights_url

    weights = pretrained.parse(spec)
    path = Path(npz_path) if npz_path else pretrained.npz_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = {"weights": repr(weights_enum(weights)), "url": weights_url(spec)}
    write_npz({key: value.numpy() for key, value in load_state_dict(spec).items()}, path, metadata=source)
    return path


USAGE = ("usage: python -m sesemi_torch.convert TORCHVISION.pth OUT.npz\n"
         "       python -m sesemi_torch.convert torchvision:resnet18 [OUT.npz]   (default OUT: where sesemi_jax "
         "looks for model.weights=torchvision:resnet18)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and pretrained.is_torchvision(args[0]) and len(args) in (1, 2):
            print(torchvision_weights_to_npz(*args))
            return 0
        if len(args) != 2:
            print(USAGE, file=sys.stderr)
            return 2
        torchvision_pth_to_npz(*args)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
