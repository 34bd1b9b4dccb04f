"""The unlabeled pool, data.resize, data.n_labels=0 and the shifts that scale with the image side."""

import numpy as np
import pytest
from PIL import Image

from sesemi_common import datasets, resize
from sesemi_common.config import Config, ConfigError, DataConfig, apply_overrides
from sesemi_common.datasets import DatasetError, load_dataset, load_unlabeled_folder, read_images
from sesemi_common.experiment import prepare
from sesemi_common.methods import FIXMATCH_VIEWS
from sesemi_common.pool import NO_LABEL, labels_known, training_data
from sesemi_common.sampling import HostStream, crop_geometry, sample_view_params_numpy, scaled_shift
from sesemi_common.splits import labeled_indices


def _photo(path, width, height, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def _folder(root, sizes):
    for k, (w, h) in enumerate(sizes):
        _photo(root / ("a/b" if k % 2 else "") / f"{k}.png", w, h, seed=k)
    return root


# ---------------------------------------------------------------- data.resize


def test_center_crop_is_resize_of_the_shorter_side_then_the_centre():
    assert resize.center_crop_box(40, 20, 10) == ((20, 10), (5, 0))  # 20x40 (w x h): to 10x20, rows 5..15
    assert resize.center_crop_box(30, 45, 20) == ((20, 30), (0, 5))
    image = np.zeros((40, 20, 3), np.uint8)
    image[6:34] = 255  # white around the middle half of the rows, which the crop keeps
    out = resize.fit(image, 10, "center_crop")
    assert out.shape == (10, 10, 3) and out.min() == 255
    squashed = resize.fit(image, 10, "squash")  # keeps the black bands, squeezed
    assert squashed.shape == (10, 10, 3) and squashed[0].max() < 200 and squashed[5].min() == 255


def test_an_image_of_the_size_is_left_alone_and_none_refuses_another_size():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for policy in ("none", "center_crop", "squash"):
        assert resize.fit(image, 8, policy) is image
    with pytest.raises(resize.ResizeError, match=r"^x.png is 8x8 but data.image_size is 9: .*data.resize=center_crop"):
        resize.fit(image, 9, "none", "x.png")


def test_an_image_too_small_to_crop_says_its_size():
    with pytest.raises(resize.ResizeError, match=r"^tiny.png is 30x3: its shorter side is under 1/8 of "
                                                 r"data.image_size \(32\)"):
        resize.fit(np.zeros((3, 30, 3), np.uint8), 32, "center_crop", "tiny.png")
    assert resize.fit(np.zeros((4, 30, 3), np.uint8), 32, "center_crop").shape == (32, 32, 3)  # 8x is the limit


def test_auto_center_crops_folders_and_leaves_archives():
    assert resize.policy_for(DataConfig(), folder=True) == "center_crop"
    assert resize.policy_for(DataConfig(), folder=False) == "none"
    assert resize.labeled_policy(DataConfig(dataset="imagefolder")) == "center_crop"
    assert resize.labeled_policy(DataConfig(dataset="cifar10", resize="squash")) == "squash"


def test_a_labeled_tree_of_mixed_sizes_is_center_cropped_and_cached_per_policy(tmp_path, private_cache):
    for k, (w, h) in enumerate([(30, 20), (16, 40)]):
        _photo(tmp_path / "train" / "a" / f"{k}.png", w, h, seed=k)
    _photo(tmp_path / "test" / "a" / "t.jpg", 50, 50, seed=9)
    crop = load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16))
    expected = resize.fit(np.asarray(Image.open(tmp_path / "train" / "a" / "0.png")), 16, "center_crop")
    np.testing.assert_array_equal(crop.train_images[0], expected)
    squash = load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=16, resize="squash"))
    assert not np.array_equal(squash.train_images, crop.train_images)
    assert len(list(private_cache.glob("imagefolder-*.npy"))) == 1  # one entry per source: the latest policy
    with pytest.raises(DatasetError, match=r"train/a/1.png is 16x40: its shorter side is under 1/8 of "
                                           r"data.image_size \(160\)"):
        load_dataset(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=160))


