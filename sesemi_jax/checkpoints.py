"""Orbax checkpoints of the training state.

Orbax writes each step into a temporary folder and renames it when complete, so a crash
mid-write never leaves a broken latest checkpoint: `latest_step` only sees finished ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _manager(directory: Path) -> ocp.CheckpointManager:
    # Synchronous saves: the loop checks losses before saving, and a kill right after
    # `save` returns must find the checkpoint complete on disk.
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(directory: Path, step: int, state: Any) -> None:
    with _manager(directory) as manager:
        manager.save(step, args=ocp.args.StandardSave(state), force=True)
        manager.wait_until_finished()


def latest_step(directory: Path) -> int | None:
    if not Path(directory).is_dir():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def restore(directory: Path, like: Any, step: int | None = None) -> Any:
    """The state saved at `step` (default: latest), shaped like `like` (a state of this run)."""
    with _manager(directory) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}: train without --resume first")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
