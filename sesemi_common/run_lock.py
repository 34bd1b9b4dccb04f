"""The run-directory lock: one process at a time trains (or resumes, or replaces) a run.

The lock is an `fcntl.flock` on `RUN/.sesemi.lock`, a file that also names its holder (pid,
host, command, start time) so that a refusal can say who holds the run. flock rather than a pid
file: the kernel releases the lock when its holder exits however it exits (kill -9, an OOM kill,
a reboot), so a dead holder never blocks the directory and there is no stale pid to judge, nor a
pid reused after a reboot to mistake for the holder. What the file says is read only to name
the holder of a lock the kernel says is held.

Within one process the lock is re-entrant: the CLI takes it for the whole `train` command and
`experiment.prepare` takes it again (for callers of `fit` without the CLI); both get the same
`RunLock`, released when the last reference to it goes (or by `release`). In a run of several
processes, process 0 alone takes it (it alone writes the run directory).

Reading a run (`eval`, `predict`, `verify`, `report`) takes no lock: every file a trainer writes
is replaced atomically or appended line by line, so a reader sees a consistent run, at worst one
checkpoint behind.

A forked child never holds the run: flock belongs to the open file description, which a fork
shares, so a forked DataLoader worker or pool process that outlived a trainer killed with -9 kept
the run locked and `--resume` was refused. After a fork the child closes its copy of the
descriptor (`os.register_at_fork`), which leaves the parent's lock as it was (only the last
descriptor's close, or an explicit unlock, would let it go) and unlinks nothing. An exec'd child
inherits nothing: os.open's descriptors are close-on-exec.

On a file system without flock support (some network mounts) the lock is skipped with a note.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
import weakref
from pathlib import Path

LOCK_NAME = ".sesemi.lock"
_HELD: "weakref.WeakValueDictionary[str, RunLock]" = weakref.WeakValueDictionary()


class RunInUseError(RuntimeError):
    """Another live process holds the run directory; the message names it."""


class RunLock:
    def __init__(self, folder: Path, fd: int | None, created_folder: bool):
        self.folder = folder
        self._fd = fd
        self._created_folder = created_folder

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file, then let go of the lock: a process that opened the old file in
        between finds it unlinked and tries again (see `acquire`)."""
        if self._fd is None:
            return
        try:
            (self.folder / LOCK_NAME).unlink(missing_ok=True)
        except OSError:  # a read-only folder after the fact: the kernel lock still goes below
            pass
        os.close(self._fd)
        self._fd = None
        if self._created_folder:  # a refused start leaves no directory behind
            try:
                self.folder.rmdir()
            except OSError:  # not empty: the run wrote something
                pass

    def forget_inherited(self) -> None:
        """In a forked child: close the child's copy of the descriptor and nothing else; the lock
        stays with the parent (never LOCK_UN here, which would release it for the parent too)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._created_folder = False

    def __del__(self):
        try:
            self.release()
        except Exception:  # at interpreter exit; the kernel releases the lock with the process anyway
            pass


def _forget_locks_in_forked_child() -> None:
    for lock in list(_HELD.values()):
        lock.forget_inherited()
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_locks_in_forked_child)


def holds(folder: str | Path) -> bool:
    """Whether this process holds `folder`'s lock."""
    lock = _HELD.get(os.path.realpath(folder))
    return lock is not None and lock.held


def acquire(folder: str | Path, command: str = "") -> RunLock:
    """Hold `folder`'s lock (creating the folder); RunInUseError if a live process holds it."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    existing = _HELD.get(key)
    if existing is not None and existing.held:
        return existing
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunInUseError(_in_use_message(folder, path)) from None
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                print(f"note: the file system of {folder} does not support locks: nothing stops a second "
                      "trainer from writing this run at the same time", file=sys.stderr)
                lock = RunLock(folder, None, False)
                return lock
            raise
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # released (and unlinked) by its holder between open and flock
            same_file = False
        if same_file:
            break
        os.close(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv),
              "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(record) + "\n").encode())
    lock = RunLock(folder, fd, created)
    _HELD[key] = lock
    return lock


def _in_use_message(folder: Path, path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        who = f"pid {holder['pid']} on {holder['host']}, since {holder['since']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder is still writing its record
        who = "another process"
    return (f"{folder} is in use by {who}; wait for it to end or stop it, or choose another --run-dir "
            f"(the lock goes with the process, so a process that died holds nothing)")
