"""Rung "transforms" for FixMatch's RandAugment: every op and Cutout, JAX (jitted) against the
torchvision twin, from the same images and the same magnitudes (docs/DESIGN.md section 5).

Exact, by construction, where both sides do integer work or single correctly rounded float32
operations: identity, autocontrast, equalize, solarize, posterize, brightness, the whole-pixel
translations and Cutout. Where they are not, a bound with its cause:

- color, contrast, sharpness (blends): torchvision computes `image * r + other * (1 - r)` as
  `image.mul(r).add_(other, alpha=1 - r)`, whose CPU kernel rounds `a + alpha * b` once (a fused
  multiply-add), where XLA rounds the product first. The two sums differ by an ulp, and when
  they straddle an integer the truncation to uint8 differs by 1 level. Measured on 64 random
  32x32 images: color 126 pixels off by 1, contrast and sharpness none.
- rotate, shear_x, shear_y (nearest-neighbour resampling): torchvision builds the inverse map in
  float64 and its grid with a float32 matmul, JAX in float32; a source coordinate within float32
  rounding of a half-pixel can pick the neighbouring pixel, whose value is arbitrary. The bound is
  therefore on how many pixels may differ, not on levels. Measured: none on 64 images.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common import randaugment as spec
from sesemi_jax import randaugment as jr
from sesemi_torch import randaugment as tr

EXACT_OPS = ("identity", "autocontrast", "equalize", "solarize", "posterize", "brightness",
             "translate_x", "translate_y")
BLEND_OPS = ("color", "contrast", "sharpness")
RESAMPLING_OPS = ("rotate", "shear_x", "shear_y")
BLEND_LEVELS = 1  # one rounding apart before the truncation to uint8: at most 1 level
TIE_FRACTION = 1e-3  # pixels whose nearest source may flip: 1 in 1,000 (measured: 0)
N = 48


def _images(rng, n=N, size=32):
    """Random levels plus smooth gradients and flat images (autocontrast's and equalize's edge cases)."""
    noise = rng.integers(0, 256, (n - 4, size, size, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(40, 200, size).astype(np.uint8)[None, :, None], (size, size, 3))
    flat = np.full((size, size, 3), 77, np.uint8)
    two_levels = np.where(np.arange(size)[:, None, None] < size // 2, 10, 250).astype(np.uint8) * np.ones((1, size, 3), np.uint8)
    return np.concatenate([noise, ramp[None], flat[None], two_levels[None], ramp.transpose(1, 0, 2)[None]])


def _magnitudes(rng, n=N):
    """Random magnitudes with both ends and the middle of the range among them."""
    m = rng.random(n, dtype=np.float32)
    m[:3] = [0.0, 0.5, np.nextafter(np.float32(1), np.float32(0))]
    return m


def _torch_nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def _both(images, name, m):
    j = np.asarray(jax.jit(jr.apply_op, static_argnums=1)(jnp.asarray(images), name, m))
    t = _torch_nhwc(tr.apply_op(torch.from_numpy(images).permute(0, 3, 1, 2), name, torch.from_numpy(m)))
    return j.astype(np.int32), t.astype(np.int32)


def test_ops_partition():
    assert sorted(EXACT_OPS + BLEND_OPS + RESAMPLING_OPS) == sorted(spec.OPS)


@pytest.mark.parametrize("name", EXACT_OPS)
def test_integer_and_single_rounding_ops_are_exact(name, np_rng):
    images, m = _images(np_rng), _magnitudes(np_rng)
    j, t = _both(images, name, m)
    np.testing.assert_array_equal(j, t)


@pytest.mark.parametrize("name", BLEND_OPS)
def test_blend_ops_within_one_level(name, np_rng):
    images, m = _images(np_rng), _magnitudes(np_rng)
    j, t = _both(images, name, m)
    assert np.abs(j - t).max() <= BLEND_LEVELS


@pytest.mark.parametrize("name", RESAMPLING_OPS)
def test_resampling_ops_differ_only_at_rare_ties(name, np_rng):
    images, m = _images(np_rng), _magnitudes(np_rng)
    j, t = _both(images, name, m)
    assert np.mean(np.any(j != t, axis=-1)) <= TIE_FRACTION
    assert not np.array_equal(j, images)  # the op did move pixels


def test_cutout_is_exact(np_rng):
    images = _images(np_rng)
    params = np_rng.random((N, 3), dtype=np.float32)
    params[0] = [0.0, 0.99, 0.99]  # clipped at the top and right border
    j = np.asarray(jax.jit(jr.cutout)(jnp.asarray(images), params))
    t = _torch_nhwc(tr.cutout(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(params)))
    np.testing.assert_array_equal(j, t)
    assert (j == spec.FILL).all(axis=-1).any(axis=(1, 2)).sum() >= N // 2  # most images got a square


def test_two_layers_then_cutout_each_within_its_op_bound(np_rng):
    """The whole strong augmentation: each layer compared from the same input (torch's output of
    the previous one, so a 1-level blend difference is not amplified by the next op), then Cutout."""
    images = _images(np_rng)
    ops, magnitudes, cutout = spec.sample_numpy(np_rng, N)
    current = images
    for layer in range(spec.NUM_LAYERS):
        j = np.asarray(jax.jit(jr.apply_layer)(jnp.asarray(current), ops[:, layer], magnitudes[:, layer]))
        t = np.stack([_torch_nhwc(tr.apply_op_one(torch.from_numpy(image).permute(2, 0, 1), spec.OPS[op],
                                                  np.float32(m))[None])[0]
                      for image, op, m in zip(current, ops[:, layer], magnitudes[:, layer])])
        for i, op in enumerate(ops[:, layer]):
            name, diff = spec.OPS[op], np.abs(j[i].astype(np.int32) - t[i])
            if name in RESAMPLING_OPS:
                assert np.mean(diff.any(axis=-1)) <= TIE_FRACTION, name
            else:
                assert diff.max() <= (BLEND_LEVELS if name in BLEND_OPS else 0), name
        current = t
    final_t = _torch_nhwc(tr.apply(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(ops),
                                   torch.from_numpy(magnitudes), torch.from_numpy(cutout)))
    np.testing.assert_array_equal(final_t, np.asarray(jr.cutout(jnp.asarray(current), cutout)))
    exact = np.isin(ops, [spec.op_index(n) for n in EXACT_OPS]).all(axis=1)
    assert exact.any()
    final_j = np.asarray(jax.jit(jr.apply)(jnp.asarray(images), ops, magnitudes, cutout))
    np.testing.assert_array_equal(final_j[exact], final_t[exact])
