"""Global contrast normalization then ZCA whitening, as the SESEMI paper's code preprocesses CIFAR.

The paper's Keras code (vuptran/sesemi, utils.py `global_contrast_normalize` and `zca_whitener`,
called in train_evaluate_sesemi.py lines 70-76 for CIFAR-10 and CIFAR-100):

- GCN, per image, on the image flattened in H, W, C order: subtract the image's mean over all
  its values, divide by the image's L2 norm (left alone below 1e-10), multiply by 55.
- ZCA from the GCN'd training images: covariance with ddof 1 (`np.cov`), plus 0.1 times the
  identity, decomposed as U S U^T; the matrix is U diag(1 / sqrt(S + 1e-10)) U^T and a whitened
  image is `(gcn(x) - mean) @ matrix`, `mean` the per-feature mean of the GCN'd training set.

Here the statistics are computed in float64 from the uint8 training images and stored as
float32 (what both frameworks apply on the device, after augmentation; see docs/PAPER_PRESET.md
for the order the paper used). GCN is scale-free (55 c / |c| with c the centered image), so it
is the same on 0..255 pixels as on the paper's 0..1 ones; the 1e-10 guard only ever catches a
constant image, whose centered values are 0 whatever it divides by.
"""

from __future__ import annotations

import numpy as np

GCN_SCALE = 55.0  # utils.py global_contrast_normalize(scale=55)
GCN_EPS = 1e-10  # utils.py global_contrast_normalize(eps=1e-10), on the 0..1 scale
ZCA_IDENTITY_SCALE = 0.1  # utils.py zca_whitener(identity_scale=0.1): regularizes small eigenvalues
ZCA_EPS = 1e-10  # utils.py zca_whitener(eps=1e-10)
# A (D, D) matrix for D = H * W * C: 32x32x3 is 3072 (38 MB in float32); 64x64x3 (12288, 604 MB)
# is the largest this accepts.
MAX_ZCA_FEATURES = 12288


class WhiteningError(ValueError):
    """ZCA asked of images it cannot serve (too large): a user error with a one-line fix."""


def _flat_pixels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"GCN/ZCA needs uint8 images (N, H, W, C) with N > 0, got {images.dtype} {images.shape}")
    return images.reshape(len(images), -1)


def global_contrast_normalize(images: np.ndarray) -> np.ndarray:
    """float64 (N, H*W*C): each uint8 image, flattened H, W, C, as the paper's code normalizes it."""
    x = _flat_pixels(images).astype(np.float64) / 255.0
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    norm[norm < GCN_EPS] = 1.0
    return GCN_SCALE * x / norm


def check_zca_size(image_shape: tuple[int, ...]) -> None:
    features = int(np.prod(image_shape))
    if features > MAX_ZCA_FEATURES:
        raise WhiteningError(f"augment.normalize=zca needs a ({features}, {features}) matrix for images of shape "
                             f"{tuple(image_shape)}: at most {MAX_ZCA_FEATURES} values per image (64x64x3) are "
                             "supported; use augment.normalize=channel or a smaller data.image_size")


def zca_statistics(images: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), matrix (D, D)), float32, of the GCN'd uint8 training images (N, H, W, C).

    The covariance is accumulated in float64 over chunks of `chunk` images (no float64 copy of the
    whole set). The paper decomposes the regularized covariance with `np.linalg.svd`; for this
    symmetric positive definite matrix `eigh` gives the same U S U^T, faster.
    """
    images = np.asarray(images)
    check_zca_size(images.shape[1:])
    if len(images) < 2:
        raise ValueError(f"ZCA needs at least 2 training images for a covariance, got {len(images)}")
    features = int(np.prod(images.shape[1:]))
    total, gram = np.zeros(features), np.zeros((features, features))
    for start in range(0, len(images), chunk):
        g = global_contrast_normalize(images[start:start + chunk])
        total += g.sum(axis=0)
        gram += g.T @ g
    n = len(images)
    mean = total / n
    covariance = (gram - n * np.outer(mean, mean)) / (n - 1)  # np.cov(rowvar=False): ddof 1
    eigenvalues, eigenvectors = np.linalg.eigh(covariance + ZCA_IDENTITY_SCALE * np.eye(features))
    matrix = (eigenvectors / np.sqrt(eigenvalues + ZCA_EPS)) @ eigenvectors.T
    return mean.astype(np.float32), matrix.astype(np.float32)


def whiten(images: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """float64 reference, (N, H, W, C): `(gcn(x) - mean) @ matrix`, reshaped back to the images'."""
    images = np.asarray(images)
    out = (global_contrast_normalize(images) - np.asarray(mean, np.float64)) @ np.asarray(matrix, np.float64)
    return out.reshape(images.shape)
