"""Orbax checkpoints of the training state.

Orbax writes each step into a temporary folder and renames it when complete, so a crash
mid-write never leaves a broken latest checkpoint: `latest_step` only sees finished ones.
A checkpoint broken later (disk, copy, hand) is skipped by `restore`, which falls back to
the newest one that loads.

A train state whose method carries no state (`method_state` is {}) is written without that
field, exactly as before methods could carry state, so those checkpoints still load and a
stateless run's checkpoints are unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax.training import train_state

from sesemi_common.checkpoint_fallback import newest_that_loads
from sesemi_common.progress import NonFiniteWeightsError

from .train import TrainState


class _StatelessTrainState(train_state.TrainState):
    """TrainState's fields without `method_state`: what a checkpoint holds for a method without state."""

    batch_stats: Any
    rng: jax.Array
    ema: Any


def _on_disk(state: Any) -> Any:
    if not isinstance(state, TrainState) or state.method_state:
        return state
    fields = {name: getattr(state, name) for name in ("step", "apply_fn", "params", "tx", "opt_state",
                                                       "batch_stats", "rng", "ema")}
    return _StatelessTrainState(**fields)


def _in_memory(restored: Any, like: Any) -> Any:
    if not isinstance(restored, _StatelessTrainState):
        return restored
    return like.replace(step=restored.step, params=restored.params, opt_state=restored.opt_state,
                        batch_stats=restored.batch_stats, rng=restored.rng, ema=restored.ema)


def _manager(directory: Path) -> ocp.CheckpointManager:
    # Synchronous saves: the loop checks losses before saving, and a kill right after
    # `save` returns must find the checkpoint complete on disk.
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def all_finite(tree: Any) -> bool:
    """Whether every floating leaf is finite; of a replicated array, this process's own copy."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array):
            leaf = leaf.addressable_shards[0].data
        if jnp.issubdtype(leaf.dtype, jnp.floating) and not bool(np.isfinite(np.asarray(leaf, np.float32)).all()):
            return False
    return True


def save(directory: Path, step: int, state: Any) -> None:
    """Refuses (NonFiniteWeightsError, nothing written) a state whose variables are not finite."""
    if not all_finite((state.params, state.batch_stats, state.ema)):
        raise NonFiniteWeightsError(step)
    _check_space(Path(directory), step, state)
    try:
        with _manager(directory) as manager:
            if step in manager.all_steps():  # an unreadable checkpoint a fallback resume is now replacing
                manager.delete(step)
            manager.save(step, args=ocp.args.StandardSave(_on_disk(state)), force=True)
            manager.wait_until_finished()
    except ValueError as err:  # tensorstore reports a full disk as a ValueError, not an OSError
        for partial in Path(directory).glob(f"{step}.orbax-checkpoint-tmp*"):  # the space it took
            shutil.rmtree(partial, ignore_errors=True)
        for code, words in ((errno.ENOSPC, ("RESOURCE_EXHAUSTED", "No space left")),
                            (errno.EROFS, ("Read-only file system",))):
            if any(word in str(err) for word in words):
                raise OSError(code, os.strerror(code), str(Path(directory) / str(step))) from None
        raise


def _check_space(directory: Path, step: int, state: Any) -> None:
    """A full disk refused before orbax writes: its writer threads would each log a traceback of
    their own before the save fails. The state's bytes bound the checkpoint (orbax does not compress)."""
    needed = sum(int(getattr(leaf, "nbytes", 0)) for leaf in jax.tree_util.tree_leaves(state))
    folder = directory
    while not folder.exists():
        folder = folder.parent
    if shutil.disk_usage(folder).free < needed:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / str(step)))


def latest_step(directory: Path) -> int | None:
    if not Path(directory).is_dir():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def restore(directory: Path, like: Any, step: int | None = None) -> Any:
    """The state saved at `step` (default: the newest that loads), shaped like `like` (a state of this run)."""
    if not Path(directory).is_dir():  # checked first: the manager would create the folder
        return newest_that_loads(directory, [], lambda _: None)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _on_disk(like))
    with _manager(directory) as manager:
        steps = manager.all_steps() if step is None else [step]
        return _in_memory(newest_that_loads(directory, steps,
                                            lambda s: manager.restore(s, args=ocp.args.StandardRestore(abstract))),
                          like)
