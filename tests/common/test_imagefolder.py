import os
import warnings

import numpy as np
import pytest
from PIL import Image

from sesemi_common import datasets
from sesemi_common.config import DataConfig
from sesemi_common.datasets import DatasetError, decode_images, load_dataset, load_imagefolder, read_images


def _pixels(seed, size=(6, 5)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _tree(root, layout):
    """layout: {"train/cls": n_images, ...}; PNG images (lossless) with pixels _pixels(i) of running seed i."""
    written, seed = {}, 0
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True)
        for k in range(count):
            pixels = _pixels(seed)
            Image.fromarray(pixels).save(root / folder / f"{k:03d}.png")
            written[f"{folder}/{k:03d}.png"] = pixels
            seed += 1
    return written


LAYOUT = {"train/zebra": 2, "train/ant": 3, "train/moth": 1, "test/zebra": 1, "test/ant": 1, "test/moth": 2}


def _cache_files(cache):
    return sorted(p.name for p in cache.iterdir())


def test_tree_decodes_in_sorted_class_and_file_order(tmp_path):
    written = _tree(tmp_path / "pets", LAYOUT)
    dataset = load_imagefolder(tmp_path / "pets")
    assert dataset.name == "pets" and dataset.class_names == ["ant", "moth", "zebra"]
    assert dataset.train_images.shape == (6, 6, 5, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64
    assert dataset.train_labels.tolist() == [0, 0, 0, 1, 2, 2] and dataset.test_labels.tolist() == [0, 1, 1, 2]
    order = ["train/ant/000", "train/ant/001", "train/ant/002", "train/moth/000", "train/zebra/000", "train/zebra/001"]
    for image, name in zip(dataset.train_images, order):
        np.testing.assert_array_equal(image, written[name + ".png"])
    np.testing.assert_array_equal(dataset.test_images[2], written["test/moth/001.png"])


def test_grayscale_rgba_and_palette_become_rgb(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray).save(tmp_path / "train" / "a" / "0_gray.png")
    rgba = np.dstack([_pixels(1, (3, 4)), np.full((3, 4), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "train" / "a" / "1_rgba.png")
    palette_image = Image.new("P", (4, 3))
    palette_image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette_image.putdata([0, 1] * 6)
    palette_image.save(tmp_path / "train" / "a" / "2_palette.png")
    Image.fromarray(_pixels(2, (3, 4))).save(tmp_path / "test" / "a" / "x.png")
    images = load_imagefolder(tmp_path).train_images
    np.testing.assert_array_equal(images[0], np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(images[1], rgba[..., :3])  # alpha dropped, no compositing
    np.testing.assert_array_equal(images[2, 0, :2], [[10, 20, 30], [200, 100, 50]])


def test_jpeg_is_decoded(tmp_path):
    smooth = np.broadcast_to(np.linspace(0, 250, 16, dtype=np.uint8)[:, None, None], (16, 16, 3)).copy()
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(smooth).save(tmp_path / split / "a" / "x.JPG", quality=95)
    images = load_imagefolder(tmp_path).train_images
    assert images.shape == (1, 16, 16, 3)
    assert np.abs(images[0].astype(int) - smooth).mean() < 2.0


def test_second_load_comes_from_the_cache(tmp_path, private_cache, monkeypatch):
    _tree(tmp_path / "pets", LAYOUT)
    first = load_imagefolder(tmp_path / "pets")
    names = _cache_files(private_cache)
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".npy")
    assert names[0].startswith("imagefolder-pets-")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(datasets, "decode_images", no_decoding)
    second = load_imagefolder(tmp_path / "pets")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
        assert getattr(second, field).dtype == getattr(first, field).dtype
    assert second.class_names == first.class_names


def test_relative_root_shares_the_cache_entry(tmp_path, private_cache, monkeypatch):
    _tree(tmp_path / "pets", LAYOUT)
    absolute = load_imagefolder(tmp_path / "pets")
    monkeypatch.chdir(tmp_path / "pets")
    monkeypatch.setattr(datasets, "decode_images", None)  # decoding again would fail
    relative = load_imagefolder(".")
    assert relative.name == "pets" and len(_cache_files(private_cache)) == 2
    np.testing.assert_array_equal(relative.test_images, absolute.test_images)


@pytest.mark.parametrize("change", ["touch", "rewrite", "add", "remove"])
def test_a_changed_source_is_decoded_again(tmp_path, private_cache, change):
    _tree(tmp_path / "pets", LAYOUT)
    target = tmp_path / "pets" / "train" / "ant" / "001.png"
    load_imagefolder(tmp_path / "pets")
    old_cache = _cache_files(private_cache)
    new_pixels = _pixels(99)
    if change == "touch":
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "rewrite":
        Image.fromarray(new_pixels).save(target)
    elif change == "add":
        Image.fromarray(new_pixels).save(tmp_path / "pets" / "train" / "ant" / "005.png")
    else:
        target.unlink()
    dataset = load_imagefolder(tmp_path / "pets")
    new_cache = _cache_files(private_cache)
    assert len(new_cache) == 2 and new_cache != old_cache  # rebuilt; the stale entry is gone
    counts = {"add": 4, "remove": 2}.get(change, 3)
    assert np.bincount(dataset.train_labels).tolist()[0] == counts
    if change == "rewrite":
        np.testing.assert_array_equal(dataset.train_images[1], new_pixels)
    if change == "add":
        np.testing.assert_array_equal(dataset.train_images[3], new_pixels)


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, private_cache):
    written = _tree(tmp_path / "pets", LAYOUT)
    load_imagefolder(tmp_path / "pets")
    npy = next(private_cache.glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:200])  # torn by a full disk, say
    dataset = load_imagefolder(tmp_path / "pets")
    np.testing.assert_array_equal(dataset.test_images[0], written["test/ant/000.png"])
    json_file = next(private_cache.glob("*.json"))
    json_file.write_text(json_file.read_text().replace('"n_train"', '"n_tr"'))
    assert load_imagefolder(tmp_path / "pets").train_labels.tolist() == [0, 0, 0, 1, 2, 2]


def test_unwritable_cache_warns_and_still_loads(tmp_path, monkeypatch):
    _tree(tmp_path / "pets", LAYOUT)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match=r"could not cache the decoded images in .*a-file/cache"):
        dataset = load_imagefolder(tmp_path / "pets")
    assert len(dataset.train_images) == 6


