"""The run-directory lock (sesemi_common/run_lock.py, issue 30)."""

import json
import os
import subprocess
import sys

import pytest

from sesemi_common import run_lock
from sesemi_common.config import Config
from sesemi_common.experiment import prepare
from sesemi_common.datasets import DatasetError


def test_a_record_left_by_a_dead_holder_or_a_reused_pid_blocks_nothing(tmp_path):
    # What a holder killed before a reboot leaves: its record, naming a pid that may be anyone's now
    # (here: this very process's). No process holds the kernel lock, so the folder is free.
    (tmp_path / run_lock.LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": "x", "since": "then",
                                                            "command": "old"}))
    lock = run_lock.acquire(tmp_path, "new")
    assert lock.held and json.loads((tmp_path / run_lock.LOCK_NAME).read_text())["command"] == "new"
    assert run_lock.acquire(tmp_path) is lock  # re-entrant within a process
    lock.release()
    assert list(tmp_path.iterdir()) == [] and not run_lock.holds(tmp_path)


def test_another_process_is_refused_while_this_one_holds_the_folder(tmp_path):
    lock = run_lock.acquire(tmp_path / "r", "sesemi-jax train")
    probe = ("import sys; from sesemi_common import run_lock\n"
             "try:\n    run_lock.acquire(sys.argv[1])\nexcept run_lock.RunInUseError as err:\n    print(err)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "r")], capture_output=True, text=True,
                         cwd=os.getcwd()).stdout.strip()
    assert out.startswith(f"{tmp_path / 'r'} is in use by pid {os.getpid()} on ") and "sesemi-jax train" in out
    lock.release()
    assert not (tmp_path / "r").exists()  # the folder the lock created goes with it when nothing was written


def test_a_start_refused_inside_prepare_lets_the_lock_go(tmp_path):
    config = Config.from_dict({"data": {"dataset": "imagefolder", "root": str(tmp_path / "none")}})
    with pytest.raises(DatasetError):  # refused after prepare took the lock
        prepare(config, tmp_path / "r")
    assert not run_lock.holds(tmp_path / "r") and not (tmp_path / "r").exists()


def test_a_forked_child_that_outlives_its_killed_parent_holds_nothing(tmp_path):
    # The trainer (the script) holds the run, forks a child that lives on, then dies by kill -9.
    # Before register_at_fork the child's shared descriptor kept the flock and a resume was refused.
    script = ("import os, signal, sys, time; from sesemi_common import run_lock\n"
              "lock = run_lock.acquire(sys.argv[1], 'trainer')\n"
              "child = os.fork()\n"
              "if child == 0:\n"
              "    held = run_lock.holds(sys.argv[1])\n"
              "    os.closerange(0, 3)  # let the test's pipes end with the parent\n"
              "    time.sleep(0 if held else 60); os._exit(0)\n"
              "print(child, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    trainer = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r")], capture_output=True, text=True,
                             cwd=os.getcwd(), timeout=60)
    assert trainer.returncode == -9, trainer.stderr
    child = int(trainer.stdout)
    try:
        os.kill(child, 0)  # the child still lives (it would have exited at once had it thought it held the run)
        lock = run_lock.acquire(tmp_path / "r", "resume")
        assert lock.held
        lock.release()
    finally:
        try:
            os.kill(child, 9)
        except ProcessLookupError:
            pass


def test_a_forked_child_leaves_its_parents_lock_in_place(tmp_path):
    lock = run_lock.acquire(tmp_path / "r", "parent")
    pid = os.fork()
    if pid == 0:  # the child: it forgets the lock, and its exit must not unlink or release anything
        os._exit(0 if not run_lock.holds(tmp_path / "r") else 1)
    assert os.waitpid(pid, 0)[1] == 0
    probe = ("import sys; from sesemi_common import run_lock\n"
             "try:\n    run_lock.acquire(sys.argv[1])\nexcept run_lock.RunInUseError:\n    print('refused')")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "r")], capture_output=True, text=True,
                         cwd=os.getcwd()).stdout.strip()
    assert out == "refused" and (tmp_path / "r" / run_lock.LOCK_NAME).exists()
    lock.release()
