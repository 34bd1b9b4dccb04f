"""Restoring the newest checkpoint that loads, shared by both frameworks' checkpoints.py.

Two checkpoints are kept so that one that cannot be read (a disk error, a copy cut short, a
file edited by hand) costs the steps since the one before, not the run.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from .runs import CheckpointError, note

T = TypeVar("T")


def reason(err: BaseException) -> str:
    """The first line of an error, short enough for a one-line message."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def newest_that_loads(directory, steps: Sequence[int], load: Callable[[int], T]) -> T:
    """`load(step)` of the newest of `steps` that loads; one stderr line per skipped checkpoint."""
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}: the run stopped before its first checkpoint")
    failures = []
    for step in sorted(steps, reverse=True):
        try:
            loaded = load(step)
        except Exception as err:  # any failure to read means this checkpoint is unusable
            failures.append(f"step {step} ({type(err).__name__}: {reason(err)})")
            continue
        for failure in failures:
            note(f"warning: skipped the checkpoint of {failure} in {directory}: it cannot be read; "
                 f"restored step {step}")
        return loaded
    raise CheckpointError(f"no checkpoint in {directory} can be read: {'; '.join(failures)}")
