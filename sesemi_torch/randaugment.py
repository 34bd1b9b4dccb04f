"""RandAugment and Cutout on uint8 NCHW batches: the PyTorch twin of sesemi_jax/randaugment.py.

The ops, their magnitude ranges and the parameter layout are in `sesemi_common.randaugment`.
Each op is `torchvision.transforms.v2.functional` on one image at a time (its functions take
one scalar argument per call, and each image has its own magnitude): `autocontrast`,
`equalize`, `rotate`, `solarize`, `adjust_saturation` (color), `posterize`, `adjust_contrast`,
`adjust_brightness`, `adjust_sharpness`, and `affine` for shears and translations, nearest
interpolation, FILL outside. Only Cutout is written here (torchvision's `erase` takes one box
for the whole call; a mask over the batch is one line). Magnitudes become arguments with
numpy float32 arithmetic, the same float32 formulas as the JAX twin.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from sesemi_common import randaugment as spec

NEAREST = InterpolationMode.NEAREST


def sample_ops(generator: torch.Generator | None, n: int) -> torch.Tensor:
    return torch.randint(0, len(spec.OPS), (n, spec.NUM_LAYERS), generator=generator, dtype=torch.int32)


def sample_magnitudes(generator: torch.Generator | None, n: int) -> torch.Tensor:
    return torch.rand((n, spec.NUM_LAYERS), generator=generator, dtype=torch.float32)


def sample_cutout(generator: torch.Generator | None, n: int) -> torch.Tensor:
    return torch.rand((n, 3), generator=generator, dtype=torch.float32)


# The registry's view-parameter kinds (sesemi_common.methods.ViewParam) drawn here.
SAMPLERS = {"randaugment_ops": sample_ops, "randaugment_magnitudes": sample_magnitudes, "cutout": sample_cutout}


def sample_params(generator: torch.Generator | None, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ops int32 (n, 2), magnitudes float32 (n, 2) in [0, 1), cutout float32 (n, 3) in [0, 1))."""
    return sample_ops(generator, n), sample_magnitudes(generator, n), sample_cutout(generator, n)


def apply(images: torch.Tensor, ops, magnitudes, cutout_params) -> torch.Tensor:
    """Both drawn ops of each image, in order, then its Cutout."""
    ops, magnitudes = np.asarray(torch.as_tensor(ops).cpu()), np.asarray(torch.as_tensor(magnitudes).cpu())
    out = torch.stack([_apply_ops(image, ops[i], magnitudes[i]) for i, image in enumerate(images)]) \
        if len(images) else images
    return cutout(out, cutout_params)


def _apply_ops(image: torch.Tensor, ops: np.ndarray, magnitudes: np.ndarray) -> torch.Tensor:
    for op, m in zip(ops.tolist(), magnitudes):
        image = apply_op_one(image, spec.OPS[op], np.float32(m))
    return image


def apply_op(images: torch.Tensor, name: str, magnitudes) -> torch.Tensor:
    """One op on every image, with each image's magnitude (the unit and parity tests' entry)."""
    magnitudes = np.asarray(torch.as_tensor(magnitudes, dtype=torch.float32).cpu())
    return torch.stack([apply_op_one(image, name, np.float32(m)) for image, m in zip(images, magnitudes)])


# -- magnitude to argument (sesemi_common.randaugment's table), numpy float32 ------------------

def enhance_factor(m: np.float32) -> float:
    return float(spec.ENHANCE_MIN + spec.ENHANCE_SPAN * m)


def posterize_bits(m: np.float32) -> int:
    return 8 - min(int(np.floor(spec.POSTERIZE_STEPS * m)), 8 - spec.MIN_POSTERIZE_BITS)


def solarize_threshold(m: np.float32) -> int:
    return min(int(np.floor(256 * (1 - m))), 255)


def signed(m: np.float32, largest: float) -> np.float32:
    return np.float32(largest) * (2 * m - 1)


def translate_pixels(m: np.float32, size: int) -> int:
    return int(np.floor(signed(m, spec.MAX_TRANSLATE) * size + np.float32(0.5)))


# -- ops on one CHW image ----------------------------------------------------------------------

def _shear_degrees(m: np.float32) -> float:
    # torchvision's shear is an angle; FixMatch's a coefficient c (x += c y): tan(angle) = c.
    return math.degrees(math.atan(float(signed(m, spec.MAX_SHEAR))))


def _affine(image: torch.Tensor, translate=(0.0, 0.0), shear=(0.0, 0.0)) -> torch.Tensor:
    return F.affine(image, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                    interpolation=NEAREST, fill=float(spec.FILL))


def apply_op_one(image: torch.Tensor, name: str, m: np.float32) -> torch.Tensor:
    """Op `name` with magnitude `m` on one uint8 CHW image."""
    if name == "identity":
        return image
    if name == "autocontrast":
        return F.autocontrast(image)
    if name == "equalize":
        return F.equalize(image)
    if name == "rotate":
        return F.rotate(image, float(signed(m, spec.MAX_ROTATE_DEGREES)), interpolation=NEAREST,
                        fill=float(spec.FILL))
    if name == "solarize":
        return F.solarize(image, solarize_threshold(m))
    if name == "color":
        return F.adjust_saturation(image, enhance_factor(m))
    if name == "posterize":
        return F.posterize(image, posterize_bits(m))
    if name == "contrast":
        return F.adjust_contrast(image, enhance_factor(m))
    if name == "brightness":
        return F.adjust_brightness(image, enhance_factor(m))
    if name == "sharpness":
        return F.adjust_sharpness(image, enhance_factor(m))
    if name == "shear_x":
        return _affine(image, shear=(_shear_degrees(m), 0.0))
    if name == "shear_y":
        return _affine(image, shear=(0.0, _shear_degrees(m)))
    if name == "translate_x":
        return _affine(image, translate=(float(translate_pixels(m, image.shape[-1])), 0.0))
    if name == "translate_y":
        return _affine(image, translate=(0.0, float(translate_pixels(m, image.shape[-2]))))
    raise ValueError(f"unknown op {name!r}: one of {', '.join(spec.OPS)}")


def cutout_box(params: torch.Tensor, height: int, width: int):
    """int64 (top, left, bottom, right) per image, bottom and right exclusive, clipped to the image."""
    params = torch.as_tensor(params, dtype=torch.float32)
    side = torch.floor(params[:, 2] * spec.CUTOUT_MAX * width).long()
    top = torch.floor(params[:, 0] * height).long() - side // 2
    left = torch.floor(params[:, 1] * width).long() - side // 2
    return (top.clamp(0, height), left.clamp(0, width), (top + side).clamp(0, height), (left + side).clamp(0, width))


def cutout(images: torch.Tensor, params) -> torch.Tensor:
    """Set each image's drawn square to FILL."""
    _, _, height, width = images.shape
    top, left, bottom, right = (v.to(images.device)[:, None, None, None] for v in cutout_box(params, height, width))
    rows = torch.arange(height, device=images.device)[None, None, :, None]
    cols = torch.arange(width, device=images.device)[None, None, None, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return torch.where(inside, torch.full_like(images, spec.FILL), images)
