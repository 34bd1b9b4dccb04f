"""Issue 30, for either framework: run directories two processes cannot corrupt, divergence that is
recoverable and never scored, file-system errors as one line (docs/runs.md)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sesemi_common import run_lock, run_weights
from sesemi_common.runs import RunDir
from sesemi_common.weights import read_npz_with_metadata, write_npz
from tests.cli_contract import TINY

REPO = Path(__file__).resolve().parents[1]
# A checkpoint at steps 2 and 4 of 4.
SHORT = [*TINY, "train.steps=4", "train.log_every=1", "train.checkpoint_every=2", "train.eval_every=4",
         "train.eval_batch_size=128", "optim.schedule=constant"]


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding `run_dir` as a trainer would, until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sesemi_common import run_lock; "
         "lock = run_lock.acquire(sys.argv[1], 'sesemi train (the first)'); print('held', flush=True); "
         "time.sleep(120)", str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


class RunSafetyContract:
    main = None
    framework = ""

    def invoke(self, capsys, *argv):
        code = self.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err.strip()

    def train(self, capsys, run_dir, *argv):
        return self.invoke(capsys, "train", *argv, "--run-dir", str(run_dir), "--no-progress")

    def test_1_a_second_trainer_is_refused_and_a_dead_holder_blocks_nothing(self, capsys, tmp_path):
        run_dir = tmp_path / "r"
        run_dir.mkdir()
        (run_dir / "config.json").write_text("{}")  # a start in progress: a second `train` would replace it
        (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".sesemi.lock"}
        holder = hold_lock(run_dir)
        try:
            for extra in ((), ("--resume",), ("--overwrite",)):
                code, out, err = self.train(capsys, run_dir, *SHORT, *extra)
                assert code == 2 and out == "" and len(err.splitlines()) == 1, err
                assert err.startswith(f"error: {run_dir} is in use by pid {holder.pid} on ")
                assert "sesemi train (the first)" in err and "wait for it to end or stop it" in err
            assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".sesemi.lock"} == before
        finally:
            holder.kill()
            holder.wait()
        # kill -9 released the lock with the process; its record stays behind and blocks nothing
        assert (run_dir / ".sesemi.lock").is_file()
        lock = run_lock.acquire(run_dir)
        assert lock.held and json.loads((run_dir / ".sesemi.lock").read_text())["pid"] == os.getpid()
        lock.release()
        assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.jsonl"]
