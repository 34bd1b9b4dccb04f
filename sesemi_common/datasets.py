"""Datasets as uint8 arrays: CIFAR-10/100 (official pickles), ImageFolder trees, embedded digits.

Every loader returns a `Dataset` of `uint8 (N, H, W, 3)` images and `int64` labels, so the
two frameworks start from the very same bytes. Only numpy, Pillow and the standard library
are used here; scikit-learn is imported lazily, for the digits only.

- `cifar10` / `cifar100`: the official python-pickle archives. `data.root` holds the
  extracted folder or the archive; with `data.download=true` a missing archive is fetched
  from the official URL. The archive's MD5 is checked before it is extracted.
- `imagefolder`: `root/train/<class>/*` and `root/test/<class>/*` (class = folder name,
  sorted). The tree is decoded once with Pillow and cached as one `.npy` beside a `.json`
  holding the fingerprint of the source (relative path, size and mtime of every image), in
  `$SESEMI_CACHE_DIR` or `~/.cache/sesemi`; a changed source gets a fresh decode.
- `digits`: scikit-learn's 1,797 real 8x8 handwritten digits, no download needed.
- `stl10` / `svhn`: in their own modules (`stl10.py`, `svhn.py`), with the same download helpers.
- `load_unlabeled_folder`: a folder of images without classes (the unlabeled pool's
  `data.unlabeled_root`), any nesting, decoded and cached like an ImageFolder tree.

Images of other sizes reach `data.image_size` by `data.resize` (sesemi_common/resize.py), once,
at decode time; the policy and size are part of the cache key. A file that cannot be used
(unreadable, empty, too small) stops the load: nothing is skipped, and the one-line error names
the first such file and how many others there are (all listed in a file it names).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from . import resize
from .files import atomic_write, create_temp

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CACHE_VERSION = 2  # bump when the cached layout or the decoding changes


class DatasetError(ValueError):
    """Data that cannot be loaded; the one-line message names the path or value and what to do."""


@dataclass
class Dataset:
    name: str
    train_images: np.ndarray  # uint8 (N, H, W, 3)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    # The dataset's own unlabeled split (STL-10 `unlabeled`, SVHN `extra`), uint8 (M, H, W, 3),
    # or None; `data.unlabeled` decides whether it joins the pool.
    unlabeled_images: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(data_cfg) -> Dataset:
    """The dataset `data_cfg` (a `DataConfig`) names, with images of `data_cfg.image_size`
    (brought there by `data.resize`)."""
    name = data_cfg.dataset
    if name == "digits":
        return load_digits(data_cfg.image_size)
    if name in CIFAR_SOURCES:
        dataset = load_cifar(name, _cifar_root(data_cfg.root), data_cfg.download)
    elif name == "imagefolder":
        if not data_cfg.root:
            raise DatasetError("data.root is empty: set data.root to a folder holding train/<class>/ and test/<class>/")
        policy = resize.policy_for(data_cfg, folder=True)
        # Placements other than device read the decoded cache memory-mapped (docs/placement.md).
        dataset = load_imagefolder(data_cfg.root, fit_to=None if policy == "none" else (data_cfg.image_size, policy),
                                   mapped=reads_mapped(data_cfg))
    elif name == "stl10":
        from .stl10 import load_stl10
        dataset = load_stl10(_cifar_root(data_cfg.root), data_cfg.download)
    elif name == "svhn":
        from .svhn import load_svhn
        with_extra = "split" in data_cfg.unlabeled.split("+")  # extra is 531k images: read only when pooled
        dataset = load_svhn(_cifar_root(data_cfg.root), data_cfg.download, with_extra=with_extra)
    else:
        raise DatasetError(f"unknown dataset '{name}': set data.dataset to one of digits, cifar10, cifar100, "
                           "imagefolder, stl10, svhn")
    if name != "imagefolder":  # an archive's arrays; a folder was fitted while it was decoded
        dataset = fit_arrays(dataset, data_cfg.image_size, resize.policy_for(data_cfg, folder=False))
    _check_image_size(dataset, data_cfg.image_size)
    return dataset


def fit_arrays(dataset: Dataset, image_size: int, policy: str) -> Dataset:
    """An archive's decoded arrays brought to `image_size` by `policy` (in memory, not cached:
    a benchmark archive is already uniform, so this is one resize per image); `none` leaves
    them for `_check_image_size`."""
    if policy == "none" or dataset.train_images.shape[1:3] == (image_size, image_size):
        return dataset

    def fitted(images: np.ndarray | None, part: str) -> np.ndarray | None:
        if images is None:
            return None
        return np.stack([_fit_or_fail(image, image_size, policy, f"{dataset.name} {part} image {i}")
                         for i, image in enumerate(images)]) if len(images) else images

    return Dataset(dataset.name, fitted(dataset.train_images, "train"), dataset.train_labels,
                   fitted(dataset.test_images, "test"), dataset.test_labels, dataset.class_names,
                   fitted(dataset.unlabeled_images, "unlabeled"))


def _fit_or_fail(image: np.ndarray, size: int, policy: str, name: str) -> np.ndarray:
    try:
        return resize.fit(image, size, policy, name)
    except resize.ResizeError as err:
        raise DatasetError(str(err)) from None


def cache_dir() -> Path:
    """Where decoded ImageFolder trees (and CIFAR, when data.root is empty) are kept."""
    return Path(os.environ.get("SESEMI_CACHE_DIR") or Path.home() / ".cache" / "sesemi")


def _check_image_size(dataset: Dataset, image_size: int) -> None:
    height, width = dataset.train_images.shape[1:3]
    if (height, width) != (image_size, image_size):
        raise DatasetError(f"{dataset.name} images are {width}x{height} but data.image_size is {image_size}: "
                           f"set data.image_size={width}" + ("" if width == height else " after making them square"))


# ---------------------------------------------------------------- digits


def load_digits(image_size: int = 32) -> Dataset:
    """scikit-learn's handwritten digits as 3-channel uint8 images of `image_size` x `image_size`.

    The 0..16 values are scaled to 0..255 (rounded), upscaled with Pillow's bilinear filter
    (smooth strokes rather than 4x4 blocks) and replicated to 3 channels. Split, fixed and
    stratified: in scikit-learn's order, the first `floor(0.8 n_c)` images of each class c
    train and the rest test (1,433 train, 364 test).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    gray = np.stack([np.asarray(Image.fromarray(img).resize((image_size, image_size), Image.BILINEAR))
                     for img in small])
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    is_train = _first_80_percent_per_class(labels)
    return Dataset("digits", images[is_train], labels[is_train], images[~is_train], labels[~is_train],
                   [str(d) for d in range(10)])


