"""Parity rung "transforms": the same numpy-drawn parameters through both `apply_*` functions.

uint8 operations must agree exactly; after normalization the tolerance is atol 1e-6
(DESIGN.md section 5). Images are NHWC in JAX and NCHW in PyTorch, so torch outputs are
compared after a permute.

Normalization is exact too, stricter than the table's atol 1e-6: both sides look pixels up in
one numpy-built table (`sesemi_common.stats.normalization_table`). Computed with each framework's
arithmetic it was not: XLA rewrites `x / 255.0` into `x * float32(1/255)` where torch divides,
one ulp apart for 126 of the 256 levels, and 1/std scales that ulp (up to 1.4e-6 for std ~ 0.1,
over atol 1e-6).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common.stats import channel_stats, normalization_table

from sesemi_jax import transforms as jt
from sesemi_torch import transforms as tt

BATCHES = (1, 3, 8, 17)
CROPS = (("reflect", 2), ("constant", 4))  # translate by up to 2 px; pad 4 + random crop


def as_nhwc(images_nchw: torch.Tensor) -> np.ndarray:
    return images_nchw.permute(0, 2, 3, 1).numpy()


def twin_inputs(np_rng, n, height=32, width=32):
    images = np_rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    return images, jnp.asarray(images), torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("proxy", ["rotate_flip", "rotation"])
def test_proxy_views_identical(np_rng, n, proxy):
    _, images_jax, images_torch = twin_inputs(np_rng, n)
    views_jax, targets_jax = jt.proxy_views(images_jax, proxy)
    views_torch, targets_torch = tt.proxy_views(images_torch, proxy)
    np.testing.assert_array_equal(np.asarray(views_jax), as_nhwc(views_torch))
    np.testing.assert_array_equal(np.asarray(targets_jax), targets_torch.numpy())


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("mode, padding", CROPS)
def test_crop_identical(np_rng, n, mode, padding):
    _, images_jax, images_torch = twin_inputs(np_rng, n, height=32, width=24)
    offsets = np_rng.integers(0, 2 * padding + 1, (n, 2)).astype(np.int32)
    out_jax = jt.apply_crop(images_jax, offsets, padding, mode)
    out_torch = tt.apply_crop(images_torch, offsets, padding, mode)
    np.testing.assert_array_equal(np.asarray(out_jax), as_nhwc(out_torch))


@pytest.mark.parametrize("n", BATCHES)
def test_hflip_identical(np_rng, n):
    _, images_jax, images_torch = twin_inputs(np_rng, n)
    flags = np_rng.random(n) < 0.5
    np.testing.assert_array_equal(np.asarray(jt.apply_hflip(images_jax, flags)),
                                  as_nhwc(tt.apply_hflip(images_torch, flags)))


@pytest.mark.parametrize("n", BATCHES)
def test_normalize_identical(np_rng, n):
    images, images_jax, images_torch = twin_inputs(np_rng, n)
    mean, std = channel_stats(images)
    std[0] = 0.1  # a small std magnifies any rounding difference
    out_torch = as_nhwc(tt.normalize(images_torch, mean, std))
    out_jax = np.asarray(jt.normalize(images_jax, mean, std))
    jitted = np.asarray(jax.jit(jt.lookup_normalized)(images_jax, jnp.asarray(normalization_table(mean, std))))
    assert out_jax.dtype == out_torch.dtype == np.float32
    np.testing.assert_array_equal(out_jax, out_torch)
    np.testing.assert_array_equal(jitted, out_torch)


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("mode, padding", CROPS)
@pytest.mark.parametrize("proxy", ["rotate_flip", "rotation"])
def test_training_inputs_identical(np_rng, n, mode, padding, proxy):
    """Both branches as a step builds them: crop, flip, normalize; crop, proxy views, normalize."""
    images, images_jax, images_torch = twin_inputs(np_rng, n)
    mean, std = channel_stats(images)
    offsets = np_rng.integers(0, 2 * padding + 1, (n, 2)).astype(np.int32)
    flags = np_rng.random(n) < 0.5

    def supervised(t, images):
        return t.normalize(t.apply_hflip(t.apply_crop(images, offsets, padding, mode), flags), mean, std)

    def self_supervised(t, images):
        views, _ = t.proxy_views(t.apply_crop(images, offsets, padding, mode), proxy)
        return t.normalize(views, mean, std)

    for branch in (supervised, self_supervised):
        np.testing.assert_array_equal(np.asarray(branch(jt, images_jax)), as_nhwc(branch(tt, images_torch)),
                                      err_msg=branch.__name__)
