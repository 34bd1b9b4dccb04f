import hashlib
import io
import tarfile

import numpy as np
import pytest

from sesemi_common import stl10
from sesemi_common.config import DataConfig
from sesemi_common.datasets import DatasetError, load_dataset
from tests.common.test_cifar import http_root  # noqa: F401  (the local HTTP server fixture)

CLASS_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def stl10_files(seed=0, n_train=20, n_test=10, n_unlabeled=7):
    """{name: bytes} of a tiny STL-10 in the official binary layout (labels 1..10, every class in train)."""
    rng = np.random.default_rng(seed)
    raw = {split: rng.integers(0, 256, (n, stl10.IMAGE_BYTES), dtype=np.uint8)
           for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled))}
    labels = {"train": np.arange(n_train) % 10 + 1, "test": rng.integers(1, 11, n_test)}
    files = {f"{split}_X.bin": data.tobytes() for split, data in raw.items()}
    files.update({f"{split}_y.bin": y.astype(np.uint8).tobytes() for split, y in labels.items()})
    files["class_names.txt"] = ("\n".join(CLASS_NAMES) + "\n").encode()
    files["fold_indices.txt"] = b"0 1 2\n"
    return files


def stl10_archive(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo(stl10.FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, content in files.items():
            info = tarfile.TarInfo(f"{stl10.FOLDER}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_stl10_folder(root, files):
    folder = root / stl10.FOLDER
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return root


def pixel(raw: bytes, index: int, y: int, x: int, c: int) -> int:
    """The official layout: per image, channel after channel, each channel column after column."""
    return raw[index * stl10.IMAGE_BYTES + c * 96 * 96 + x * 96 + y]


def test_stl10_from_the_extracted_folder(tmp_path):
    files = stl10_files()
    dataset = load_dataset(DataConfig(dataset="stl10", root=str(write_stl10_folder(tmp_path, files)), image_size=96))
    assert dataset.name == "stl10" and dataset.class_names == CLASS_NAMES
    assert dataset.train_images.shape == (20, 96, 96, 3) and dataset.test_images.shape == (10, 96, 96, 3)
    assert dataset.unlabeled_images.shape == (7, 96, 96, 3) and dataset.unlabeled_images.dtype == np.uint8
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    assert dataset.train_labels.tolist() == [i % 10 for i in range(20)]
    assert dataset.test_labels.tolist() == [v - 1 for v in files["test_y.bin"]]
    for split, images in (("train", dataset.train_images), ("test", dataset.test_images),
                          ("unlabeled", dataset.unlabeled_images)):
        for index, y, x, c in [(0, 0, 0, 0), (1, 0, 95, 1), (2, 5, 7, 2), (3, 95, 0, 0), (4, 95, 94, 2)]:
            assert images[index, y, x, c] == pixel(files[f"{split}_X.bin"], index, y, x, c), (split, y, x, c)


def test_unlabeled_images_are_a_read_only_map_of_the_file(tmp_path):
    """100,000 images are 2.8 GB: they stay on disk until the pool gathers them, never copied twice."""
    dataset = load_dataset(DataConfig(dataset="stl10", root=str(write_stl10_folder(tmp_path, stl10_files())),
                                      image_size=96))
    assert isinstance(dataset.unlabeled_images.base, np.memmap)
    assert not dataset.unlabeled_images.flags.writeable
    assert dataset.train_images.flags.c_contiguous and not isinstance(dataset.train_images.base, np.memmap)


def test_archive_in_root_is_checked_and_extracted(tmp_path, monkeypatch):
    archive = stl10_archive(stl10_files(seed=1))
    (tmp_path / stl10.ARCHIVE).write_bytes(archive)
    monkeypatch.setattr(stl10, "MD5", hashlib.md5(archive).hexdigest())
    dataset = load_dataset(DataConfig(dataset="stl10", root=str(tmp_path), image_size=96))
    assert len(dataset.train_images) == 20 and len(dataset.unlabeled_images) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [stl10.FOLDER, stl10.ARCHIVE]


def test_archive_with_a_wrong_md5_is_one_line(tmp_path):
    archive = stl10_archive(stl10_files())
    (tmp_path / stl10.ARCHIVE).write_bytes(archive)
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="stl10", root=str(tmp_path), image_size=96))
    assert str(info.value) == (f"{tmp_path}/{stl10.ARCHIVE} has MD5 {hashlib.md5(archive).hexdigest()}, expected "
                               "91f7769df0f17e558f3565bffb0c7dfb: the file is corrupt or incomplete; delete it and "
                               "download it again (data.download=true)")
    assert not (tmp_path / stl10.FOLDER).exists()


def test_download_from_a_local_server(tmp_path, http_root, monkeypatch):  # noqa: F811
    served, url = http_root
    files = stl10_files(seed=2)
    archive = stl10_archive(files)
    (served / stl10.ARCHIVE).write_bytes(archive)
    monkeypatch.setattr(stl10, "URL", f"{url}/{stl10.ARCHIVE}")
    monkeypatch.setattr(stl10, "MD5", hashlib.md5(archive).hexdigest())
    root = tmp_path / "data"
    dataset = load_dataset(DataConfig(dataset="stl10", root=str(root), image_size=96, download=True))
    assert (root / stl10.ARCHIVE).read_bytes() == archive
    assert dataset.test_labels.tolist() == [v - 1 for v in files["test_y.bin"]]
    assert dataset.unlabeled_images[6, 50, 3, 1] == pixel(files["unlabeled_X.bin"], 6, 50, 3, 1)


def test_download_with_a_wrong_md5_leaves_nothing(tmp_path, http_root):  # noqa: F811
    served, url = http_root
    archive = stl10_archive(stl10_files())
    (served / "stl.tar.gz").write_bytes(archive)
    with pytest.raises(DatasetError) as info:
        stl10.download_stl10(tmp_path / "data", url=f"{url}/stl.tar.gz")
    assert str(info.value) == (f"download of {url}/stl.tar.gz has MD5 {hashlib.md5(archive).hexdigest()}, expected "
                               "91f7769df0f17e558f3565bffb0c7dfb: the transfer was corrupted or the file changed; "
                               "download again")
    assert list((tmp_path / "data").iterdir()) == []


def test_missing_without_download(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="stl10", root=str(tmp_path), image_size=96))
    assert str(info.value) == (f"stl10 not found: neither {tmp_path}/stl10_binary nor {tmp_path}/stl10_binary.tar.gz "
                               f"exists; set data.download=true to fetch it, or put stl10_binary.tar.gz in {tmp_path}")