def _first_80_percent_per_class(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the first floor(0.8 * count) occurrences of each label."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        mask[where[: len(where) * 4 // 5]] = True
    return mask


# ---------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CifarSource:
    archive: str
    folder: str  # what the archive extracts to
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    labels_key: bytes
    names_key: bytes


CIFAR_SOURCES = {
    "cifar10": CifarSource("cifar-10-python.tar.gz", "cifar-10-batches-py",
                           "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "c58f30108f718f92721af3b95e74349a",
                           tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
                           b"labels", b"label_names"),
    "cifar100": CifarSource("cifar-100-python.tar.gz", "cifar-100-python",
                            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                            "eb9058c3a382ffc7106e4002c42a8d85",
                            ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"),
}


def _cifar_root(root: str) -> Path:
    return Path(root) if root else cache_dir()


def load_cifar(name: str, root: str | Path, download: bool = False) -> Dataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from `root`, extracting or downloading as needed."""
    source = CIFAR_SOURCES[name]
    folder = _cifar_folder(name, Path(root), download)
    train_images, train_labels = _read_batches(folder, source.train_files, source.labels_key)
    test_images, test_labels = _read_batches(folder, source.test_files, source.labels_key)
    meta = _unpickle(folder / source.meta_file)
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(source.names_key, [])]
    if len(class_names) <= max(train_labels.max(), test_labels.max()):
        raise DatasetError(f"{folder / source.meta_file} names {len(class_names)} classes but the labels go up to "
                           f"{max(train_labels.max(), test_labels.max())}: the folder is not the official {name}")
    return Dataset(name, train_images, train_labels, test_images, test_labels, class_names)


def _cifar_folder(name: str, root: Path, download: bool) -> Path:
    source = CIFAR_SOURCES[name]
    return archive_folder(name, root, source.archive, source.folder, source.md5, download,
                          lambda: download_cifar(name, root))


def archive_folder(name: str, root: Path, archive_name: str, folder_name: str, md5: str, download: bool,
                   fetch) -> Path:
    """The extracted `root/folder_name`; else `root/archive_name` checked against `md5` and extracted;
    else, with `download`, what `fetch()` returns (the folder, downloaded and extracted)."""
    folder, archive = root / folder_name, root / archive_name
    if folder.is_dir():
        return folder
    if archive.is_file():
        _check_md5(archive, md5)
        return _extract(archive, root, folder_name)
    if download:
        return fetch()
    raise DatasetError(f"{name} not found: neither {folder} nor {archive} exists; set data.download=true "
                       f"to fetch it, or put {archive_name} in {root}")


def download_cifar(name: str, root: str | Path, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch the archive of `name` into `root`, check its MD5, extract it; returns the extracted folder.

    `url` and `md5` default to the official ones (tests point them at a local server).
    """
    source = CIFAR_SOURCES[name]
    root = Path(root)
    archive = download_file(url or source.url, md5 or source.md5, root / source.archive)
    return _extract(archive, root, source.folder)


def download_file(url: str, md5: str, destination: Path) -> Path:
    """Fetch `url` to `destination` through a temporary file that replaces it only once its MD5 is `md5`."""
    root = destination.parent
    root.mkdir(parents=True, exist_ok=True)
    handle, partial_path = create_temp(root, destination.name, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            got = _fetch(url, out, root)
        if got != md5:
            raise DatasetError(f"download of {url} has MD5 {got}, expected {md5}: "
                               "the transfer was corrupted or the file changed; download again")
        os.replace(partial_path, destination)
    finally:
        if os.path.exists(partial_path):
            os.remove(partial_path)
    return destination


def _fetch(url: str, out, root: Path) -> str:
    """Stream `url` into the open file `out`; returns the MD5 hex digest of what arrived."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise DatasetError(f"cannot download {url} ({reason}): check the network, or put the archive in {root} "
                           "by hand") from err
    return digest.hexdigest()


def _check_md5(archive: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DatasetError(f"{archive} has MD5 {digest.hexdigest()}, expected {expected}: the file is corrupt or "
                           "incomplete; delete it and download it again (data.download=true)")


def _extract(archive: Path, root: Path, folder: str) -> Path:
    """Extract `archive`, which must hold only plain files and folders under `folder`, into `root`.

    Extraction goes to a temporary folder first, so an interrupted run never leaves a half
    folder that would later pass for a complete one.
    """
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}."))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                inside = member.name == folder or member.name.startswith(folder + "/")
                if not inside or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{archive} holds the unexpected entry '{member.name}': it is not the "
                                       "official archive; delete it and download it again")
            tar.extractall(staging, members=members, filter="data")
        os.replace(staging / folder, root / folder)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"cannot extract {archive} ({err}): delete it and download it again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root / folder


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and bytes, and nothing that could run other code."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles written by Python 3
            import codecs
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _numpy_reconstruct():
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")._reconstruct


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the CIFAR folder is incomplete; delete it and extract the archive again")
    try:
        with open(path, "rb") as f:
            content = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DatasetError(f"cannot read {path} ({err}): not an official CIFAR file; "
                           "delete the folder and extract the archive again") from err
    if not isinstance(content, dict):
        raise DatasetError(f"{path} holds a {type(content).__name__}, not a dict: not an official CIFAR file; "
                           "delete the folder and extract the archive again")
    return content


def _read_batches(folder: Path, files: Sequence[str], labels_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for file in files:
        batch = _unpickle(folder / file)
        data, batch_labels = np.asarray(batch.get(b"data")), np.asarray(batch.get(labels_key), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch_labels) != len(data):
            raise DatasetError(f"{folder / file} holds data of shape {data.shape} ({data.dtype}) and "
                               f"{len(batch_labels)} labels, expected uint8 (N, 3072) and N labels: not an "
                               "official CIFAR batch")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def reads_mapped(data_cfg) -> bool:
    """Whether the run's folders are decoded into and read from memory-mapped caches: every
    placement but `device` (docs/placement.md); the unlabeled pool follows the same rule."""
    return data_cfg.placement != "device"


# ---------------------------------------------------------------- ImageFolder


def load_imagefolder(root: str | Path, workers: int | None = None,
                     fit_to: tuple[int, str] | None = None, mapped: bool = False) -> Dataset:
    """`root/train/<class>/...` and `root/test/<class>/...`, decoded once and then read from the cache.

    Every image is converted with Pillow's `convert("RGB")`: grayscale (L) is replicated to
    three channels, RGBA drops its alpha channel (no compositing), palette (P) images are
    expanded; 16-bit grayscale keeps the high byte of each value (see `_rgb_array`). Files are found recursively below each class folder and read in sorted path
    order; files without an image extension are ignored. `fit_to` = (image_size, policy) brings
    every image to that size (`resize.fit`); without it all images must have one size.
    `mapped`: the images come back memory-mapped from the cache (read-only), and a fresh decode
    is written into the cache chunk by chunk (`mmap_cache.decode_to_cache`), never whole in RAM.
    """
    root = Path(root).absolute()  # file paths are cut relative to it for the fingerprint
    class_names, train_files, test_files = list_tree(root)
    files = train_files + test_files
    fingerprint = tree_fingerprint(root, files, fit_to)
    cached = _read_cache(root, fingerprint, "imagefolder", lambda meta, images: (
        {"class_names", "n_train"} <= meta.keys() and len(images) == len(meta["labels"])), mapped)
    decoded = None
    if cached is None and mapped:
        labels = np.asarray([f.label for f in files], dtype=np.int64)
        meta = {"class_names": class_names, "n_train": len(train_files), "labels": labels.tolist()}
        decoded = _decode_into_cache(root, fingerprint, [f.path for f in files], workers, fit_to, meta, "imagefolder")
    if decoded is not None:
        images, n_train = decoded, len(train_files)
    elif cached is not None:
        images, meta = cached
        class_names, n_train = meta["class_names"], meta["n_train"]
        labels = np.asarray(meta["labels"], dtype=np.int64)
    else:
        images = decode_images([f.path for f in files], workers, fit_to)
        labels = np.asarray([f.label for f in files], dtype=np.int64)
        n_train = len(train_files)
        _write_cache(root, fingerprint, images, {"class_names": class_names, "n_train": n_train,
                                                 "labels": labels.tolist()}, "imagefolder")
    return Dataset(root.name, images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], class_names)


class ImageFile(NamedTuple):
    path: str
    label: int
    size: int  # bytes on disk
    mtime_ns: int


def list_tree(root: Path) -> tuple[list[str], list[ImageFile], list[ImageFile]]:
    """Class names and the image files of each split, in sorted order."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist: set data.root to a folder holding train/ and test/")
    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(f"{root} has no {split}/ folder: an ImageFolder tree needs {root}/{split}/<class>/<images>")
        splits[split] = sorted(p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("."))
        if not splits[split]:
            raise DatasetError(f"{root / split} has no class folders: put the images in {root / split}/<class>/")
    class_names = splits["train"]
    if splits["test"] != class_names:
        missing, extra = sorted(set(class_names) - set(splits["test"])), sorted(set(splits["test"]) - set(class_names))
        raise DatasetError(f"class folders of {root / 'test'} differ from {root / 'train'} (missing in test: "
                           f"{', '.join(missing) or 'none'}; only in test: {', '.join(extra) or 'none'}): "
                           "give both splits the same classes")
    files = {split: [file for label, name in enumerate(class_names)
                     for file in _image_files(root / split / name, label)] for split in splits}
    return class_names, files["train"], files["test"]


def _image_files(folder: Path, label: int) -> list[ImageFile]:
    files = sorted(_scan(str(folder), label), key=lambda f: f.path.split(os.sep))
    if not files:
        raise DatasetError(f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                           "add images or remove the folder")
    return files


def _scan(folder: str, label: int) -> Iterator[ImageFile]:
    """Image files below `folder`; os.scandir because pathlib's rglob + stat is 3x slower on 60k files."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from _scan(entry.path, label)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and entry.is_file():
                stat = entry.stat()
                yield ImageFile(entry.path, label, stat.st_size, stat.st_mtime_ns)


def tree_fingerprint(root: Path, files: Sequence[ImageFile], fit_to: tuple[int, str] | None = None) -> str:
    """Changes when any image is added, removed, renamed, rewritten or touched, or when the
    images are brought to another size or by another policy (`fit_to`)."""
    digest = hashlib.sha256(f"sesemi-imagefolder-v{CACHE_VERSION}\n".encode())
    if fit_to is not None:  # none keeps the key of the trees cached before data.resize existed
        digest.update(f"resize={fit_to[1]} size={fit_to[0]}\n".encode())
    prefix = len(str(root)) + 1
    for file in files:
        relative = file.path[prefix:].replace(os.sep, "/")
        digest.update(f"{relative}\t{file.size}\t{file.mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_images(files: Sequence[str | Path], workers: int | None = None,
                  fit_to: tuple[int, str] | None = None) -> np.ndarray:
    """uint8 (N, H, W, 3) of `files`, which must all have the size of the first; with `fit_to` =
    (image_size, policy), each is brought to that size by `resize.fit` instead (in the workers).

    `workers` processes decode chunks in parallel (default: one per CPU, at most 8, and a
    single in-process loop for fewer than 4,096 files, or 256 to be resized: there, starting
    processes costs more than it saves). A file that cannot be used stops the decode once every
    chunk is done, so the error can say how many there are; none is skipped.
    """
    if not files:
        raise DatasetError("no image files to decode")
    if fit_to is None:
        first = _open_rgb(files[0]).shape[:2]
        reference = (files[0], first)
    else:
        first, reference = (fit_to[0], fit_to[0]), None
    shape = (len(files), first[0], first[1], 3)
    enough = 4096 if fit_to is None else 256  # a photo to resize costs far more than a 32 px PNG
    workers = workers or (min(_usable_cpus(), 8) if len(files) >= enough else 1)
    chunk_size = 1024 if fit_to is None else 64
    decode_chunk = partial(_decode_files, reference=reference, fit_to=fit_to)
    chunks = [list(files[i:i + chunk_size]) for i in range(0, len(files), chunk_size)]
    if workers == 1:
        return _fill(np.empty(shape, dtype=np.uint8), map(decode_chunk, chunks))
    # spawn, not fork: the caller may have started JAX's or torch's threads, which fork can deadlock.
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        return _fill(np.empty(shape, dtype=np.uint8), executor.map(decode_chunk, chunks))
    except BrokenProcessPool:  # e.g. a __main__ that spawned workers cannot import (python - < script)
        warnings.warn(f"parallel decoding failed to start; decoding {len(files)} images in this process",
                      stacklevel=2)
        return _fill(np.empty(shape, dtype=np.uint8), map(decode_chunk, chunks))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # an error stops the queued chunks at once


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours CPU pinning of containers and batch jobs
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _fill(images: np.ndarray, chunks) -> np.ndarray:
    start, failures = 0, []
    for chunk, chunk_failures in chunks:
        images[start:start + len(chunk)] = chunk
        start += len(chunk)
        failures += chunk_failures
    if failures:
        raise DatasetError(failures[0] + _more_failures(failures))
    return images


def _more_failures(failures: list[str]) -> str:
    """'' for one failure; else how many more, all of them written to a list the message names."""
    if len(failures) == 1:
        return ""
    listing = cache_dir() / "unusable-images.txt"
    try:
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{line}\n" for line in failures))
    except OSError:
        return f" ({len(failures) - 1} more files cannot be used either)"
    return f" ({len(failures) - 1} more files cannot be used either; all are listed in {listing})"


def _decode_files(files: Sequence[str | Path], reference: tuple[str | Path, tuple[int, int]] | None,
                  fit_to: tuple[int, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(uint8 images, one message per file that cannot be used); unusable slots stay zero."""
    height, width = reference[1] if fit_to is None else (fit_to[0], fit_to[0])
    out = np.zeros((len(files), height, width, 3), dtype=np.uint8)
    failures = []
    for i, path in enumerate(files):
        try:
            image = _open_rgb(path)
            image = image if fit_to is None else _fit_or_fail(image, fit_to[0], fit_to[1], path)
        except DatasetError as err:
            failures.append(str(err))
            continue
        if fit_to is None and image.shape[:2] != (height, width):
            raise DatasetError(f"{path} is {image.shape[1]}x{image.shape[0]} but {reference[0]} is "
                               f"{width}x{height}: all images of a dataset must have one size; resize them")
        out[i] = image
    return out, failures


def _open_rgb(path: str | Path) -> np.ndarray:
    if os.path.getsize(path) == 0:
        raise DatasetError(f"image {path} is empty (0 bytes): replace or delete the file")
    try:
        with Image.open(path) as image:
            return _rgb_array(image, path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, DatasetError):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetError(f"cannot decode image {path} ({reason}): replace or delete the file") from err


_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow opens 16-bit gray PNGs as I;16 (older: I)


def _rgb_array(image: Image.Image, path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) of an open image.

    Pillow's `convert("RGB")` clips 16-bit gray values to 255, which turns almost every
    pixel white, so those are scaled here: the 8-bit value is the high byte (value >> 8).
    That is how Pillow itself decodes 16-bit colour PNGs, so a 16-bit gray image and its
    16-bit RGB copy give the same bytes, and an 8-bit image stored as 16 bits (v * 257)
    comes back exactly. Floating-point images have no agreed range and are refused.
    """
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode in _SIXTEEN_BIT_GRAY:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 0xFFFF):
            raise DatasetError(f"image {path} has {image.mode}-mode values from {values.min()} to {values.max()}, "
                               "outside the 16-bit range: save it as an 8- or 16-bit image")
        gray = (values >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        raise DatasetError(f"image {path} holds floating-point pixels, which have no agreed range: save it as "
                           "an 8- or 16-bit image")
    return np.asarray(image.convert("RGB"))


def _cache_stem(root: Path, kind: str) -> str:
    """One cache entry per source folder and kind (imagefolder, unlabeled); its fingerprint is part
    of the name."""
    where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return f"{kind}-{root.resolve().name}-{where}"


def _read_cache(root: Path, fingerprint: str, kind: str, usable, mapped: bool = False) -> tuple[np.ndarray, dict] | None:
    """(images, meta) of the cache entry of `fingerprint`, if `usable(meta, images)`; else None.
    `mapped`: the images memory-mapped, read-only."""
    base = cache_dir() / f"{_cache_stem(root, kind)}-{fingerprint[:16]}"
    try:
        meta = json.loads(base.with_suffix(".json").read_text())
        if meta.get("fingerprint") != fingerprint:
            return None
        images = np.load(base.with_suffix(".npy"), allow_pickle=False, mmap_mode="r" if mapped else None)
        ok = images.dtype == np.uint8 and images.ndim == 4 and usable(meta, images)
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or foreign: decode again
        return None
    return (images, meta) if ok else None


def _write_cache(root: Path, fingerprint: str, images: np.ndarray, meta: dict, kind: str) -> None:
    """Images first, then the JSON that vouches for them; each through a temp file and os.replace."""
    folder = cache_dir()
    stem = _cache_stem(root, kind)
    base = folder / f"{stem}-{fingerprint[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(base.with_suffix(".npy"), lambda f: np.save(f, images, allow_pickle=False), sync=False)
        text = json.dumps({"fingerprint": fingerprint, "source": str(root.resolve()), **meta}, allow_nan=False)
        atomic_write(base.with_suffix(".json"), lambda f: f.write(text.encode()), sync=False)
    except OSError as err:
        warnings.warn(f"could not cache the decoded images in {folder} ({err}); set SESEMI_CACHE_DIR to a "
                      "writable folder to skip decoding next time", stacklevel=3)
        return
    for stale in folder.iterdir():  # earlier versions of the same source
        if stale.name.startswith(f"{stem}-") and not stale.name.startswith(base.name):
            stale.unlink(missing_ok=True)


def _decode_into_cache(root: Path, fingerprint: str, files: list[str], workers: int | None,
                       fit_to: tuple[int, str] | None, meta: dict, kind: str) -> np.ndarray | None:
    """Decode `files` straight into the cache entry of `fingerprint` (chunk by chunk, memory-mapped)
    and vouch for it as `_write_cache` does; the images memory-mapped, or None when the cache
    folder cannot be written (the caller decodes in RAM and warns)."""
    from .mmap_cache import decode_to_cache  # it builds on this module's decoding

    folder = cache_dir()
    stem = _cache_stem(root, kind)
    base = folder / f"{stem}-{fingerprint[:16]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        images = decode_to_cache(files, base.with_suffix(".npy"), workers, fit_to).images
        text = json.dumps({"fingerprint": fingerprint, "source": str(root.resolve()), **meta})
        atomic_write(base.with_suffix(".json"), lambda f: f.write(text.encode()), sync=False)
    except OSError:
        return None
    for stale in folder.iterdir():  # earlier versions of the same source
        if stale.name.startswith(f"{stem}-") and not stale.name.startswith(base.name):
            stale.unlink(missing_ok=True)
    return images


# ---------------------------------------------------------------- a folder of unlabeled images


def load_unlabeled_folder(root: str | Path, image_size: int, policy: str, workers: int | None = None,
                          mapped: bool = False) -> np.ndarray:
    """uint8 (M, image_size, image_size, 3) of every image below `root` (any nesting, any names;
    sorted path order; hidden files and files without an image extension are ignored), brought to
    the size by `policy` (`resize.fit`), decoded once and then read from the cache. `mapped`: as
    `load_imagefolder`'s, memory-mapped and decoded into the cache chunk by chunk."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise DatasetError(f"data.unlabeled_root {root} is not a folder: set it to a folder of images without classes")
    files = sorted(_scan(str(root), -1), key=lambda f: f.path.split(os.sep))
    if not files:
        raise DatasetError(f"unlabeled folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add images, "
                           "or leave folder out of data.unlabeled")
    fit_to = None if policy == "none" else (image_size, policy)
    fingerprint = tree_fingerprint(root, files, fit_to)
    cached = _read_cache(root, fingerprint, "unlabeled", lambda meta, images: meta["count"] == len(images), mapped)
    images = cached[0] if cached is not None else None
    if images is None and mapped:
        images = _decode_into_cache(root, fingerprint, [f.path for f in files], workers, fit_to,
                                    {"count": len(files)}, "unlabeled")
    if images is None:
        images = decode_images([f.path for f in files], workers, fit_to)
        _check_unlabeled_size(images, root, image_size)
        _write_cache(root, fingerprint, images, {"count": len(images)}, "unlabeled")
    _check_unlabeled_size(images, root, image_size)  # a cache decoded without resizing holds the files' size
    return images


def _check_unlabeled_size(images: np.ndarray, root: Path, image_size: int) -> None:
    if images.shape[1:3] != (image_size, image_size):
        raise DatasetError(f"the images of unlabeled folder {root} are {images.shape[2]}x{images.shape[1]} but "
                           f"data.image_size is {image_size}: set data.resize=center_crop (or squash)")


# ---------------------------------------------------------------- images for prediction


def read_images(inputs: Sequence[str | Path], image_size: int, policy: str = "none") -> tuple[list[Path], np.ndarray]:
    """Image files, and folders searched recursively, as uint8 (N, image_size, image_size, 3).

    Images of another size are brought to it by the run's `policy` (`resize.fit`); with `none`
    (the run's images all had the size) they are squashed (bilinear, aspect ratio not kept) so
    any photo can still be classified. The paths come back in the order of the images.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        elif item.is_file():
            files.append(item)
        else:
            raise DatasetError(f"{item} does not exist: pass image files or folders of images")
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        image = _open_rgb(path)
        if policy == "none" and image.shape[:2] != (image_size, image_size):
            image = np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.BILINEAR))
        images[i] = _fit_or_fail(image, image_size, policy, path)
    return files, images