def test_parallel_decoding_matches_and_reports_bad_files(tmp_path):
    written = _tree(tmp_path, {"train/a": 5})
    files = sorted(tmp_path.rglob("*.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to decoding in this process would warn
        parallel = decode_images(files, workers=2)
    np.testing.assert_array_equal(parallel, np.stack([written[f"train/a/{k:03d}.png"] for k in range(5)]))
    (tmp_path / "train" / "a" / "003.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"cannot decode image .*train/a/003.png"):
        decode_images(files, workers=2)


def test_load_dataset_imagefolder_checks_image_size(tmp_path):
    _tree(tmp_path / "pets", LAYOUT)
    with pytest.raises(DatasetError) as info:  # data.resize=none: today's check (the default center-crops folders)
        load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path / "pets"), resize="none"))
    assert str(info.value) == ("pets images are 5x6 but data.image_size is 32: set data.image_size=5 "
                               "after making them square")
    with pytest.raises(DatasetError, match=r"^data.root is empty: set data.root to a folder holding train/<class>/"):
        load_dataset(DataConfig(dataset="imagefolder"))


# ---------------------------------------------------------------- bad trees


def _message(root):
    with pytest.raises(DatasetError) as info:
        load_imagefolder(root)
    return str(info.value)


def test_missing_folder(tmp_path):
    assert _message(tmp_path / "nowhere") == (f"dataset folder {tmp_path}/nowhere does not exist: set data.root to "
                                              "a folder holding train/ and test/")


def test_missing_train_or_test(tmp_path):
    _tree(tmp_path, {"train/a": 1})
    assert _message(tmp_path) == (f"{tmp_path} has no test/ folder: an ImageFolder tree needs "
                                  f"{tmp_path}/test/<class>/<images>")
    assert _message(tmp_path / "train") == (f"{tmp_path}/train has no train/ folder: an ImageFolder tree needs "
                                            f"{tmp_path}/train/train/<class>/<images>")