def test_files_that_are_not_stl10(tmp_path):
    files = stl10_files()
    files["train_X.bin"] = files["train_X.bin"][:-5]
    write_stl10_folder(tmp_path / "a", files)
    with pytest.raises(DatasetError, match=r"train_X.bin has 552955 bytes, not a positive multiple of 27648"):
        load_dataset(DataConfig(dataset="stl10", root=str(tmp_path / "a"), image_size=96))
    files = stl10_files()
    files["test_y.bin"] = bytes([0] * 10)
    write_stl10_folder(tmp_path / "b", files)
    with pytest.raises(DatasetError, match=r"test_y.bin holds 10 labels from 0 to 0 for 10 images, expected one "
                                           r"label in 1..10 per image"):
        load_dataset(DataConfig(dataset="stl10", root=str(tmp_path / "b"), image_size=96))


def test_without_the_unlabeled_file(tmp_path):
    files = stl10_files()
    del files["unlabeled_X.bin"]
    dataset = load_dataset(DataConfig(dataset="stl10", root=str(write_stl10_folder(tmp_path, files)), image_size=96))
    assert dataset.unlabeled_images is None and len(dataset.train_images) == 20


def test_image_size_must_match(tmp_path):
    write_stl10_folder(tmp_path, stl10_files())
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="stl10", root=str(tmp_path)))
    assert str(info.value) == "stl10 images are 96x96 but data.image_size is 32: set data.image_size=96"
