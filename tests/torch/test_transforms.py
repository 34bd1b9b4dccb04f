"""sesemi_torch.transforms against numpy references (np.rot90, np.pad) and hand-built expectations."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from sesemi_common.config import AugmentConfig
from sesemi_torch import transforms


def asymmetric_batch(n=3, size=5, channels=2):
    """uint8 NHWC images whose every pixel differs, so any rotation or flip changes them."""
    return (np.arange(n * size * size * channels) % 251).astype(np.uint8).reshape(n, size, size, channels)


def nchw(images_nhwc):
    return torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2)


def nhwc(images_nchw):
    return images_nchw.permute(0, 2, 3, 1).numpy()


def test_rot90_turns_counter_clockwise():
    image = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8)[None, None]
    views, _ = transforms.proxy_views(image)
    # one quarter turn counter-clockwise: the right column becomes the top row
    assert views[1, 0].tolist() == [[2, 4], [1, 3]]
    assert views[4, 0].tolist() == [[2, 1], [4, 3]]  # left-right
    assert views[5, 0].tolist() == [[3, 4], [1, 2]]  # up-down


def test_proxy_views_image_major_against_numpy():
    images = asymmetric_batch()
    views, targets = transforms.proxy_views(nchw(images))
    assert views.shape == (18, 2, 5, 5) and views.dtype == torch.uint8
    assert targets.dtype == torch.int64 and targets.tolist() == [0, 1, 2, 3, 4, 5] * 3
    views = nhwc(views)
    for i, image in enumerate(images):
        expected = [np.rot90(image, k) for k in range(4)] + [np.fliplr(image), np.flipud(image)]
        for k, view in enumerate(expected):
            np.testing.assert_array_equal(views[6 * i + k], view, err_msg=f"image {i} view {k}")


def test_rotation_proxy_keeps_four_rotations():
    images = asymmetric_batch(n=2)
    views, targets = transforms.proxy_views(nchw(images), proxy="rotation")
    assert targets.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    np.testing.assert_array_equal(nhwc(views)[7], np.rot90(images[1], 3))


def test_proxy_views_reject_bad_input():
    with pytest.raises(ValueError, match="unknown proxy 'jigsaw': use one of rotate_flip, rotation"):
        transforms.proxy_views(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), proxy="jigsaw")
    with pytest.raises(ValueError, match="need square images .* got 4x6"):
        transforms.proxy_views(torch.zeros(1, 3, 4, 6, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images of shape \(3, 4, 4\) are not a batch"):
        transforms.proxy_views(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_sample_crop_params_range_and_dtype():
    offsets = transforms.sample_crop_params(torch.Generator().manual_seed(0), 2000, 2)
    assert offsets.shape == (2000, 2) and offsets.dtype == torch.int32
    assert sorted(offsets.unique().tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("offset", [(0, 0), (0, 4), (3, 1), (4, 4), (2, 3)])
def test_translation_moves_content(offset):
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = nhwc(transforms.apply_crop(nchw(images), [offset, offset], 2, "reflect"))
    dy, dx = offset[0] - 2, offset[1] - 2  # output pixel (y, x) shows input (y + dy, x + dx)
    ys = slice(max(0, -dy), min(8, 8 - dy))
    xs = slice(max(0, -dx), min(8, 8 - dx))
    np.testing.assert_array_equal(out[:, ys, xs],
                                  images[:, ys.start + dy:ys.stop + dy, xs.start + dx:xs.stop + dx])


def test_offset_equal_to_padding_is_identity():
    images = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for mode in ("reflect", "constant"):
        out = transforms.apply_crop(nchw(images), torch.full((3, 2), 2, dtype=torch.int32), 2, mode)
        np.testing.assert_array_equal(nhwc(out), images)


def test_reflect_padding_matches_numpy():
    images = np.random.default_rng(3).integers(0, 256, (9, 6, 6, 2), dtype=np.uint8)
    offsets = np.array([(dy, dx) for dy in (0, 2, 4) for dx in (0, 1, 4)], np.int32)
    out = nhwc(transforms.apply_crop(nchw(images), offsets, 2, "reflect"))
    for image, (dy, dx), crop in zip(images, offsets, out):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        np.testing.assert_array_equal(crop, padded[dy:dy + 6, dx:dx + 6])
    # mirrored without the edge: the row above row 0 is row 1
    np.testing.assert_array_equal(out[0, 1], images[0, 1, [2, 1, 0, 1, 2, 3]])


def test_constant_padding_gives_zero_border():
    images = torch.full((1, 3, 8, 8), 200, dtype=torch.uint8)
    out = transforms.apply_crop(images, [[0, 8]], 4, "constant")[0]
    assert (out[:, :4] == 0).all() and (out[:, :, 4:] == 0).all()
    assert (out[:, 4:, :4] == 200).all()


def test_apply_crop_rejects_bad_input():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown pad mode 'edge'"):
        transforms.apply_crop(images, [[0, 0], [0, 0]], 2, "edge")
    with pytest.raises(ValueError, match="reflect padding 4 needs images larger than it, got 4x4"):
        transforms.apply_crop(images, [[0, 0], [0, 0]], 4, "reflect")
    with pytest.raises(ValueError, match=r"crop offsets must lie in \[0, 2\] for padding 1, got 0\.\.3"):
        transforms.apply_crop(images, [[0, 3], [1, 1]], 1, "reflect")
    with pytest.raises(ValueError, match=r"offsets of shape \(1, 2\) do not fit 2 images"):
        transforms.apply_crop(images, [[0, 0]], 1, "reflect")


def test_hflip_flips_flagged_images_only():
    images = asymmetric_batch(n=3)
    out = nhwc(transforms.apply_hflip(nchw(images), [True, False, True]))
    np.testing.assert_array_equal(out[0], np.fliplr(images[0]))
    np.testing.assert_array_equal(out[1], images[1])
    np.testing.assert_array_equal(out[2], np.fliplr(images[2]))


def test_sample_flip_params_are_fair_bools():
    flags = transforms.sample_flip_params(torch.Generator().manual_seed(0), 4000)
    assert flags.dtype == torch.bool and flags.shape == (4000,)
    assert 0.46 < flags.float().mean().item() < 0.54


def test_normalize_matches_numpy():
    images = np.random.default_rng(4).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    mean, std = np.array([0.49, 0.48, 0.45]), np.array([0.25, 0.24, 0.26])
    out = transforms.normalize(nchw(images), mean.astype(np.float32), std.astype(np.float32))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(nhwc(out), (images / 255.0 - mean) / std, rtol=0, atol=1e-6)
    # one CHW image, mean and std as tensors: the same values
    single = transforms.normalize(nchw(images)[1], torch.tensor(mean, dtype=torch.float32), torch.tensor(std))
    assert torch.equal(single, out[1])


def test_v2_translate_is_apply_crop_with_global_rng():
    image = nchw(asymmetric_batch(n=1, size=8, channels=3))[0]
    torch.manual_seed(7)
    out = transforms.Translate(2)(image)
    torch.manual_seed(7)
    offsets = transforms.sample_crop_params(None, 1, 2)
    assert torch.equal(out, transforms.apply_crop(image[None], offsets, 2, "reflect")[0])
    wrapped = transforms.PadCrop(4)(tv_tensors.Image(image))
    assert isinstance(wrapped, tv_tensors.Image) and wrapped.shape == (3, 8, 8)
    with pytest.raises(TypeError, match="Translate takes CHW uint8 tensors: put v2.PILToTensor"):
        transforms.Translate(2)(v2.functional.to_pil_image(image))


class TransformedImages(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __getitem__(self, index):
        return self.transform(self.images[index]), index

    def __len__(self):
        return len(self.images)


def test_v2_pipeline_in_a_dataloader():
    images = nchw(asymmetric_batch(n=6, size=8, channels=3))
    pipeline = v2.Compose([transforms.crop_transform(AugmentConfig()), v2.RandomHorizontalFlip(),
                           v2.Lambda(lambda x: transforms.normalize(x, [0.5] * 3, [0.25] * 3))])
    batch, labels = next(iter(DataLoader(TransformedImages(images, pipeline), batch_size=6)))
    assert batch.shape == (6, 3, 8, 8) and batch.dtype == torch.float32 and labels.tolist() == list(range(6))
    assert isinstance(transforms.crop_transform(AugmentConfig(crop="pad_crop")), transforms.PadCrop)


def test_noise_has_the_asked_standard_deviation_and_is_added_as_is():
    noise = transforms.sample_noise_params(torch.Generator().manual_seed(0), (64, 3, 32, 32), 0.15)
    assert noise.dtype == torch.float32 and noise.shape == (64, 3, 32, 32)
    # 196,608 draws: the sample std is within 0.3% of 0.15 (its standard error is 0.16%) and the mean near 0.
    assert abs(noise.std().item() / 0.15 - 1) < 0.003 and abs(noise.mean().item()) < 0.003
    x = torch.ones(64, 3, 32, 32)
    assert torch.equal(transforms.apply_noise(x, noise), x + noise)


def test_gcn_zca_with_identity_statistics_is_gcn():
    """With mean 0 and the identity matrix, ZCA is a no-op and what is left is GCN: each image
    centered, with L2 norm 55; a constant image stays 0."""
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 4, 4), dtype=np.uint8))
    images[2] = 9
    flat = transforms.gcn_zca(images, torch.zeros(48), torch.eye(48)).reshape(3, -1)
    torch.testing.assert_close(flat[:2].mean(dim=1), torch.zeros(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(flat[:2].norm(dim=1), torch.full((2,), 55.0), rtol=1e-6, atol=0)
    assert torch.equal(flat[2], torch.zeros(48))


def test_nchw_shares_a_writable_array_and_copies_a_read_only_map_without_a_warning(tmp_path):
    import warnings

    from sesemi_torch.transforms import nchw
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    shared = nchw(images)
    assert shared.shape == (3, 3, 4, 5) and shared.data_ptr() == images.ctypes.data  # no copy
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "The given NumPy array is not writable" warning
        copied = nchw(mapped[1:])
    assert copied.data_ptr() != mapped[1:].ctypes.data
    assert torch.equal(copied, torch.from_numpy(images[1:]).permute(0, 3, 1, 2))
