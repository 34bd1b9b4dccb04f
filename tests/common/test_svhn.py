import hashlib

import numpy as np
import pytest
from scipy.io import savemat

from sesemi_common import svhn
from sesemi_common.config import DataConfig
from sesemi_common.datasets import DatasetError, load_dataset
from tests.common.test_cifar import http_root  # noqa: F401  (the local HTTP server fixture)

SIZES = {"train": 20, "test": 10, "extra": 6}


def svhn_content(split, seed=0):
    """(X, y) of a tiny split as the official files hold them: X uint8 (32, 32, 3, N), y (N, 1) in 1..10."""
    rng = np.random.default_rng(seed + len(split))
    n = SIZES[split]
    images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    labels = (np.arange(n) % 10 + 1 if split == "train" else rng.integers(1, 11, n)).reshape(n, 1).astype(np.uint8)
    return images, labels


def write_svhn(folder, splits=("train", "test", "extra"), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        images, labels = svhn_content(split, seed)
        savemat(folder / svhn.file_name(split), {"X": images, "y": labels})
    return folder


def test_svhn_from_the_mat_files(tmp_path):
    write_svhn(tmp_path)
    dataset = load_dataset(DataConfig(dataset="svhn", root=str(tmp_path)))
    assert dataset.name == "svhn" and dataset.class_names == [str(d) for d in range(10)]
    assert dataset.train_images.shape == (20, 32, 32, 3) and dataset.test_images.shape == (10, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    assert dataset.unlabeled_images is None  # extra only when data.unlabeled names split
    # label 10 is the digit 0
    assert dataset.train_labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] * 2
    images, labels = svhn_content("test")
    assert dataset.test_labels.tolist() == [int(v) % 10 for v in labels[:, 0]]
    for index, y, x, c in [(0, 0, 0, 0), (1, 0, 31, 1), (2, 5, 7, 2), (9, 31, 30, 0)]:
        assert dataset.test_images[index, y, x, c] == images[y, x, c, index]


def test_extra_is_the_unlabeled_split_when_pooled(tmp_path):
    write_svhn(tmp_path)
    dataset = load_dataset(DataConfig(dataset="svhn", root=str(tmp_path), unlabeled="train+split"))
    images, _ = svhn_content("extra")
    assert dataset.unlabeled_images.shape == (6, 32, 32, 3) and dataset.unlabeled_images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.unlabeled_images, images.transpose(3, 0, 1, 2))


def test_missing_extra_when_pooled_says_what_to_do(tmp_path):
    write_svhn(tmp_path, splits=("train", "test"))
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path), unlabeled="split"))
    assert str(info.value) == (f"svhn extra not found (data.unlabeled names split): {tmp_path}/extra_32x32.mat does "
                               "not exist; set data.download=true to fetch it, or put extra_32x32.mat in "
                               f"{tmp_path}")


def test_download_from_a_local_server_checks_each_md5(tmp_path, http_root, monkeypatch):  # noqa: F811
    served, url = http_root
    write_svhn(served, seed=4)
    digests = {split: hashlib.md5((served / svhn.file_name(split)).read_bytes()).hexdigest() for split in SIZES}
    monkeypatch.setattr(svhn, "BASE_URL", url)
    monkeypatch.setattr(svhn, "MD5", digests)
    root = tmp_path / "data"
    dataset = load_dataset(DataConfig(dataset="svhn", root=str(root), download=True, unlabeled="split"))
    assert sorted(p.name for p in root.iterdir()) == ["extra_32x32.mat", "test_32x32.mat", "train_32x32.mat"]
    images, _ = svhn_content("extra", seed=4)
    np.testing.assert_array_equal(dataset.unlabeled_images, images.transpose(3, 0, 1, 2))


def test_download_with_a_wrong_md5_is_one_line(tmp_path, http_root, monkeypatch):  # noqa: F811
    served, url = http_root
    write_svhn(served)
    got = hashlib.md5((served / "train_32x32.mat").read_bytes()).hexdigest()
    monkeypatch.setattr(svhn, "BASE_URL", url)
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path / "data"), download=True))
    assert str(info.value) == (f"download of {url}/train_32x32.mat has MD5 {got}, expected "
                               "e26dedcc434d2e4c54c9b2d4a06d8373: the transfer was corrupted or the file changed; "
                               "download again")
    assert list((tmp_path / "data").iterdir()) == []


def test_missing_without_download(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path)))
    assert str(info.value) == (f"svhn train not found: {tmp_path}/train_32x32.mat does not exist; set "
                               f"data.download=true to fetch it, or put train_32x32.mat in {tmp_path}")


def test_files_that_are_not_svhn(tmp_path):
    write_svhn(tmp_path / "a", splits=("test",))
    (tmp_path / "a" / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetError, match=r"^cannot read \S+train_32x32.mat \(.+\): not an official SVHN file; "
                                           r"delete it and download it again \(data.download=true\)$"):
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path / "a")))
    write_svhn(tmp_path / "b")
    images, labels = svhn_content("train")
    savemat(tmp_path / "b" / "train_32x32.mat", {"X": images, "y": labels - 1})
    with pytest.raises(DatasetError, match=r"train_32x32.mat has labels from 0 to 9, expected 1..10"):
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path / "b")))
    savemat(tmp_path / "b" / "train_32x32.mat", {"X": images[:, :, :1], "y": labels})
    with pytest.raises(DatasetError, match=r"train_32x32.mat does not hold X as uint8 \(32, 32, 3, N\)"):
        load_dataset(DataConfig(dataset="svhn", root=str(tmp_path / "b")))
