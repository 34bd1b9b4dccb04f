import tracemalloc

import numpy as np
import pytest

from sesemi_common.stats import channel_stats


def test_matches_numpy_in_float64():
    images = np.random.default_rng(0).integers(0, 256, size=(50, 8, 6, 3), dtype=np.uint8)
    images[..., 2] //= 4  # a channel with another mean and spread
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    for chunk in (1, 7, 1024):
        mean, std = channel_stats(images, chunk=chunk)
        assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (3,)
        np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-6)


def test_hand_computed_two_pixel_values():
    # Channel 0 holds 0 and 255 in equal numbers: mean 0.5, population std 0.5. Channel 1 is constant 51.
    images = np.zeros((2, 2, 2, 2), dtype=np.uint8)
    images[0, ..., 0] = 255
    images[..., 1] = 51
    mean, std = channel_stats(images)
    np.testing.assert_allclose(mean, [0.5, 0.2], rtol=1e-7)
    np.testing.assert_allclose(std, [0.5, 0.0], atol=1e-7)


def test_rejects_float_images():
    with pytest.raises(ValueError, match=r"needs uint8 images \(N, H, W, C\) with N > 0, got float32 \(2, 4, 4, 3\)"):
        channel_stats(np.zeros((2, 4, 4, 3), np.float32))


def test_a_chunk_holds_a_bounded_number_of_values_whatever_the_image_size():
    """At 224 px a chunk is 27 images (4M values, 32 MB of float64), not a fixed count: 64 images in one
    chunk would allocate 77 MB. numpy reports its allocations to tracemalloc."""
    images = np.random.default_rng(0).integers(0, 256, size=(64, 224, 224, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        mean, _ = channel_stats(images)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"
    np.testing.assert_allclose(mean, images.reshape(-1, 3).mean(axis=0) / 255.0, rtol=1e-6)
