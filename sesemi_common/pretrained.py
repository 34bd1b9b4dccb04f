"""`model.weights=torchvision:<backbone>[:<variant>]`: torchvision's ImageNet weights by name.

The name is all the two frameworks share; the URL and the hash come from torchvision's own
weight enums (`torchvision.models.ResNet18_Weights.IMAGENET1K_V1`), read by
`sesemi_torch.pretrained` alone, which downloads through `torch.hub` with the hash check
(the file lands in `$TORCH_HOME/hub/checkpoints`, torch's own cache). `sesemi_jax` cannot read
the `.pth`: it reads the `.npz` that `python -m sesemi_torch.convert torchvision:resnet18`
writes to `npz_path(...)`, and says so in one line when it is missing.

The variant defaults to IMAGENET1K_V1, the weights `pretrained=True` gave, so a name always
means the same file whatever torchvision's `DEFAULT` becomes. `SESEMI_WEIGHTS_URL` replaces
the folder of the official URL (a mirror, or a local server in the tests); the file name,
which carries the hash prefix `torch.hub` checks, stays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .datasets import cache_dir
from .weights import WeightsError

PREFIX = "torchvision:"
URL_ENV = "SESEMI_WEIGHTS_URL"
DEFAULT_VARIANT = "IMAGENET1K_V1"
# The members of torchvision's ResNet18_Weights and ResNet50_Weights (DEFAULT is an alias).
VARIANTS = {"resnet18": ("IMAGENET1K_V1",), "resnet50": ("IMAGENET1K_V1", "IMAGENET1K_V2")}


@dataclass(frozen=True)
class TorchvisionWeights:
    backbone: str  # resnet18 | resnet50
    variant: str  # a member of torchvision's weight enum, e.g. IMAGENET1K_V1

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.backbone}:{self.variant}"


def is_torchvision(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def parse(spec: str) -> TorchvisionWeights:
    """`torchvision:resnet18`, `torchvision:resnet50:IMAGENET1K_V2`; anything else is a WeightsError."""
    backbone, _, variant = str(spec).removeprefix(PREFIX).partition(":")
    if backbone not in VARIANTS:
        raise WeightsError(f"model.weights={spec}: torchvision weights exist here for {', '.join(VARIANTS)}, not "
                           f"'{backbone}': use e.g. model.weights={PREFIX}resnet18")
    variant = variant or DEFAULT_VARIANT
    if variant not in VARIANTS[backbone]:
        raise WeightsError(f"model.weights={spec}: {backbone} has the torchvision weights "
                           f"{', '.join(VARIANTS[backbone])}, not '{variant}'")
    return TorchvisionWeights(backbone, variant)


def check(spec: str, backbone: str) -> TorchvisionWeights:
    """The parsed name, once it fits `model.backbone` (the run's heads replace ImageNet's fc)."""
    weights = parse(spec)
    if weights.backbone != backbone:
        raise WeightsError(f"model.weights={spec} are {weights.backbone} weights but model.backbone is {backbone}: "
                           f"set model.backbone={weights.backbone}")
    return weights


def download_url(official_url: str) -> str:
    """The official URL, or its file name under $SESEMI_WEIGHTS_URL when that is set."""
    base = os.environ.get(URL_ENV, "").strip()
    return f"{base.rstrip('/')}/{official_url.rsplit('/', 1)[-1]}" if base else official_url


def npz_path(weights: TorchvisionWeights) -> Path:
    """Where the torch-free `.npz` of the weights is kept for sesemi_jax ($SESEMI_CACHE_DIR/pretrained)."""
    return cache_dir() / "pretrained" / f"torchvision-{weights.backbone}-{weights.variant}.npz"


def missing_npz_message(spec: str) -> str:
    """sesemi_jax's one line when the `.npz` of `spec` has not been made yet."""
    path = npz_path(parse(spec))
    return (f"model.weights={spec} needs {path}, and sesemi_jax cannot read PyTorch's .pth to make it: run "
            f"`python -m sesemi_torch.convert {spec}` where torch and torchvision are installed (it downloads the "
            "weights, checks their hash and writes that file), or pass model.weights=PATH.npz")
