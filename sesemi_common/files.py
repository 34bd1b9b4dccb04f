"""Atomic file writes that keep the permissions a plain `open()` would give.

`tempfile.mkstemp` creates its file with mode 0600 whatever the umask, so a run directory
written through it could not be read by a colleague although its metrics and checkpoints
could. Temporary files here are created with `os.open(..., 0o666)`, which the umask trims
exactly as it trims `open(path, "w")`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def create_temp(folder: Path, name: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """(open fd, path) of a new hidden file beside `folder / name`, mode 0666 minus the umask."""
    while True:
        path = Path(folder) / f".{name}.{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:  # a name drawn twice; draw again
            continue


def atomic_write(path: Path, write: Callable, sync: bool = True) -> None:
    """Write `path` through a temporary file and `os.replace`, so a crash never leaves half a file."""
    path = Path(path)
    handle, temp = create_temp(path.parent, path.name)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
