"""The torch-free weights file both frameworks read and write: `.npz` keyed by PyTorch state-dict names.

A file may also hold a metadata record (who trained the model, at which step, ...) under
`METADATA_KEY`, a JSON string; `read_npz` leaves it out, so the state dict is exactly the model's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .files import atomic_write

METADATA_KEY = "__sesemi__"  # no PyTorch state-dict name looks like this
# `{name}_head.weight`: an extra head a method declares (SESEMI's `self_head`); `sup_head.linear.*` is not one.
_EXTRA_HEAD = re.compile(r"^(\w+)_head\.weight$")


class WeightsError(ValueError):
    """A weights file that does not fit the model; the message names the key."""


def read_npz_with_metadata(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state dict, metadata record or {})."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: pass the path of a .npz weights file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        metadata = json.loads(str(arrays.pop(METADATA_KEY))) if METADATA_KEY in arrays else {}
    except Exception as err:  # a truncated or overwritten zip raises zipfile, zlib, OS or value errors
        # numpy's own text for a pickle advises allow_pickle=True, i.e. running the file's code: not shown.
        detail = "it holds pickled objects, not arrays" if "allow_pickle" in str(err) else f"{type(err).__name__}: {err}"
        raise WeightsError(f"weights file {path} is not a readable .npz ({detail}): pass a run's "
                           "model.npz or weights/step_<N>.npz") from err
    return arrays, metadata


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    return read_npz_with_metadata(path)[0]


def write_npz(arrays: Mapping[str, np.ndarray], path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
    """Write to exactly `path` (np.savez would otherwise append '.npz'), atomically: a crash
    never leaves half a file where a reader would take it for a model."""
    arrays = {key: np.asarray(value, order="C") for key, value in arrays.items()}  # ascontiguousarray makes 0-d 1-d
    if metadata is not None:
        arrays[METADATA_KEY] = np.asarray(json.dumps(dict(metadata), sort_keys=True, allow_nan=False))
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def extra_heads(state_dict: Mapping[str, np.ndarray]) -> dict[str, int]:
    """The method heads a SesemiNet state dict holds, name -> classes (SESEMI's: {"self": 6})."""
    return {m.group(1): int(np.shape(value)[0]) for key, value in state_dict.items()
            if (m := _EXTRA_HEAD.match(key))}
