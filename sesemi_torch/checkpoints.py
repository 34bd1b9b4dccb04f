"""`torch.save` checkpoints written atomically: a crash mid-write never breaks the latest one.

Each checkpoint is written to a temporary file in the same folder and renamed into place
(`os.replace` is atomic on POSIX), so `step_<N>.pt` files are always complete. A checkpoint
broken later (disk, copy, hand) is skipped by `restore`, which falls back to the newest one
that loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from sesemi_common.checkpoint_fallback import newest_that_loads
from sesemi_common.progress import NonFiniteWeightsError

_NAME = re.compile(r"^step_(\d+)\.pt$")
KEEP = 2


def _steps(directory: Path) -> list[int]:
    if not Path(directory).is_dir():
        return []
    return sorted(int(m.group(1)) for p in Path(directory).iterdir() if (m := _NAME.match(p.name)))


def latest_step(directory: Path) -> int | None:
    steps = _steps(directory)
    return steps[-1] if steps else None


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state_dict.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def save(directory: Path, step: int, state: dict[str, Any]) -> Path:
    """Refuses (NonFiniteWeightsError, nothing written) a state whose model or EMA is not finite."""
    if not all(all_finite(state[key]) for key in ("model", "ema") if key in state):
        raise NonFiniteWeightsError(step)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step}.pt"
    tmp = directory / f".step_{step}.pt.tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # a failed write (a full disk) leaves no partial file behind
        tmp.unlink(missing_ok=True)
    for old in _steps(directory)[:-KEEP]:
        (directory / f"step_{old}.pt").unlink()
    return path


def restore(directory: Path, step: int | None = None) -> dict[str, Any]:
    """The state saved at `step` (default: the newest that loads)."""
    steps = _steps(directory) if step is None else [step]
    return newest_that_loads(directory, steps, lambda s: torch.load(
        Path(directory) / f"step_{s}.pt", map_location="cpu", weights_only=False))