def test_empty_class_folder(tmp_path):
    _tree(tmp_path, {"train/a": 1, "test/a": 1})
    (tmp_path / "train" / "b").mkdir()
    (tmp_path / "train" / "b" / "notes.txt").write_text("no images here")
    (tmp_path / "test" / "b").mkdir()
    assert _message(tmp_path).startswith(f"class folder {tmp_path}/train/b holds no images (.jpg, .jpeg, .png")
    assert _message(tmp_path).endswith("): add images or remove the folder")


def test_test_classes_must_match_train(tmp_path):
    _tree(tmp_path, {"train/a": 1, "train/b": 1, "test/a": 1, "test/c": 1})
    assert _message(tmp_path) == (f"class folders of {tmp_path}/test differ from {tmp_path}/train (missing in test: "
                                  "b; only in test: c): give both splits the same classes")


def test_corrupt_jpeg_names_the_file(tmp_path):
    _tree(tmp_path, {"train/a": 2, "test/a": 1})
    (tmp_path / "train" / "a" / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    message = _message(tmp_path)
    assert message.startswith(f"cannot decode image {tmp_path}/train/a/001.jpg (")
    assert message.endswith("): replace or delete the file") and "\n" not in message
    # a truncated file fails on decoding rather than on opening
    Image.fromarray(_pixels(5, (40, 40))).save(tmp_path / "train" / "a" / "001.jpg", quality=90)
    data = (tmp_path / "train" / "a" / "001.jpg").read_bytes()
    (tmp_path / "train" / "a" / "001.jpg").write_bytes(data[: len(data) // 2])
    assert _message(tmp_path).startswith(f"cannot decode image {tmp_path}/train/a/001.jpg (")


def test_image_of_another_size_names_the_file_and_both_sizes(tmp_path):
    _tree(tmp_path, {"train/a": 2, "test/a": 1})
    Image.fromarray(_pixels(0, (7, 9))).save(tmp_path / "test" / "a" / "000.png")
    assert _message(tmp_path) == (f"{tmp_path}/test/a/000.png is 9x7 but {tmp_path}/train/a/000.png is 5x6: "
                                  "all images of a dataset must have one size; resize them")


# ---------------------------------------------------------------- images for prediction


def test_read_images_from_files_and_folders(tmp_path):
    written = _tree(tmp_path, {"photos": 2})
    Image.fromarray(_pixels(7, (12, 10))).save(tmp_path / "big.png")
    paths, images = read_images([tmp_path / "photos", tmp_path / "big.png"], image_size=6)
    assert [p.name for p in paths] == ["000.png", "001.png", "big.png"]
    assert images.shape == (3, 6, 6, 3) and images.dtype == np.uint8
    expected_first = np.asarray(Image.fromarray(written["photos/000.png"]).resize((6, 6), Image.BILINEAR))
    np.testing.assert_array_equal(images[0], expected_first)
    with pytest.raises(DatasetError, match=f"^{tmp_path}/nope.png does not exist: pass image files or folders"):
        read_images([tmp_path / "nope.png"], 6)


def _sixteen_bit_gray(path, values):
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"  # what Pillow gives back for a 16-bit gray PNG
    return path


SIXTEEN_BIT = np.array([[0, 255, 256, 257 * 100], [32768, 65280, 65534, 65535]], dtype=np.uint16)
AS_EIGHT_BIT = np.array([[0, 0, 1, 100], [128, 255, 255, 255]], dtype=np.uint8)  # the high byte


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
    _sixteen_bit_gray(tmp_path / "train" / "a" / "deep.png", SIXTEEN_BIT)
    _sixteen_bit_gray(tmp_path / "test" / "a" / "deep.png", SIXTEEN_BIT)
    images = load_imagefolder(tmp_path).train_images
    np.testing.assert_array_equal(images[0], np.repeat(AS_EIGHT_BIT[..., None], 3, axis=-1))
    square = np.vstack([SIXTEEN_BIT, SIXTEEN_BIT[::-1]])  # image_size: read_images resizes other shapes
    paths, predicted = read_images([_sixteen_bit_gray(tmp_path / "p.png", square)], image_size=4)
    np.testing.assert_array_equal(predicted[0], np.repeat(np.vstack([AS_EIGHT_BIT, AS_EIGHT_BIT[::-1]])[..., None],
                                                          3, axis=-1))


def test_floating_point_images_are_refused_by_name(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DatasetError, match=f"^image {tmp_path}/f.tif holds floating-point pixels"):
        read_images([tmp_path / "f.tif"], 4)
