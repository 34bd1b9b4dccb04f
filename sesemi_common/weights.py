"""The torch-free weights file both frameworks read and write: `.npz` keyed by PyTorch state-dict names."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


class WeightsError(ValueError):
    """A weights file that does not fit the model; the message names the key."""


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: pass the path of a .npz weights file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as err:
        raise WeightsError(f"weights file {path} is not a readable .npz ({err})") from err


def write_npz(arrays: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write to exactly `path` (np.savez would otherwise append '.npz')."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
