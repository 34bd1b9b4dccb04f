"""Parity rung "transforms" and "model" for test-time augmentation (`eval.tta=8`, sesemi_common/tta.py).

The same numpy-drawn parameters (`tta.sample_params`) through both frameworks' `tta.py`:
- the 8 uint8 views are identical, and are the paper's (checked against numpy: `np.pad` reflect,
  slicing, `[:, ::-1]`);
- the normalized views plus their noise: exact with per-channel normalization (one lookup table,
  one float32 addition in both); with GCN + ZCA within the transforms rung's float32 bound
  (test_transforms_parity.zca_bound, 2 bound_j apart at most), plus one rounding of the addition
  of the same noise: 2 ulp of the noisy value;
- each image's softmax averaged over its views, from a resnet20 with weights converted through
  `.npz`, within the model rung's atol 1e-5 (probabilities, at most 1), each framework at its own
  batch size, so an image's views do not depend on its batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sesemi_common import tta, whitening
from sesemi_common.datasets import load_digits
from sesemi_common.stats import channel_stats, normalization_table
from sesemi_jax import tta as jtta
from sesemi_torch import tta as ttta
from sesemi_torch import transforms as tt

from . import test_model_parity as model_rung
from . import test_transforms_parity as transforms_rung


def as_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def numpy_views(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The paper's views from their definition: t[i, j] = x[i + dy, j + dx], mirrored at the borders."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    shifted = np.stack([p[2 + dy:2 + dy + h, 2 + dx:2 + dx + w] for p, (dy, dx) in zip(padded, shifts)])
    def flip(x):
        return x[:, :, ::-1]
    return np.stack([images, shifted, images, shifted, flip(images), flip(shifted), flip(images), flip(shifted)],
                    axis=1).reshape(-1, *images.shape[1:])


@pytest.mark.parametrize("n", [1, 5])
def test_views_identical_and_the_papers(np_rng, n):
    images = np_rng.integers(0, 256, (n, 32, 24, 3), dtype=np.uint8)
    params = tta.sample_params(images, 0.15)
    views_jax = np.asarray(jax.jit(jtta.tta_views)(jnp.asarray(images), params.crop_offsets()))
    views_torch = as_nhwc(ttta.tta_views(torch.from_numpy(images).permute(0, 3, 1, 2), params.crop_offsets()))
    assert views_jax.dtype == views_torch.dtype == np.uint8 and views_jax.shape == (n * 8, 32, 24, 3)
    np.testing.assert_array_equal(views_jax, views_torch)
    np.testing.assert_array_equal(views_jax, numpy_views(images, params.shifts))


def twin_view_inputs(images, params, norm, zca):
    """Both frameworks' normalized noisy views, NHWC."""
    mean, std = norm
    table = jnp.asarray(normalization_table(mean, std))
    out_jax = jax.jit(jtta.view_inputs)(jnp.asarray(images), params.crop_offsets(), params.noise, table, zca)
    out_torch = ttta.view_inputs(torch.from_numpy(images).permute(0, 3, 1, 2), params.crop_offsets(),
                                 torch.from_numpy(params.noise), torch.as_tensor(mean), torch.as_tensor(std),
                                 tt.zca_tensors(zca))
    return np.asarray(out_jax), as_nhwc(out_torch)


def test_normalized_noisy_views_exact_with_channel_statistics(np_rng):
    images = np_rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    params = tta.sample_params(images, 0.15)
    out_jax, out_torch = twin_view_inputs(images, params, channel_stats(images), None)
    np.testing.assert_array_equal(out_jax, out_torch)
    clean = tt.normalize(torch.from_numpy(numpy_views(images, params.shifts)).permute(0, 3, 1, 2),
                         *channel_stats(images))
    np.testing.assert_array_equal(out_torch, as_nhwc(clean) + params.noise)


@pytest.mark.usefixtures("highest_matmul_precision")
def test_normalized_noisy_views_within_the_zca_bound():
    digits = load_digits(8)  # 8x8x3: 192 x 192 statistics, fast; the bound holds for any D
    images = digits.test_images[:6]
    zca = whitening.zca_statistics(digits.train_images)
    params = tta.sample_params(images, 0.15)
    out_jax, out_torch = twin_view_inputs(images, params, channel_stats(images), zca)
    views = numpy_views(images, params.shifts)
    bound = transforms_rung.zca_bound(views, *zca)
    expected = whitening.whiten(views, *zca) + params.noise
    rounding = 2 * np.finfo(np.float32).eps * np.abs(expected)  # the noise addition, rounded once each
    assert np.all(np.abs(out_jax - out_torch) <= 2 * bound + rounding)
    assert np.all(np.abs(out_jax - expected) <= bound + rounding)
    assert np.abs(params.noise).max() > 1000 * (bound + rounding).max()  # the noise is there, far above


def test_averaged_probabilities_within_the_model_rung(np_rng, tmp_path):
    model = model_rung.torch_net("resnet20")
    flax_model, variables = model_rung.jax_twin(model, "resnet20", tmp_path)
    images = np_rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    with jax.default_matmul_precision("highest"):
        probs_jax = jtta.predict_probs(jtta.make_view_logits(flax_model), variables, images, mean, std,
                                       batch_size=16, noise_std=0.15)  # 2 images per batch
    probs_torch = ttta.predict_probs(model, images, torch.as_tensor(mean), torch.as_tensor(std), batch_size=24,
                                     noise_std=0.15)  # 3 images per batch
    assert probs_jax.dtype == probs_torch.dtype == np.float32 and probs_jax.shape == (5, 10)
    np.testing.assert_allclose(probs_jax, probs_torch, rtol=0, atol=model_rung.ATOL)
    np.testing.assert_allclose(probs_jax.sum(-1), 1.0, atol=1e-6)
    # Not vacuous: the views move the average away from the clean view's softmax.
    with torch.no_grad():
        (clean,) = model(tt.normalize(torch.from_numpy(images).permute(0, 3, 1, 2), mean, std))
    assert np.abs(probs_torch - torch.softmax(clean["sup"], -1).numpy()).max() > 100 * model_rung.ATOL
