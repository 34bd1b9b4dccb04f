"""The one way tests run a training subprocess (`run_training`, `train_command`), shared by the JAX
and PyTorch resume tests: kill a training process with SIGKILL mid-run, resume it, and compare
with an uninterrupted run; and a process that holds a run directory's lock (`hold_lock`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TINY = ["data.dataset=digits", "data.image_size=16", "data.n_labels=20", "model.backbone=resnet8", "train.steps=24",
        "train.batch_labeled=8", "train.batch_unlabeled=2", "train.log_every=4", "train.eval_every=12",
        "train.checkpoint_every=8", "train.eval_batch_size=128"]


REPO = Path(__file__).resolve().parents[1]
# A cold compile of the first run alone took over 300 s at load average 15 on the 2-core machine
# (both variants of the mean_teacher resume test timed out there, with and without the shared cache).
TIMEOUT_S = 600


def train_command(cli_module: str, run_dir: Path, *extra: str, tiny: bool = True) -> list[str]:
    """`python -m cli_module train` into `run_dir`: the TINY run with `extra` overrides, or with
    `tiny=False` only what `extra` says (e.g. `--config FILE` and its own overrides)."""
    return [sys.executable, "-m", cli_module, "train", *(TINY if tiny else ()), "--run-dir", str(run_dir),
            "--no-progress", *extra]


def run_training(cli_module: str, run_dir: Path, *extra: str, tiny: bool = True, timeout: float = TIMEOUT_S,
                 env: dict | None = None) -> None:
    """One training subprocess to its end; a failure raises with the end of its stderr."""
    done = subprocess.run(train_command(cli_module, run_dir, *extra, tiny=tiny), env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    assert done.returncode == 0, f"training exited {done.returncode}: {done.stderr[-3000:]}"


def _logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return max((json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()), default=0)


def run_killed_then_resumed(cli_module: str, run_dir: Path, kill_after_step: int, timeout: float = TIMEOUT_S,
                            overrides: tuple[str, ...] = ()) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(train_command(cli_module, run_dir, *overrides), env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while _logged_steps(run_dir) < kill_after_step:
        if process.poll() is not None:
            raise AssertionError(f"training ended before the kill: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("training did not reach the kill step in time")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _logged_steps(run_dir) < 24, "the run finished before it was killed"
    run_training(cli_module, run_dir, "--resume", env=env, timeout=timeout)


def run_uninterrupted(cli_module: str, run_dir: Path, timeout: float = TIMEOUT_S,
                      overrides: tuple[str, ...] = ()) -> None:
    run_training(cli_module, run_dir, *overrides, timeout=timeout)


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding `run_dir` as a trainer would, until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sesemi_common import run_lock; "
         "lock = run_lock.acquire(sys.argv[1], 'sesemi train (the first)'); print('held', flush=True); "
         "time.sleep(120)", str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def comparable_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock speed, which no two runs share."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]


def jsonl_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of metrics.jsonl as the event files should hold them (float32)."""
    import numpy as np
    from sesemi_common.logging_sinks import scalar_values
    tags: dict[str, list[tuple[int, float]]] = {}
    for record in (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()):
        for tag, value in scalar_values(record).items():
            tags.setdefault(tag, []).append((record["step"], float(np.float32(value))))
    return tags


def event_accumulator(run_dir: Path):
    """TensorBoard's own reader over every event file of the run directory, everything kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0}).Reload()


def event_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} as TensorBoard shows them (a resumed run's purge applied)."""
    events = event_accumulator(run_dir)
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
