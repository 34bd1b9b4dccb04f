"""STL-10 from its official binary archive: 5,000 labeled train, 8,000 test, 100,000 unlabeled images.

`stl10_binary.tar.gz` extracts to `stl10_binary/` holding `train_X.bin`, `train_y.bin`,
`test_X.bin`, `test_y.bin`, `unlabeled_X.bin` and `class_names.txt`. An `_X.bin` file is raw
uint8: per image 3 x 96 x 96 values, channel after channel, each channel stored column by
column (the layout MATLAB wrote). A `_y.bin` file holds one uint8 label per image, 1..10, in
the order of `class_names.txt`.

The 100,000 unlabeled images (2.8 GB) are not read into memory here: they come back as a
read-only memory map of `unlabeled_X.bin`, viewed as (N, 96, 96, 3), so only what the pool
gathers is read, and no second copy is ever made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import Dataset, DatasetError, archive_folder, download_file, _extract

ARCHIVE = "stl10_binary.tar.gz"
FOLDER = "stl10_binary"
URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
NUM_CLASSES = 10


def load_stl10(root: str | Path, download: bool = False) -> Dataset:
    """STL-10 from `root` (the extracted folder or the archive), downloading it when asked."""
    root = Path(root)
    folder = archive_folder("stl10", root, ARCHIVE, FOLDER, MD5, download, lambda: download_stl10(root))
    class_names = _class_names(folder / "class_names.txt")
    train_images, train_labels = _labeled(folder, "train")
    test_images, test_labels = _labeled(folder, "test")
    unlabeled = folder / "unlabeled_X.bin"
    unlabeled_images = _image_map(unlabeled) if unlabeled.is_file() else None
    return Dataset("stl10", train_images, train_labels, test_images, test_labels, class_names, unlabeled_images)


def download_stl10(root: str | Path, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch the archive into `root`, check its MD5, extract it; returns the extracted folder.

    `url` and `md5` default to the official ones (tests point them at a local server)."""
    root = Path(root)
    return _extract(download_file(url or URL, md5 or MD5, root / ARCHIVE), root, FOLDER)


def _class_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the STL-10 folder is incomplete; delete it and extract the archive again")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != NUM_CLASSES:
        raise DatasetError(f"{path} names {len(names)} classes, expected {NUM_CLASSES}: not the official STL-10 "
                           "file; delete the folder and extract the archive again")
    return names


def _labeled(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(_image_map(folder / f"{split}_X.bin"))  # 138 MB (train), 221 MB (test)
    labels_path = folder / f"{split}_y.bin"
    if not labels_path.is_file():
        raise DatasetError(f"{labels_path} is missing: the STL-10 folder is incomplete; delete it and extract "
                           "the archive again")
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64)
    if len(labels) != len(images) or not np.all((labels >= 1) & (labels <= NUM_CLASSES)):
        raise DatasetError(f"{labels_path} holds {len(labels)} labels from {labels.min(initial=0)} to "
                           f"{labels.max(initial=0)} for {len(images)} images, expected one label in 1..{NUM_CLASSES} "
                           "per image: not the official STL-10 file; delete the folder and extract the archive again")
    return images, labels - 1


def _image_map(path: Path) -> np.ndarray:
    """Read-only (N, 96, 96, 3) view of an `_X.bin` file (its bytes are (N, channel, x, y))."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the STL-10 folder is incomplete; delete it and extract the archive again")
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise DatasetError(f"{path} has {size} bytes, not a positive multiple of {IMAGE_BYTES} (one 3x96x96 "
                           "image): not the official STL-10 file; delete the folder and extract the archive again")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // IMAGE_BYTES, 3, SIZE, SIZE))
    return raw.transpose(0, 3, 2, 1)
