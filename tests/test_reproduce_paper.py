"""benchmarks/reproduce_paper.sh, dry-run on the CPU: a fixture archive of 60 16x16 images packed
as benchmarks/pack_cifar.py packs CIFAR-10, two steps of the paper preset with small batches, in
PyTorch only (a JAX run adds ~30 s of compilation on this CPU; the in-training evaluation with the
preset's eval.tta=8 runs in both frameworks in tests/loop_contract.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import reproduce_paper
from benchmarks.pack_cifar import pack

REPO = Path(__file__).resolve().parents[1]
SMALL = ["data.image_size=16", "train.batch_labeled=8", "train.batch_unlabeled=2", "train.eval_batch_size=64"]


def fixture_archive(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-cifar"
    for split, count in (("train", 4), ("test", 2)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for k in range(count):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    archive = tmp_path / "tiny.tar.gz"
    assert pack(root, archive) == 60
    return archive


def reproduce(tmp_path: Path, archive: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_INSTALL": "0", "WORK": str(tmp_path / "work"),
           "OUT": str(tmp_path / "out")}
    return subprocess.run(["bash", str(REPO / "benchmarks" / "reproduce_paper.sh"), "--archive", str(archive),
                           "--device", "cpu", *options], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_dry_run_writes_the_speed_lines_and_the_table(tmp_path):
    archive = fixture_archive(tmp_path)
    done = reproduce(tmp_path, archive, "--steps", "2", "--labels", "", "--torch-labels", "20", "--", *SMALL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    speed = [line for line in lines if line.startswith("images/s torch-20: ")]
    assert len(speed) == 1 and "(20 images per step, 2 steps) -> full schedule 156,250 steps = " in speed[0]
    header = "| labels | framework | steps (of 156,250) | epochs | eval views | test accuracy | paper | images/s "
    table = lines[lines.index(next(line for line in lines if line.startswith(header))):]
    row = table[2].split(" | ")
    assert row[:5] == ["| 20", "torch", "2", "0.00", "8"] and row[5].endswith("%") and row[6] == "-"
    assert (tmp_path / "out" / "results.md").read_text().splitlines() == table[:3]
    assert (tmp_path / "out" / "runs.tar.gz").stat().st_size > 0
    # Run again in the same WORK: the finished run is reported as it is, not trained again.
    again = reproduce(tmp_path, archive, "--steps", "2", "--labels", "", "--torch-labels", "20", "--", *SMALL)
    assert again.returncode == 0 and "is finished, reported as it is" in again.stdout
    assert table[2] in again.stdout.splitlines()


def test_a_wrong_budget_is_one_line(tmp_path):
    done = reproduce(tmp_path, tmp_path / "none.tar.gz", "--steps", "x")
    assert (done.returncode, done.stderr.strip()) == (
        2, "error: the budget must be a positive number of steps or epochs, got 'x'")


def test_the_table_sits_beside_the_papers_numbers():
    rows = [{"labels": labels, "framework": "jax", "steps": 3125, "tta": 8, "accuracy": 80.0,
             "images_per_s": 19200.0, "full_hours": 0.43} for labels in (4000, 1000)]
    lines = reproduce_paper.table(rows).splitlines()
    assert lines[2] == "| 1,000 | jax | 3,125 | 1.00 | 8 | 80.00% | 82.12% | 19200 | 0.43 h |"
    assert lines[3] == "| 4,000 | jax | 3,125 | 1.00 | 8 | 80.00% | 88.35% | 19200 | 0.43 h |"
    metrics = [{"step": 50, "images_per_s": 10.0}, {"step": 50, "test_accuracy": 0.1},
               {"step": 100, "images_per_s": 300.0}, {"step": 150, "images_per_s": 500.0}]
    assert reproduce_paper.steady_images_per_s(metrics) == 400.0  # the first window (compilation) left out
