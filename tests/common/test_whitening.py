"""sesemi_common.whitening: GCN and ZCA as the SESEMI paper's code computes them (utils.py)."""

import numpy as np
import pytest

from sesemi_common import whitening
from sesemi_common.whitening import WhiteningError, global_contrast_normalize, whiten, zca_statistics


def smooth_images(n, size=8, seed=0):
    """uint8 images with correlated neighbours and channels, so the covariance is far from diagonal."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, size // 2, size // 2, 1))
    images = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2) + rng.normal(0, 20, (n, size, size, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def paper_statistics(images):
    """The paper's zca_whitener, written out in float64: np.cov (ddof 1), + 0.1 I, SVD."""
    g = global_contrast_normalize(images)
    covariance = np.cov(g, rowvar=False)
    u, s, _ = np.linalg.svd(covariance + 0.1 * np.eye(len(covariance)))
    return g.mean(axis=0), u @ np.diag(1.0 / np.sqrt(s + 1e-10)) @ u.T


def test_gcn_centers_each_image_and_scales_its_norm_to_55():
    images = smooth_images(5)
    g = global_contrast_normalize(images)
    assert g.shape == (5, 8 * 8 * 3) and g.dtype == np.float64
    np.testing.assert_allclose(g.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 55.0, rtol=1e-12)
    # Flattened H, W, C like the paper's NHWC arrays: value (0, 0, 1) is the second feature.
    x = images[0].astype(np.float64)
    np.testing.assert_allclose(g[0, 1], 55 * (x[0, 0, 1] - x.mean()) / np.linalg.norm(x - x.mean()), rtol=1e-12)


def test_gcn_leaves_a_constant_image_at_zero():
    images = np.full((2, 4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(global_contrast_normalize(images), 0.0)


def test_statistics_match_the_papers_formula():
    images = smooth_images(300)
    mean, matrix = zca_statistics(images)
    expected_mean, expected_matrix = paper_statistics(images)
    assert mean.dtype == matrix.dtype == np.float32 and matrix.shape == (192, 192)
    # float32 storage: half an ulp of each value, relative 2^-24 (6e-8); 1e-6 leaves room for eigh vs svd.
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6, atol=1e-6 * np.abs(expected_mean).max())
    np.testing.assert_allclose(matrix, expected_matrix, rtol=0, atol=1e-6 * np.abs(expected_matrix).max())
    np.testing.assert_array_equal(matrix, matrix.T)  # symmetric, as U S U^T is


def test_chunks_do_not_change_the_statistics():
    images = smooth_images(50)
    whole, chunked = zca_statistics(images), zca_statistics(images, chunk=7)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=0, atol=1e-5)


def test_whitened_training_set_has_the_regularized_identity_covariance():
    """With W = (C + 0.1 I)^(-1/2), the whitened covariance is C (C + 0.1 I)^-1: eigenvalues
    s / (s + 0.1), near 1 where the data varies much more than 0.1 and near 0 where it does not."""
    images = smooth_images(400)
    mean, matrix = zca_statistics(images)
    white = whiten(images, mean, matrix).reshape(len(images), -1)
    np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-4)
    covariance = np.cov(global_contrast_normalize(images), rowvar=False)
    expected = covariance @ np.linalg.inv(covariance + 0.1 * np.eye(len(covariance)))
    np.testing.assert_allclose(np.cov(white, rowvar=False), expected, atol=1e-4)
    top = np.linalg.eigvalsh(np.cov(white, rowvar=False))[-1]
    assert 0.99 < top < 1.0  # the strongest direction is whitened to unit variance


def test_images_too_large_for_a_zca_matrix_are_refused():
    with pytest.raises(WhiteningError, match=r"augment.normalize=zca needs a \(27648, 27648\) matrix for images of "
                                             r"shape \(96, 96, 3\): at most 12288 values per image"):
        whitening.check_zca_size((96, 96, 3))
    whitening.check_zca_size((64, 64, 3))