def test_predict_reads_images_with_the_run_policy(tmp_path):
    _photo(tmp_path / "wide.png", 40, 20)
    image = np.asarray(Image.open(tmp_path / "wide.png"))
    _, cropped = read_images([tmp_path / "wide.png"], 10, "center_crop")
    np.testing.assert_array_equal(cropped[0], resize.fit(image, 10, "center_crop"))
    _, squashed = read_images([tmp_path / "wide.png"], 10, "none")  # none: squashed, as before data.resize
    np.testing.assert_array_equal(squashed[0], resize.fit(image, 10, "squash"))


# ---------------------------------------------------------------- the unlabeled folder


def test_an_unlabeled_folder_is_decoded_in_path_order_and_cached(tmp_path, private_cache, monkeypatch):
    root = _folder(tmp_path / "u", [(20, 30), (16, 16), (40, 17)])
    (root / "notes.txt").write_text("not an image")
    images = load_unlabeled_folder(root, 16, "center_crop")
    assert images.shape == (3, 16, 16, 3)
    # sorted by path components: 0.png, 2.png, then a/b/1.png
    np.testing.assert_array_equal(images[1], resize.fit(np.asarray(Image.open(root / "2.png")), 16, "center_crop"))
    np.testing.assert_array_equal(images[2], np.asarray(Image.open(root / "a/b/1.png")))  # 16 px already
    monkeypatch.setattr(datasets, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    np.testing.assert_array_equal(load_unlabeled_folder(root, 16, "center_crop"), images)
    monkeypatch.undo()
    assert load_unlabeled_folder(root, 8, "center_crop").shape == (3, 8, 8, 3)  # size is in the key


def test_bad_unlabeled_folders_are_one_line(tmp_path, private_cache):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"^unlabeled folder .*empty holds no images \(.jpg"):
        load_unlabeled_folder(tmp_path / "empty", 16, "center_crop")
    with pytest.raises(DatasetError, match=r"^data.unlabeled_root .*nope is not a folder"):
        load_unlabeled_folder(tmp_path / "nope", 16, "center_crop")
    root = _folder(tmp_path / "u", [(20, 30), (16, 16), (40, 17), (20, 20)])
    (root / "0.png").write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        load_unlabeled_folder(root, 16, "center_crop")
    assert str(info.value) == f"image {root / '0.png'} is empty (0 bytes): replace or delete the file"
    (root / "a/b/3.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as info:
        load_unlabeled_folder(root, 16, "center_crop")
    listing = private_cache / "unusable-images.txt"
    assert str(info.value) == (f"image {root / '0.png'} is empty (0 bytes): replace or delete the file (1 more "
                               f"files cannot be used either; all are listed in {listing})")
    assert len(listing.read_text().splitlines()) == 2 and "a/b/3.png" in listing.read_text()


# ---------------------------------------------------------------- the pool


def _tree(root):
    for label in ("cat", "dog"):
        for k in range(3):
            _photo(root / "train" / label / f"{k}.png", 20 + k, 16, seed=k)
        _photo(root / "test" / label / "0.png", 16, 16)
    return root


def test_the_default_pool_is_the_training_images_without_a_copy(tmp_path, private_cache):
    dataset = load_dataset(DataConfig(dataset="imagefolder", root=str(_tree(tmp_path / "t")), image_size=16))
    training = training_data(dataset, DataConfig())
    assert training.images is dataset.train_images and training.pool.tolist() == list(range(6))
    assert labels_known(DataConfig()) and training.pool_images.shape[0] == 0


def test_a_union_pool_follows_the_order_written(tmp_path, private_cache):
    data = DataConfig(dataset="imagefolder", root=str(_tree(tmp_path / "t")), image_size=16,
                      unlabeled="folder+train", unlabeled_root=str(_folder(tmp_path / "u", [(30, 20)] * 4)))
    dataset = load_dataset(data)
    training = training_data(dataset, data)
    assert training.images.shape == (10, 16, 16, 3) and training.pool.tolist() == [6, 7, 8, 9, 0, 1, 2, 3, 4, 5]
    assert training.labels.tolist() == [0, 0, 0, 1, 1, 1] + [NO_LABEL] * 4 and not labels_known(data)


def test_bad_pools_are_one_line(tmp_path, private_cache):
    root = _tree(tmp_path / "t")
    dataset = load_dataset(DataConfig(dataset="imagefolder", root=str(root), image_size=16))
    with pytest.raises(DatasetError, match=r"^data.unlabeled=split includes split, but t has no unlabeled split"):
        training_data(dataset, DataConfig(dataset="imagefolder", root=str(root), unlabeled="split"))
    with pytest.raises(DatasetError, match=r"^data.unlabeled=train\+folder includes folder but data.unlabeled_root "
                                           r"is empty: set data.unlabeled_root"):
        training_data(dataset, DataConfig(dataset="imagefolder", root=str(root), unlabeled="train+folder"))
    with pytest.raises(DatasetError, match=r"test images never join the unlabeled pool"):
        training_data(dataset, DataConfig(dataset="imagefolder", root=str(root), unlabeled="folder",
                                          unlabeled_root=str(root)))


@pytest.mark.parametrize("overrides, message", [
    (["data.unlabeled=train+folders"], r"'folders' is not a source of the unlabeled pool; .*did you mean 'folder'"),
    (["data.unlabeled_root=/x"], r"data.unlabeled_root is set but data.unlabeled=train leaves its images out"),
    (["data.unlabeled=train+train"], r"names a source twice"),
    (["data.n_labels=-1"], r"'data.n_labels' must be zero or positive"),
    (["data.resize=crop"], r"'data.resize' must be one of auto, none, center_crop, squash"),
])
def test_pool_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), overrides)


