"""SVHN, the cropped digits, from the official MATLAB files: 73,257 train, 26,032 test, 531,131 extra.

`train_32x32.mat`, `test_32x32.mat` and `extra_32x32.mat` live in `data.root` as published
(no archive). Each holds `X`, uint8 (32, 32, 3, N), and `y`, (N, 1) labels 1..10 where 10 is
the digit 0; the labels here are the digits themselves, 0..9. The files are read with
`scipy.io.loadmat` (scipy comes with scikit-learn). A downloaded file's MD5 is checked
before it takes its final name, so a file in `data.root` is either complete or the user's own.

`extra` (1.6 GB decoded) is read only when asked (`data.unlabeled` names `split`); its images
come back as a view of the array scipy read, so one copy is held, not two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import Dataset, DatasetError, download_file

BASE_URL = "http://ufldl.stanford.edu/housenumbers"
MD5 = {
    "train": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test": "eb5a983be6a315427106f1b164d9cef3",
    "extra": "a93ce644f1a588dc4d68dda5feec44a7",
}
CLASS_NAMES = [str(digit) for digit in range(10)]


def file_name(split: str) -> str:
    return f"{split}_32x32.mat"


def load_svhn(root: str | Path, download: bool = False, with_extra: bool = False,
              base_url: str | None = None) -> Dataset:
    """SVHN from the `.mat` files in `root`, downloading the missing ones when asked (from `base_url`,
    default the official one); `extra` as `unlabeled_images` when `with_extra`."""
    root, base_url = Path(root), base_url or BASE_URL
    train_images, train_labels = _read(_svhn_file(root, "train", download, base_url))
    test_images, test_labels = _read(_svhn_file(root, "test", download, base_url))
    extra = None
    if with_extra:
        extra, _ = _read(_svhn_file(root, "extra", download, base_url), contiguous=False)
    return Dataset("svhn", train_images, train_labels, test_images, test_labels, list(CLASS_NAMES), extra)


def _svhn_file(root: Path, split: str, download: bool, base_url: str) -> Path:
    path = root / file_name(split)
    if path.is_file():
        return path
    if download:
        return download_file(f"{base_url}/{file_name(split)}", MD5[split], path)
    need = " (data.unlabeled names split)" if split == "extra" else ""
    raise DatasetError(f"svhn {split} not found{need}: {path} does not exist; set data.download=true to fetch it, "
                       f"or put {file_name(split)} in {root}")


def _read(path: Path, contiguous: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, 32, 32, 3), int64 digits) of one `.mat` file."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise DatasetError("data.dataset=svhn reads MATLAB files with scipy, which is not installed: "
                           "pip install scipy") from err
    try:
        content = loadmat(path, variable_names=("X", "y"))
    except Exception as err:  # scipy raises MatReadError, ValueError, OSError, ... for a file that is not a .mat
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetError(f"cannot read {path} ({reason}): not an official SVHN file; delete it and download it "
                           "again (data.download=true)") from err
    images, labels = content.get("X"), content.get("y")
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[:3] != (32, 32, 3)
            or not isinstance(labels, np.ndarray) or labels.size != images.shape[-1]):
        raise DatasetError(f"{path} does not hold X as uint8 (32, 32, 3, N) and N labels y: not an official SVHN "
                           "file; delete it and download it again (data.download=true)")
    labels = labels.reshape(-1).astype(np.int64)
    if not np.all((labels >= 1) & (labels <= 10)):
        raise DatasetError(f"{path} has labels from {labels.min()} to {labels.max()}, expected 1..10 (10 is the "
                           "digit 0): not an official SVHN file; delete it and download it again")
    images = images.transpose(3, 0, 1, 2)  # (N, H, W, C), a view
    return (np.ascontiguousarray(images) if contiguous else images), labels % 10
