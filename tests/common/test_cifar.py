import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from sesemi_common import datasets
from sesemi_common.config import DataConfig
from sesemi_common.datasets import DatasetError, download_cifar, load_dataset

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _batch(rng, n, labels_key=b"labels", num_classes=10):
    return {b"batch_label": b"batch", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            labels_key: rng.integers(0, num_classes, n).tolist(), b"filenames": [b"x.png"] * n}


def _cifar10_files(seed=0):
    """{file name: content} of a tiny CIFAR-10 in the official layout: 5 train batches of 3, a test batch of 4."""
    rng = np.random.default_rng(seed)
    files = {f"data_batch_{i}": _batch(rng, 3) for i in range(1, 6)}
    files["test_batch"] = _batch(rng, 4)
    files["batches.meta"] = {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": 3, b"num_vis": 3072}
    return files


def _write_folder(folder, files):
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))


def _tar_gz(files, folder="cifar-10-batches-py", extra=()):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        directory = tarfile.TarInfo(folder)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, content in [*[(f"{folder}/{n}", pickle.dumps(c, protocol=2)) for n, c in files.items()], *extra]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def http_root(tmp_path):
    """(served folder, base URL) of an HTTP server on 127.0.0.1 in a thread."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_cifar10_from_the_extracted_folder(tmp_path):
    files = _cifar10_files()
    _write_folder(tmp_path / "cifar-10-batches-py", files)
    dataset = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert dataset.name == "cifar10" and dataset.class_names == [n.decode() for n in CIFAR10_NAMES]
    assert dataset.train_images.shape == (15, 32, 32, 3) and dataset.test_images.shape == (4, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    # rows are 1024 red, then 1024 green, then 1024 blue values, each row-major over (y, x)
    row = files["data_batch_2"][b"data"][1]
    image = dataset.train_images[3 + 1]
    for y, x, c in [(0, 0, 0), (0, 31, 1), (5, 7, 2), (31, 0, 0), (31, 31, 2)]:
        assert image[y, x, c] == row[c * 1024 + y * 32 + x]
    expected_labels = sum((files[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert dataset.train_labels.tolist() == expected_labels
    assert dataset.test_labels.tolist() == files["test_batch"][b"labels"]
    np.testing.assert_array_equal(dataset.test_images[2, 4, 9], files["test_batch"][b"data"][2][[137, 1161, 2185]])


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    fine_names = [f"class{i:02d}".encode() for i in range(100)]
    train, test = _batch(rng, 5, b"fine_labels", 100), _batch(rng, 2, b"fine_labels", 100)
    train[b"coarse_labels"] = test[b"coarse_labels"] = [19] * 5
    _write_folder(tmp_path / "cifar-100-python", {"train": train, "test": test, "meta": {
        b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20}})
    dataset = load_dataset(DataConfig(dataset="cifar100", root=str(tmp_path)))
    assert dataset.class_names == [n.decode() for n in fine_names]
    assert dataset.train_labels.tolist() == train[b"fine_labels"]
    assert dataset.test_labels.tolist() == test[b"fine_labels"]
    assert dataset.train_images[4, 31, 31, 2] == train[b"data"][4, 3071]


def test_archive_in_root_is_checked_and_extracted(tmp_path, monkeypatch):
    archive = _tar_gz(_cifar10_files())
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10", replace(datasets.CIFAR_SOURCES["cifar10"], md5=_md5(archive)))
    dataset = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert len(dataset.train_images) == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_archive_with_a_bad_checksum(tmp_path):
    archive = _tar_gz(_cifar10_files())
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert str(info.value) == (f"{tmp_path}/cifar-10-python.tar.gz has MD5 {_md5(archive)}, expected "
                               "c58f30108f718f92721af3b95e74349a: the file is corrupt or incomplete; delete it and "
                               "download it again (data.download=true)")
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_missing_archive_without_download(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="cifar100", root=str(tmp_path)))
    assert str(info.value) == (f"cifar100 not found: neither {tmp_path}/cifar-100-python nor "
                               f"{tmp_path}/cifar-100-python.tar.gz exists; set data.download=true to fetch it, "
                               f"or put cifar-100-python.tar.gz in {tmp_path}")


def test_download_checks_md5_and_extracts(tmp_path, http_root):
    served, url = http_root
    archive = _tar_gz(_cifar10_files(seed=3))
    (served / "tiny.tar.gz").write_bytes(archive)
    root = tmp_path / "data"
    folder = download_cifar("cifar10", root, url=f"{url}/tiny.tar.gz", md5=_md5(archive))
    assert folder == root / "cifar-10-batches-py"
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    dataset = load_dataset(DataConfig(dataset="cifar10", root=str(root)))
    assert dataset.train_labels.tolist() == sum((_cifar10_files(seed=3)[f"data_batch_{i}"][b"labels"]
                                                 for i in range(1, 6)), [])


def test_load_dataset_downloads_when_asked(tmp_path, http_root, monkeypatch):
    served, url = http_root
    archive = _tar_gz(_cifar10_files())
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10", replace(
        datasets.CIFAR_SOURCES["cifar10"], url=f"{url}/cifar-10-python.tar.gz", md5=_md5(archive)))
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset(DataConfig(dataset="cifar10", download=True))  # empty root: the cache folder
    assert len(dataset.test_images) == 4
    assert (tmp_path / "cache" / "cifar-10-batches-py" / "test_batch").is_file()


def test_download_with_a_wrong_checksum(tmp_path, http_root):
    served, url = http_root
    archive = _tar_gz(_cifar10_files())
    (served / "tiny.tar.gz").write_bytes(archive)
    with pytest.raises(DatasetError) as info:
        download_cifar("cifar10", tmp_path / "data", url=f"{url}/tiny.tar.gz", md5="0123456789abcdef0123456789abcdef")
    assert str(info.value) == (f"download of {url}/tiny.tar.gz has MD5 {_md5(archive)}, expected "
                               "0123456789abcdef0123456789abcdef: the transfer was corrupted or the file changed; "
                               "download again")
    assert list((tmp_path / "data").iterdir()) == []  # neither the archive nor a partial file is left


def test_download_of_a_missing_url(tmp_path, http_root):
    _, url = http_root
    with pytest.raises(DatasetError, match=rf"^cannot download {url}/nothing.tar.gz \(HTTP 404 File not found\): check the "
                                           rf"network, or put the archive in {tmp_path} by hand$"):
        download_cifar("cifar10", tmp_path, url=f"{url}/nothing.tar.gz", md5="0" * 32)


def test_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch):
    archive = _tar_gz(_cifar10_files(), extra=[("cifar-10-batches-py/../evil.txt", b"owned")])
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10", replace(datasets.CIFAR_SOURCES["cifar10"], md5=_md5(archive)))
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert str(info.value) == (f"{tmp_path}/cifar-10-python.tar.gz holds the unexpected entry "
                               "'cifar-10-batches-py/../evil.txt': it is not the official archive; delete it and "
                               "download it again")
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]  # nothing extracted, no staging left


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    files = _cifar10_files()
    files["test_batch"] = {b"data": _Evil()}
    _write_folder(tmp_path / "cifar-10-batches-py", files)
    with pytest.raises(DatasetError, match=r"test_batch \(refusing to load posix.system\): not an official CIFAR file"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_missing_batch_file_and_wrong_shape(tmp_path):
    files = _cifar10_files()
    del files["data_batch_4"]
    _write_folder(tmp_path / "a" / "cifar-10-batches-py", files)
    with pytest.raises(DatasetError, match=r"data_batch_4 is missing: the CIFAR folder is incomplete"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "a")))
    files = _cifar10_files()
    files["data_batch_1"][b"data"] = files["data_batch_1"][b"data"][:, :100]
    _write_folder(tmp_path / "b" / "cifar-10-batches-py", files)
    with pytest.raises(DatasetError, match=r"data_batch_1 holds data of shape \(3, 100\) \(uint8\) and 3 labels, "
                                           r"expected uint8 \(N, 3072\) and N labels"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "b")))


def test_image_size_must_match(tmp_path):
    _write_folder(tmp_path / "cifar-10-batches-py", _cifar10_files())
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path), image_size=64))
    assert str(info.value) == "cifar10 images are 32x32 but data.image_size is 64: set data.image_size=32"
