"""sesemi_jax.transforms against numpy references (np.rot90, np.pad) and hand-built expectations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sesemi_common.stats import normalization_table
from sesemi_jax import transforms


def asymmetric_batch(n=3, size=5, channels=2):
    """uint8 NHWC images whose every pixel differs, so any rotation or flip changes them."""
    return (np.arange(n * size * size * channels) % 251).astype(np.uint8).reshape(n, size, size, channels)


def test_rot90_turns_counter_clockwise():
    image = np.array([[1, 2], [3, 4]], np.uint8)[None, :, :, None]
    views, _ = transforms.proxy_views(jnp.asarray(image))
    # one quarter turn counter-clockwise: the right column becomes the top row
    np.testing.assert_array_equal(np.asarray(views[1, :, :, 0]), [[2, 4], [1, 3]])
    np.testing.assert_array_equal(np.asarray(views[4, :, :, 0]), [[2, 1], [4, 3]])  # left-right
    np.testing.assert_array_equal(np.asarray(views[5, :, :, 0]), [[3, 4], [1, 2]])  # up-down


def test_proxy_views_image_major_against_numpy():
    images = asymmetric_batch()
    views, targets = transforms.proxy_views(jnp.asarray(images))
    assert views.shape == (18, 5, 5, 2) and views.dtype == jnp.uint8
    assert targets.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(targets), [0, 1, 2, 3, 4, 5] * 3)
    for i, image in enumerate(images):
        expected = [np.rot90(image, k) for k in range(4)] + [np.fliplr(image), np.flipud(image)]
        for k, view in enumerate(expected):
            np.testing.assert_array_equal(np.asarray(views[6 * i + k]), view, err_msg=f"image {i} view {k}")


def test_rotation_proxy_keeps_four_rotations():
    images = asymmetric_batch(n=2)
    views, targets = transforms.proxy_views(jnp.asarray(images), proxy="rotation")
    np.testing.assert_array_equal(np.asarray(targets), [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(np.asarray(views[7]), np.rot90(images[1], 3))


def test_proxy_views_reject_bad_input():
    with pytest.raises(ValueError, match="unknown proxy 'jigsaw': use one of rotate_flip, rotation"):
        transforms.proxy_views(jnp.zeros((1, 4, 4, 3), jnp.uint8), proxy="jigsaw")
    with pytest.raises(ValueError, match="need square images .* got 4x6"):
        transforms.proxy_views(jnp.zeros((1, 4, 6, 3), jnp.uint8))
    with pytest.raises(ValueError, match=r"images of shape \(4, 4, 3\) are not a batch"):
        transforms.proxy_views(jnp.zeros((4, 4, 3), jnp.uint8))


def test_sample_crop_params_range_and_dtype():
    offsets = np.asarray(transforms.sample_crop_params(jax.random.PRNGKey(0), 2000, 2))
    assert offsets.shape == (2000, 2) and offsets.dtype == np.int32
    assert set(np.unique(offsets)) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("offset", [(0, 0), (0, 4), (3, 1), (4, 4), (2, 3)])
def test_translation_moves_content(offset):
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    offsets = np.array([offset, offset], np.int32)
    out = np.asarray(transforms.apply_crop(jnp.asarray(images), offsets, 2, "reflect"))
    dy, dx = offset[0] - 2, offset[1] - 2  # output pixel (y, x) shows input (y + dy, x + dx)
    ys = slice(max(0, -dy), min(8, 8 - dy))
    xs = slice(max(0, -dx), min(8, 8 - dx))
    ys_in = slice(ys.start + dy, ys.stop + dy)
    xs_in = slice(xs.start + dx, xs.stop + dx)
    np.testing.assert_array_equal(out[:, ys, xs], images[:, ys_in, xs_in])


def test_offset_equal_to_padding_is_identity():
    images = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for mode in ("reflect", "constant"):
        out = transforms.apply_crop(jnp.asarray(images), np.full((3, 2), 2, np.int32), 2, mode)
        np.testing.assert_array_equal(np.asarray(out), images)


def test_reflect_padding_matches_numpy():
    images = np.random.default_rng(3).integers(0, 256, (9, 6, 6, 2), dtype=np.uint8)
    offsets = np.array([(dy, dx) for dy in (0, 2, 4) for dx in (0, 1, 4)], np.int32)
    out = np.asarray(transforms.apply_crop(jnp.asarray(images), offsets, 2, "reflect"))
    for image, (dy, dx), crop in zip(images, offsets, out):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        np.testing.assert_array_equal(crop, padded[dy:dy + 6, dx:dx + 6])
    # mirrored without the edge: the row above row 0 is row 1
    np.testing.assert_array_equal(out[0, 1], images[0, 1, [2, 1, 0, 1, 2, 3]])


def test_constant_padding_gives_zero_border():
    images = np.full((1, 8, 8, 3), 200, np.uint8)
    out = np.asarray(transforms.apply_crop(jnp.asarray(images), np.array([[0, 8]], np.int32), 4, "constant"))
    assert (out[0, :4] == 0).all() and (out[0, :, 4:] == 0).all()
    assert (out[0, 4:, :4] == 200).all()


def test_apply_crop_rejects_bad_input():
    images = jnp.zeros((1, 4, 4, 3), jnp.uint8)
    with pytest.raises(ValueError, match="unknown pad mode 'edge'"):
        transforms.apply_crop(images, np.zeros((1, 2), np.int32), 2, "edge")
    with pytest.raises(ValueError, match="reflect padding 4 needs images larger than it, got 4x4"):
        transforms.apply_crop(images, np.zeros((1, 2), np.int32), 4, "reflect")


def test_hflip_flips_flagged_images_only():
    images = asymmetric_batch(n=3)
    out = np.asarray(transforms.apply_hflip(jnp.asarray(images), np.array([True, False, True])))
    np.testing.assert_array_equal(out[0], np.fliplr(images[0]))
    np.testing.assert_array_equal(out[1], images[1])
    np.testing.assert_array_equal(out[2], np.fliplr(images[2]))


def test_sample_flip_params_are_fair_bools():
    flags = np.asarray(transforms.sample_flip_params(jax.random.PRNGKey(0), 4000))
    assert flags.dtype == np.bool_ and flags.shape == (4000,)
    assert 0.46 < flags.mean() < 0.54


def test_normalize_matches_numpy():
    images = np.random.default_rng(4).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    mean, std = np.array([0.49, 0.48, 0.45]), np.array([0.25, 0.24, 0.26])
    out = transforms.normalize(jnp.asarray(images), mean.astype(np.float32), std.astype(np.float32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), (images / 255.0 - mean) / std, rtol=0, atol=1e-6)


def test_lookup_normalized_under_jit_equals_normalize():
    images = jnp.asarray(np.random.default_rng(4).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8))
    mean, std = np.array([0.49, 0.48, 0.45], np.float32), np.array([0.25, 0.24, 0.26], np.float32)
    looked_up = jax.jit(transforms.lookup_normalized)(images, jnp.asarray(normalization_table(mean, std)))
    np.testing.assert_array_equal(np.asarray(looked_up), np.asarray(transforms.normalize(images, mean, std)))
    with pytest.raises(ValueError, match="normalize needs host mean and std, got traced arrays"):
        jax.jit(transforms.normalize)(images, mean, std)


def test_jitted_transforms_equal_eager():
    images = jnp.asarray(np.random.default_rng(5).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8))
    offsets = transforms.sample_crop_params(jax.random.PRNGKey(1), 5, 2)
    crop = jax.jit(transforms.apply_crop, static_argnums=(2, 3))
    for mode in ("reflect", "constant"):
        np.testing.assert_array_equal(crop(images, offsets, 2, mode), transforms.apply_crop(images, offsets, 2, mode))
    views = jax.jit(transforms.proxy_views, static_argnums=1)
    np.testing.assert_array_equal(views(images, "rotate_flip")[0], transforms.proxy_views(images)[0])


def all_crops(images, padding, mode):
    """(N, K, H, W, C): every crop apply_crop can make of each image, K offsets over [0, 2*padding]^2."""
    grid = np.array([(y, x) for y in range(2 * padding + 1) for x in range(2 * padding + 1)], np.int32)
    n, k = len(images), len(grid)
    batch = np.repeat(images, k, axis=0)
    crops = transforms.apply_crop(jnp.asarray(batch), np.tile(grid, (n, 1)), padding, mode)
    return np.asarray(crops).reshape((n, k) + images.shape[1:])


def crop_index(crop, candidates):
    matches = [i for i, c in enumerate(candidates) if np.array_equal(c, crop)]
    return matches[0] if matches else None


def test_noise_has_the_asked_standard_deviation_and_is_added_as_is():
    noise = transforms.sample_noise_params(jax.random.key(0), (64, 32, 32, 3), 0.15)
    assert noise.dtype == jnp.float32 and noise.shape == (64, 32, 32, 3)
    # 196,608 draws: the sample std is within 0.3% of 0.15 (its standard error is 0.16%) and the mean near 0.
    assert abs(float(noise.std()) / 0.15 - 1) < 0.003 and abs(float(noise.mean())) < 0.003
    x = jnp.ones((64, 32, 32, 3))
    np.testing.assert_array_equal(transforms.apply_noise(x, noise), np.asarray(x) + np.asarray(noise))


def test_gcn_zca_with_identity_statistics_is_gcn():
    """With mean 0 and the identity matrix, ZCA is a no-op and what is left is GCN: each image
    centered, with L2 norm 55; a constant image stays 0."""
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    images[2] = 9
    out = np.asarray(transforms.gcn_zca(jnp.asarray(images), jnp.zeros(48), jnp.eye(48)))
    flat = out.reshape(3, -1)
    np.testing.assert_allclose(flat[:2].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(flat[:2], axis=1), 55.0, rtol=1e-6)
    np.testing.assert_array_equal(flat[2], 0.0)
