"""Training in 2 processes (torchrun, gloo on 127.0.0.1) against 1 (docs/DESIGN.md section 8).

The 2-process runs go through tests/torch/ddp_train.py: the real CLI in float64, where the
summation order that differs between 1 and 2 processes (gradients averaged over two chunks,
BatchNorm statistics summed from two) moves results by ~1e-16 per operation instead of float32's
~1e-7, which would hide a real difference. Measured after 3 steps of this config, in two runs:
3e-14 and 1.6e-13 of each tensor's largest magnitude (params, running statistics, EMA; 2e-13
and 1.2e-12 after 6 steps), losses within 2e-15. The bound, 1e-10 of the largest magnitude,
leaves 600x headroom and is still 1e6 below float32 rounding; it is taken per tensor rather than
per element because `p - lr * u` that cancels to ~0 keeps the absolute error of |p| (up to
2.7e-10 elementwise measured).

The config turns on everything that couples the samples of a batch or draws random numbers in
the step: SESEMI's two backbone calls, an EMA, dropout and input noise (drawn for the global
batch and sliced, so exactly the 1-process draws).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_common.distributed import Process, local_slice
from sesemi_torch import loop
from sesemi_torch.distributed import check_divisible
from tests.kill_resume import TINY, comparable_metrics

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = [*TINY, "train.steps=6", "train.log_every=1", "train.eval_every=6", "train.checkpoint_every=3",
             "train.ema_decay=0.9", "model.dropout=0.3", "augment.noise_std=0.1"]
BOUND = 1e-10


def torchrun(run_dir: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`torchrun --standalone` (rendezvous on a free port) of 2 processes of the float64 CLI."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "tests.torch.ddp_train", "train", *OVERRIDES, "--run-dir", str(run_dir), "--no-progress", *extra]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def saved(run_dir: Path, step: int) -> dict:
    return torch.load(run_dir / "checkpoints" / f"step_{step}.pt", weights_only=False)


def files(run_dir: Path) -> list[str]:
    """The run's files; a TensorBoard event file by its kind only (its name holds the time, host and pid)."""
    return sorted("events.out.tfevents.*" if p.name.startswith("events.out.tfevents.") else str(p.relative_to(run_dir))
                  for p in run_dir.rglob("*"))


def largest_difference(a: dict, b: dict) -> float:
    """max over tensors of max|a - b| / max|a|; integer tensors (batch counts) must be equal."""
    assert a.keys() == b.keys()
    worst = 0.0
    for key in a:
        if not a[key].is_floating_point():
            assert torch.equal(a[key], b[key]), key
            continue
        worst = max(worst, float((a[key] - b[key]).abs().max() / a[key].abs().max().clamp(min=1e-300)))
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run in 1 process (this interpreter) and in 2 (torchrun), side by side."""
    root = tmp_path_factory.mktemp("ddp")
    two = torchrun(root / "two")
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loop.fit(apply_overrides(Config(), OVERRIDES), root / "one", show_progress=False)
    finally:
        torch.set_default_dtype(dtype)
    done = finished(two)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_two_processes_take_the_steps_of_one(runs):
    one, two = saved(runs / "one", 3), saved(runs / "two", 3)
    assert one["model"]["backbone.bn1.running_var"].dtype == torch.float64
    assert largest_difference(one["model"], two["model"]) < BOUND  # params and BatchNorm running statistics
    assert largest_difference(one["ema"], two["ema"]) < BOUND
    metrics_one, metrics_two = comparable_metrics(runs / "one"), comparable_metrics(runs / "two")
    assert [m["step"] for m in metrics_two] == [m["step"] for m in metrics_one]  # process 0 alone wrote them
    for a, b in zip(metrics_one[:3], metrics_two[:3]):
        assert b["loss"] == pytest.approx(a["loss"], rel=BOUND) and b["lr"] == a["lr"]


def test_only_process_0_writes_and_its_files_are_a_one_process_run(runs):
    assert files(runs / "two") == files(runs / "one")
    one, two = saved(runs / "one", 6), saved(runs / "two", 6)
    assert one.keys() == two.keys() and one["model"].keys() == two["model"].keys()  # no DDP `module.` prefix
    assert json.loads((runs / "two" / "summary.json").read_text())["steps"] == 6


def test_a_process_that_dies_stops_the_others_and_the_run_resumes_exactly(runs, tmp_path):
    run_dir = tmp_path / "killed"
    died = finished(torchrun(run_dir, env={"SESEMI_TEST_DIE": "1:4"}))  # process 1 dies as it starts step 5
    ended = time.time()
    death = float(re.search(r"dying at ([0-9.]+)", died.stderr).group(1))
    assert died.returncode != 0
    assert ended - death < 60, f"the launcher ended {ended - death:.0f} s after a process died"
    assert ("error: process 0 lost contact with another training process" in died.stderr
            or "exitcode: -9" in died.stderr), died.stderr[-3000:]  # the survivor's line, else torchrun's
    assert [m["step"] for m in comparable_metrics(run_dir)] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_3.pt"]

    resumed = finished(torchrun(run_dir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert comparable_metrics(run_dir) == comparable_metrics(runs / "two")  # step 4 was truncated and redone
    final, uninterrupted = saved(run_dir, 6), saved(runs / "two", 6)
    for part in ("model", "ema"):  # bit for bit
        assert all(torch.equal(final[part][k], uninterrupted[part][k]) for k in final[part]), part
    momenta = [[v["momentum_buffer"] for v in s["optimizer"]["state"].values()] for s in (final, uninterrupted)]
    assert all(torch.equal(a, b) for a, b in zip(*momenta))


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    assert [local_slice(8, Process(i, 2)) for i in range(2)] == [slice(0, 4), slice(4, 8)]
    config = apply_overrides(Config(), [*TINY, "train.batch_unlabeled=3"])
    check_divisible(config, Process(0, 1))
    with pytest.raises(ConfigError, match=r"^train.batch_unlabeled \(3\) must be divisible by the 2 processes the "
                                          r"batch is split over$"):
        check_divisible(config, Process(1, 2))


@pytest.mark.slow
def test_a_method_state_is_the_global_batch_s_in_every_process(tmp_path):
    """FreeMatch's running statistics (momentum 0: the step's own batch, so a state computed from
    one process's chunk would be far off) are all-reduced: 2 processes hold the 1-process state.
    The state is float32 (its dtype is kept), so the float64 sums, ~1e-16 apart, may round to
    neighbouring float32 values: one float32 ulp (6e-8) of relative difference is the bound."""
    extra = ["method.name=freematch", "method.freematch.ema=0"]
    two = torchrun(tmp_path / "two", *extra)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loop.fit(apply_overrides(Config(), [*OVERRIDES, *extra]), tmp_path / "one", show_progress=False)
    finally:
        torch.set_default_dtype(dtype)
    done = finished(two)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = saved(tmp_path / "one", 3)["method_state"], saved(tmp_path / "two", 3)["method_state"]
    assert set(one) == {"time_p", "p_model", "label_hist"} and one["time_p"].dtype == torch.float32
    assert largest_difference(one, two) <= 1.2e-7
    thresholds = [(a["threshold"], b["threshold"]) for a, b in
                  zip(comparable_metrics(tmp_path / "one"), comparable_metrics(tmp_path / "two")) if "threshold" in a]
    assert len(thresholds) == 6 and all(b == pytest.approx(a, rel=1.2e-7) for a, b in thresholds)
