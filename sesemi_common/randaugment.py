"""RandAugment as FixMatch uses it (Sohn et al. 2020, appendix table 12), framework-free parts.

Each image gets `NUM_LAYERS` ops drawn uniformly from `OPS`, each with its own magnitude m
drawn uniformly in [0, 1), then Cutout. The parameters are three arrays per image, drawn by
`sample_numpy` here (lockstep HostStream) or by the trainers' samplers (same shapes, same
meaning), and applied by the pure twins `sesemi_jax.randaugment` and `sesemi_torch.randaugment`:

    ops         int32 (n, NUM_LAYERS)    indices into OPS, applied left to right
    magnitudes  float32 (n, NUM_LAYERS)  m in [0, 1) of each op
    cutout      float32 (n, 3)           (centre row, centre column, size), each in [0, 1)

How m becomes each op's argument (the paper's ranges; both twins compute it in float32):

    rotate          degrees 30 (2m - 1), counter-clockwise for positive    [-30, 30]
    shear_x/y       coefficient 0.3 (2m - 1) (x += c y, or y += c x)          [-0.3, 0.3]
    translate_x/y   floor(0.3 (2m - 1) W + 1/2) whole pixels                 [-0.3, 0.3] of the size
    solarize        invert levels >= min(floor(256 (1 - m)), 255)           threshold [0, 1] of the range
    posterize       keep 8 - floor(5m) bits                                  [4, 8]
    color, contrast, brightness, sharpness: blend factor 0.05 + 0.9 m        [0.05, 0.95]
    identity, autocontrast, equalize: no argument
    cutout          a square of side floor(0.5 size W) centred at (floor(row H), floor(col W)),
                    clipped to the image, set to FILL                       side [0, 0.5] of the width

Geometric ops use nearest-neighbour sampling (torchvision's `affine` on tensors: the pixel
centre convention of `grid_sample(align_corners=False)`) and fill uncovered pixels with FILL.
Translations are whole pixels, so they move pixels without resampling.
"""

from __future__ import annotations

import numpy as np

OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
       "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
NUM_LAYERS = 2  # ops per image (the paper's N = 2)
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")

MAX_ROTATE_DEGREES = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # of the image's width (translate_x) or height (translate_y)
ENHANCE_MIN, ENHANCE_SPAN = 0.05, 0.9  # blend factors 0.05 + 0.9 m in [0.05, 0.95]
MIN_POSTERIZE_BITS, POSTERIZE_STEPS = 4, 5  # bits 8 - floor(5 m) in [4, 8]
CUTOUT_MAX = 0.5  # largest cutout side, as a fraction of the width
FILL = 128  # mid-gray of uncovered pixels after a geometric op, and of the cutout square


def sample_numpy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ops, magnitudes, cutout) for `n` images, in the shapes and dtypes of the module docstring."""
    ops = rng.integers(0, len(OPS), (n, NUM_LAYERS)).astype(np.int32)
    magnitudes = rng.random((n, NUM_LAYERS), dtype=np.float32)
    cutout = rng.random((n, 3), dtype=np.float32)
    return ops, magnitudes, cutout


def op_index(name: str) -> int:
    return OPS.index(name)
