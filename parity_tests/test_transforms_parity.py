"""Parity rung "transforms": the same numpy-drawn parameters through both `apply_*` functions.

uint8 operations must agree exactly; after normalization the tolerance is atol 1e-6
(docs/DESIGN.md section 5). Images are NHWC in JAX and NCHW in PyTorch, so torch outputs are
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


# ------------------------------------------------------------- GCN + ZCA (augment.normalize=zca)
#
# Both frameworks compute z = (gcn(x) - mu) @ W in float32 from the same uint8 images and the same
# float32 statistics (split.npz), so they differ only by rounding, bounded here to first order
# per output j with u = 2^-24, D = 3072 values per image, s = 55 / |c| the image's GCN scale:
#   - the image's pixel sum is exact (integers below 2^24); its mean m rounds once (u m), and
#     c = x - m rounds at most once more (u |c_k|): |dc_k| <= u (m + |c_k|);
#   - |c|^2 sums D squares: relative error ~ u sqrt(D) (the summation-length estimate of
#     parity_tests/test_layers_parity.py), halved by the square root, plus the division 55 / |c|
#     and the product c_k s: |dg_k| <= u (sqrt(D) / 2 + 3) |g_k| + u s m;
#   - g - mu rounds once: u |g_k - mu_k|; the D-term dot product with column j of W: u sqrt(D)
#     sum_k |g_k - mu_k| |W_kj|.
# Summed through W: bound_j = u [(sqrt(D) + 1) sum_k |g_k - mu_k| |W_kj| + (sqrt(D) / 2 + 3)
# sum_k |g_k| |W_kj| + s m sum_k |W_kj|]. Each framework must be within bound_j of the float64
# value, so the two within 2 bound_j of each other.

from sesemi_common import whitening  # noqa: E402
from sesemi_common.datasets import load_digits  # noqa: E402

UNIT_ROUNDOFF = 2.0**-24


@pytest.fixture(scope="module")
def zca_digits():
    """Real 32x32x3 images and their ZCA statistics (3072 x 3072; ~20 s of eigh on this CPU)."""
    digits = load_digits(32)
    return digits.test_images[:40], whitening.zca_statistics(digits.train_images)


def zca_bound(images, mean, matrix):
    """bound_j above, (N, H, W, C), in float64."""
    pixels = images.reshape(len(images), -1).astype(np.float64)
    d = pixels.shape[1]
    m = pixels.mean(axis=1, keepdims=True)
    s = whitening.GCN_SCALE / np.linalg.norm(pixels - m, axis=1, keepdims=True)
    g = whitening.global_contrast_normalize(images)
    w = np.abs(matrix.astype(np.float64))
    bound = UNIT_ROUNDOFF * ((np.sqrt(d) + 1) * (np.abs(g - mean) @ w) + (np.sqrt(d) / 2 + 3) * (np.abs(g) @ w)
                             + s * m * w.sum(axis=0))
    return bound.reshape(images.shape)


@pytest.mark.usefixtures("highest_matmul_precision")
def test_gcn_zca_within_the_float32_bound(zca_digits):
    images, (mean, matrix) = zca_digits
    expected = whitening.whiten(images, mean, matrix)
    bound = zca_bound(images, mean, matrix)
    out_jax = np.asarray(jax.jit(jt.gcn_zca)(jnp.asarray(images), mean, matrix))
    images_torch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    out_torch = as_nhwc(tt.gcn_zca(images_torch, *tt.zca_tensors((mean, matrix))))
    assert out_jax.dtype == out_torch.dtype == np.float32 and out_jax.shape == images.shape
    # Measured: JAX 0.18 and PyTorch 0.15 of bound_j from float64, 0.18 of bound_j (1.1e-5) from each other.
    assert np.all(np.abs(out_jax - expected) <= bound)
    assert np.all(np.abs(out_torch - expected) <= bound)
    assert np.all(np.abs(out_jax - out_torch) <= 2 * bound)
    # Not vacuous: the bound is ~1e-4 on values of order 1, and flattening C, H, W instead of the
    # statistics' H, W, C (a layout slip) moves the outputs by O(1).
    assert bound.max() < 1e-3 and np.abs(expected).max() > 0.5
    chw = whitening.global_contrast_normalize(images.transpose(0, 3, 1, 2).copy())
    slipped = ((chw - mean) @ matrix.astype(np.float64)).reshape(images.shape)
    assert np.abs(slipped - expected).max() > 1000 * bound.max()


def test_normalize_inputs_keeps_the_channel_path_bit_identical(np_rng):
    images, images_jax, images_torch = twin_inputs(np_rng, 5)
    mean, std = channel_stats(images)
    table = jnp.asarray(normalization_table(mean, std))
    np.testing.assert_array_equal(np.asarray(jt.normalize_inputs(images_jax, table, None)),
                                  np.asarray(jt.lookup_normalized(images_jax, table)))
    np.testing.assert_array_equal(as_nhwc(tt.normalize_inputs(images_torch, mean, std, None)),
                                  as_nhwc(tt.normalize(images_torch, mean, std)))


@pytest.mark.parametrize("n", BATCHES)
def test_noise_identical_given_the_same_noise(np_rng, n):
    """apply_noise is one float32 addition in both: exact, given the same sampled noise."""
    x = np_rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    noise = (0.15 * np_rng.normal(size=x.shape)).astype(np.float32)
    out_jax = np.asarray(jax.jit(jt.apply_noise)(jnp.asarray(x), jnp.asarray(noise)))
    out_torch = as_nhwc(tt.apply_noise(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(noise).permute(0, 3, 1, 2)))
    np.testing.assert_array_equal(out_jax, out_torch)
    np.testing.assert_array_equal(out_jax, x + noise)