def test_n_labels_0_labels_every_training_image():
    labels = np.array([0, 0, 0, 1, 2, 2])
    assert labeled_indices(labels, 0, 3, seed=4).tolist() == [0, 1, 2, 3, 4, 5]


def test_a_pool_smaller_than_the_unlabeled_batch_is_refused(tmp_path, private_cache):
    config = apply_overrides(Config(), ["data.dataset=imagefolder", f"data.root={_tree(tmp_path / 't')}",
                                        "data.image_size=16", "data.n_labels=0", "train.batch_labeled=4",
                                        "train.batch_unlabeled=5", "data.unlabeled=folder",
                                        f"data.unlabeled_root={_folder(tmp_path / 'u', [(16, 16)] * 4)}"])
    with pytest.raises(ConfigError, match=r"train.batch_unlabeled \(5\) is larger than the unlabeled pool \(4 images"):
        prepare(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_split_holds_the_pool_and_resume_refuses_a_changed_pool(tmp_path, private_cache):
    unlabeled = _folder(tmp_path / "u", [(20, 16)] * 4)
    config = apply_overrides(Config(), ["data.dataset=imagefolder", f"data.root={_tree(tmp_path / 't')}",
                                        "data.image_size=16", "data.n_labels=0", "train.batch_labeled=4",
                                        "train.batch_unlabeled=2", "data.unlabeled=train+folder",
                                        f"data.unlabeled_root={unlabeled}"])
    exp = prepare(config, tmp_path / "run")
    split = exp.run.read_split()
    assert int(split["data_pool_n"]) == 10 and exp.labeled.tolist() == list(range(6))
    (tmp_path / "run" / "checkpoints" / "4").mkdir(parents=True)  # a stopped run
    _photo(unlabeled / "2.png", 20, 16, seed=77)
    with pytest.raises(ConfigError, match=r"the unlabeled pool's images changed since .* started"):
        prepare(config, tmp_path / "run", resume=True)
    _photo(unlabeled / "extra.png", 20, 16)
    with pytest.raises(ConfigError, match=r"the unlabeled pool changed since .*: it has 11 images, the run started "
                                          r"with 10"):
        prepare(config, tmp_path / "run", resume=True)


# ---------------------------------------------------------------- shifts scale with the side


def test_shifts_are_fractions_of_the_side():
    assert [scaled_shift(2, s) for s in (32, 16, 64, 96, 224)] == [2, 1, 4, 6, 14]
    assert [scaled_shift(4, s) for s in (32, 96)] == [4, 12]
    config = apply_overrides(Config(), ["data.image_size=96"])
    assert crop_geometry(config) == (6, "reflect") and crop_geometry(Config()) == (2, "reflect")
    drawn = sample_view_params_numpy(np.random.default_rng(0), FIXMATCH_VIEWS, 4000, 6, image_size=96)
    assert drawn["weak_offsets"].max() == 24 and drawn["weak_offsets"].min() == 0  # 2 x 12 px
    spec = HostStream(np.arange(4000), 4000, 4000, 4000, config.augment, seed=0, image_size=96)(0)
    assert spec.views["offsets"].max() == 12 and spec.sup_offsets.max() == 12


@pytest.mark.slow  # starts worker processes
def test_parallel_decode_resizes_in_the_workers_as_in_process(tmp_path, private_cache):
    root = _folder(tmp_path / "u", [(20 + k, 30 - k) for k in range(6)])
    files = sorted(str(p) for p in root.rglob("*.png"))
    alone = datasets.decode_images(files, workers=1, fit_to=(16, "center_crop"))
    np.testing.assert_array_equal(datasets.decode_images(files, workers=2, fit_to=(16, "center_crop")), alone)
    (root / "a/b/3.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"^cannot decode image .*a/b/3.png"):
        datasets.decode_images(files, workers=2, fit_to=(16, "center_crop"))


def test_an_archive_is_resized_only_when_asked():
    rng = np.random.default_rng(0)
    dataset = datasets.Dataset("cifar10", rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), np.arange(3),
                               rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), np.arange(2), ["a", "b", "c"],
                               rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    assert datasets.fit_arrays(dataset, 64, "none") is dataset
    bigger = datasets.fit_arrays(dataset, 64, "center_crop")
    assert bigger.train_images.shape == (3, 64, 64, 3) and bigger.test_images.shape == (2, 64, 64, 3)
    assert bigger.unlabeled_images.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(bigger.test_images[1], resize.fit(dataset.test_images[1], 64, "center_crop"))


# ---------------------------------------------------------------- out of core (data.placement host)


def test_an_unlabeled_folder_decodes_into_a_mapped_cache(tmp_path, private_cache, monkeypatch):
    root = _folder(tmp_path / "u", [(20, 30), (16, 16), (40, 17)])
    in_ram = load_unlabeled_folder(root, 16, "center_crop")
    for entry in private_cache.glob("unlabeled-*"):
        entry.unlink()
    decoded = load_unlabeled_folder(root, 16, "center_crop", mapped=True)  # decoded into the map
    monkeypatch.setattr(datasets, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    monkeypatch.setattr(datasets, "_decode_into_cache", lambda *a, **k: pytest.fail("decoded again"))
    again = load_unlabeled_folder(root, 16, "center_crop", mapped=True)  # read from it
    for images in (decoded, again):
        assert isinstance(images, np.memmap)
        np.testing.assert_array_equal(images, in_ram)


def test_an_unlabeled_folder_of_another_size_is_refused_in_both_placements(tmp_path, private_cache):
    root = _folder(tmp_path / "u", [(16, 16)] * 3)
    for mapped in (False, True, True):  # the last: read from the cache the first mapped call wrote
        with pytest.raises(DatasetError, match=r"^the images of unlabeled folder .*u are 16x16 but data.image_size is "
                                               r"8: set data.resize=center_crop"):
            load_unlabeled_folder(root, 8, "none", mapped=mapped)


def test_host_placement_joins_the_pool_in_a_mapped_file_not_in_ram(tmp_path, private_cache):
    from sesemi_common import mmap_cache
    data = DataConfig(dataset="imagefolder", root=str(_tree(tmp_path / "t")), image_size=16,
                      unlabeled="train+folder", unlabeled_root=str(_folder(tmp_path / "u", [(30, 20)] * 4)))
    in_ram = training_data(load_dataset(data), data)
    host = DataConfig(**{**data.__dict__, "placement": "host"})
    dataset = load_dataset(host)
    training = training_data(dataset, host)
    assert isinstance(training.images, np.memmap) and not isinstance(in_ram.images, np.memmap)
    np.testing.assert_array_equal(training.images, in_ram.images)
    assert training.labels.tolist() == in_ram.labels.tolist() and training.pool.tolist() == in_ram.pool.tolist()
    source = mmap_cache.mapped_source(training.images)  # what both trainers gather from
    assert source is not None and source.path.parent == private_cache / "placement"
    assert training_data(dataset, host).images.filename == training.images.filename  # written once
