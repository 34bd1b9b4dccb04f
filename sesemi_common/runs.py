"""The run directory both frameworks write, so one report can read either.

    config.json     the full Config of the run
    split.npz       `labeled` (sorted int64 indices) and extras such as `mean`, `std`
    metrics.jsonl   one JSON object per logged step or evaluation
    summary.json    written when the run ends
    checkpoints/    framework-specific, written by the trainers

JSON files and the split are written atomically (temporary file + os.replace), so a crash
never leaves half a file; metric lines are appended and flushed one by one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .config import Config


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoints(self) -> Path:
        folder = self.path / "checkpoints"
        folder.mkdir(exist_ok=True)
        return folder

    def has_run(self) -> bool:
        """Whether a run was started here (its config is written first)."""
        return (self.path / "config.json").is_file()

    def write_config(self, config: Config) -> None:
        _write_json(self.path / "config.json", config.to_dict())

    def read_config(self) -> Config:
        return Config.load(self.path / "config.json")

    def write_split(self, labeled: np.ndarray, **extra: np.ndarray) -> None:
        arrays = {"labeled": np.asarray(labeled, dtype=np.int64), **{k: np.asarray(v) for k, v in extra.items()}}
        _atomic_write(self.path / "split.npz", lambda f: np.savez(f, **arrays))

    def read_split(self) -> dict[str, np.ndarray]:
        """{'labeled': int64 indices, and every extra array given to write_split}."""
        path = self._existing("split.npz")
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(_plain(dict(record)))
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
            f.flush()

    def read_metrics(self) -> list[dict]:
        """Every record in order; [] before the first one. A torn last line (a crash) is skipped."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        text = path.read_text()
        lines = text.splitlines()
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if number == len(lines) and not text.endswith("\n"):
                    break
                raise ValueError(f"{path} line {number} is not JSON ({err}): fix or delete that line") from err
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to `step`: a resumed run rewrites what came after its checkpoint."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        _atomic_write(self.path / "metrics.jsonl", lambda f: f.write(text.encode()))

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        _write_json(self.path / "summary.json", dict(summary))

    def read_summary(self) -> dict:
        """The summary of a finished run; {} while the run has none."""
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _existing(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is {self.path} a run directory written by "
                                    "sesemi-jax/sesemi-torch train?")
        return path


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python numbers and lists, for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return _plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):  # jax/torch scalars
        return _plain(np.asarray(value).tolist())
    return value


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(_plain(value), indent=2, sort_keys=True) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode()))


def _atomic_write(path: Path, write: Callable) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
