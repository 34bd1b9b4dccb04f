"""Per-channel mean and standard deviation of the training images, for normalization."""

from __future__ import annotations

import numpy as np


CHUNK_VALUES = 1 << 22  # pixel values per float64 chunk of channel_stats: 32 MB


def channel_stats(images: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), float32 arrays of shape (C,) on the 0..1 scale, of uint8 images (N, H, W, C).

    The standard deviation is the population one (ddof 0) over every pixel of every image.
    Sums of x and x^2 are accumulated in float64 over chunks of `chunk` images, so no float64
    copy of the whole set is made; with integer pixels every partial sum is exact, so the chunk
    does not change the result. By default a chunk holds `CHUNK_VALUES` pixel values whatever the
    image size: a fixed 1,024 images made a 1.2 GB float64 chunk at 224 px (the out-of-core
    benchmark's startup pass, over a memory-mapped set larger than RAM).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"channel_stats needs uint8 images (N, H, W, C) with N > 0, got {images.dtype} "
                         f"{images.shape}")
    channels = images.shape[-1]
    chunk = chunk or max(1, CHUNK_VALUES // images[0].size)
    total, total_sq = np.zeros(channels), np.zeros(channels)
    for start in range(0, len(images), chunk):
        pixels = images[start:start + chunk].reshape(-1, channels).astype(np.float64)
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels, out=pixels).sum(axis=0)  # in place
        del pixels  # else the next chunk is made while this one is still held: two at a time
    count = images.size // channels
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 0.0)
    return (mean / 255.0).astype(np.float32), (np.sqrt(variance) / 255.0).astype(np.float32)


def normalization_table(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 (C, 256): `(v / 255 - mean) / std` for every uint8 level v of every channel.

    Both frameworks normalize by looking pixels up in this table, computed once with numpy's
    IEEE float32 arithmetic, so their normalized inputs are bit-identical. Computing it
    inside a jitted step would not be: XLA turns `x / 255` into `x * (1 / 255)`, one ulp off
    torch's division in 74% of pixels, and one ulp at a ReLU kink is enough to change a
    gradient (parity_tests/one_step.py).
    """
    mean = np.asarray(mean, np.float32).reshape(-1, 1)
    std = np.asarray(std, np.float32).reshape(-1, 1)
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return ((levels - mean) / std).astype(np.float32)
