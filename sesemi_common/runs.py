"""The run directory both frameworks write, so one report can read either.

    config.json     the full Config of the run
    split.npz       `labeled` (sorted int64 indices), `mean`, `std`, and the data fingerprint
    metrics.jsonl   one JSON object per logged step or evaluation
    summary.json    written when the run ends: final accuracy and loss, wall_time_s (this call's)
                    and training_s (the training windows of every call, resumes included)
    checkpoints/    framework-specific, written by the trainers
    weights/        step_<N>.npz beside each checkpoint, and model.npz when the run ends: the
                    model in either framework's hands (sesemi_common/run_weights.py)
    verify.json     written by `sesemi verify`: the run's model evaluated in both frameworks
    events.out.tfevents.*  TensorBoard event files: the scalars of metrics.jsonl and the views
    views/          step_<N>.png: the views the method trains on, at step 0 and each evaluation
    wandb_id.txt, wandb/   with train.wandb: the W&B run's id and wandb's own files

The life of a run directory, as `state()` names it:

    empty        no config.json: nothing was started here
    unfinished   config.json but no checkpoint and no summary: a start that failed or was
                 stopped before its first checkpoint; it holds nothing worth keeping, so a new
                 `train` replaces it
    stopped      at least one checkpoint and no summary: `--resume` continues it
    finished     summary.json exists; `--resume` never rewrites it

JSON files and the split are written atomically (temporary file + os.replace), so a crash
never leaves half a file; metric lines are appended and flushed one by one. Reading never
creates anything: only the write methods create the folder.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import Config
from .files import atomic_write

# Names of complete checkpoints: orbax renames its `<step>` folder into place when the save is
# complete, torch's `step_<step>.pt` is renamed into place too. Temporary names match neither.
_CHECKPOINT_NAME = re.compile(r"^(?:(\d+)|step_(\d+)\.pt)$")
# What a run writes; `clear` removes exactly these, never anything else a user keeps in the folder.
_RUN_FILES = ("config.json", "split.npz", "metrics.jsonl", "summary.json", "model.npz", "verify.json",
              "wandb_id.txt")
_RUN_FOLDERS = ("checkpoints", "weights", "views", "wandb")
_RUN_FILE_PATTERNS = ("events.out.tfevents.*",)


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the one-line message says what to do."""


class CheckpointError(RuntimeError):
    """No checkpoint of a run could be read; the message names each one and why."""


def note(text: str) -> None:
    """One line on stderr for the user: what sesemi did on its own, or what it skipped."""
    print(text, file=sys.stderr, flush=True)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def check_folder(self) -> None:
        """Refuse a path that exists and is not a folder, before anything is read or written."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--run-dir {self.path} is a file, not a folder: pass a folder (it is created "
                              "if missing)")

    def has_run(self) -> bool:
        """Whether a run was started here (its config is written first)."""
        return (self.path / "config.json").is_file()

    def is_finished(self) -> bool:
        return (self.path / "summary.json").is_file()

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints in `checkpoints/`, ascending (either framework's)."""
        if not self.checkpoints.is_dir():
            return []
        matches = (_CHECKPOINT_NAME.match(p.name) for p in self.checkpoints.iterdir())
        return sorted(int(m.group(1) or m.group(2)) for m in matches if m)

    def state(self) -> str:
        """'empty', 'unfinished', 'stopped' or 'finished' (see the module docstring)."""
        if not self.has_run():
            return "empty"
        if self.is_finished():
            return "finished"
        return "stopped" if self.checkpoint_steps() else "unfinished"

    def require_run(self, advice: str) -> None:
        """Refuse a folder that holds no run, with `advice` saying what to pass instead."""
        self.check_folder()
        if not self.has_run():
            where = "does not exist" if not self.path.exists() else "holds no run (no config.json)"
            raise RunDirError(f"{self.path} {where}: {advice}")

    def clear(self) -> None:
        """Remove what a run wrote here (config, split, metrics, summary, checkpoints, weights) and
        nothing else."""
        for name in _RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for pattern in _RUN_FILE_PATTERNS:
            for path in self.path.glob(pattern):
                path.unlink(missing_ok=True)
        for name in _RUN_FOLDERS:
            if (self.path / name).is_dir():
                shutil.rmtree(self.path / name)

    def remove_checkpoint(self, step: int) -> None:
        """Remove checkpoint `step` (either framework's) and its weights file: one that is known bad."""
        for path in (self.checkpoints / str(step), self.checkpoints / f"step_{step}.pt",
                     self.path / "weights" / f"step_{step}.npz"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def write_config(self, config: Config) -> None:
        _write_json(self._created("config.json"), config.to_dict())

    def read_config(self) -> Config:
        return Config.load(self._existing("config.json"))

    def write_split(self, labeled: np.ndarray, **extra: np.ndarray) -> None:
        arrays = {"labeled": np.asarray(labeled, dtype=np.int64), **{k: np.asarray(v) for k, v in extra.items()}}
        atomic_write(self._created("split.npz"), lambda f: np.savez(f, **arrays))

    def read_split(self) -> dict[str, np.ndarray]:
        """{'labeled': int64 indices, and every extra array given to write_split}."""
        path = self._existing("split.npz")
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        line = to_json(dict(record))
        with open(self._created("metrics.jsonl"), "a") as f:
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
                raise RunDirError(f"{path} line {number} is not JSON ({err}): fix or delete that line") from err
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to `step`: a resumed run rewrites what came after its checkpoint."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        text = "".join(to_json(r) + "\n" for r in kept)
        atomic_write(self._created("metrics.jsonl"), lambda f: f.write(text.encode()))

    @property
    def views(self) -> Path:
        return self.path / "views"

    def write_views(self, step: int, png: bytes) -> Path:
        """views/step_<step>.png, the picture of what the method trains on at `step`."""
        self._created("views").mkdir(exist_ok=True)
        path = self.views / f"step_{step:06d}.png"
        atomic_write(path, lambda f: f.write(png))
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        _write_json(self._created("summary.json"), dict(summary))

    def read_summary(self) -> dict:
        """The summary of a finished run; {} while the run has none."""
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_verification(self, verification: Mapping[str, Any]) -> None:
        _write_json(self._created("verify.json"), dict(verification))

    def read_verification(self) -> dict:
        """What `sesemi verify` found; {} for a run never verified."""
        path = self.path / "verify.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _created(self, name: str) -> Path:
        """`path / name`, creating the folder first: the one place a run directory comes into being."""
        self.check_folder()
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path / name

    def _existing(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise RunDirError(f"{path} does not exist: is {self.path} a run directory written by "
                              "sesemi-jax/sesemi-torch train?")
        return path


def to_json(value: Any, **options) -> str:
    """Strict JSON (RFC 8259) of `value`: numpy and framework numbers as Python's, and a NaN or an
    infinity as null, so every JSON file sesemi writes parses anywhere (no bare `NaN`)."""
    return json.dumps(_plain(value), allow_nan=False, **options)


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python numbers and lists, for JSON;
    non-finite floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
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
    text = to_json(value, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
