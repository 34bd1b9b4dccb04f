"""`sesemi compare` (sesemi_common/compare.py, compare_command.py): the gain of each method over the
baseline at every evaluation, the JAX-against-PyTorch verdict per cell, resuming a study.

The statistics are checked on run directories written by hand (known accuracies, no training);
one slow test trains a plug-in against the baseline on digits and runs the command again."""

import json
import math
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from sesemi_common import cli, compare, compare_command, plugins
from sesemi_common.runs import RunDir

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.image_size=16", "data.n_labels=20", "train.steps=4", "train.batch_labeled=8", "train.batch_unlabeled=2",
        "train.log_every=2", "train.eval_every=2", "train.checkpoint_every=2", "train.eval_batch_size=256"]
# Final test accuracy (%) of seeds 0, 1, 2; at step 2 SESEMI is 5 points and the baseline 10 below it.
FINAL = {("supervised", "jax"): [50, 52, 54], ("sesemi", "jax"): [55, 57, 59],
         ("supervised", "torch"): [51, 53, 55], ("sesemi", "torch"): [56, 58, 60]}
EARLIER = {"supervised": 10, "sesemi": 5}


def _arguments(out: Path, *extra: str) -> list[str]:
    return ["compare", "--methods", "sesemi", "--seeds", "3", "--frameworks", "jax,torch", "--out", str(out),
            *extra, *TINY]


def _write_runs(out: Path) -> None:
    """Finished runs with the accuracies of FINAL, as the study would have configured them."""
    args = Namespace(methods="sesemi", baseline="supervised", seeds=3, frameworks="jax,torch", config="",
                     out=str(out), overrides=TINY, progress=False)
    study = compare_command.build_study(args, ["jax", "torch"])
    for key in study.keys():
        run, final = RunDir(study.run_dir(key)), FINAL[key.method, key.framework][key.seed]
        run.path.mkdir(parents=True)
        run.write_config(study.config_for(key))
        run.append_metrics({"step": 2, "loss": 1.0, "images_per_s": 100.0,
                            "test_accuracy": (final - EARLIER[key.method]) / 100})
        run.append_metrics({"step": 4, "loss": 1.0, "images_per_s": 100.0, "test_accuracy": final / 100})
        run.write_summary({"final_test_accuracy": final / 100, "wall_time_s": 1.0, "device": "cpu"})


def test_gains_and_verdicts_of_finished_runs(tmp_path, capsys):
    _write_runs(tmp_path / "study")
    assert cli.main(_arguments(tmp_path / "study")) == 0
    printed = capsys.readouterr().out
    assert "labels20-sesemi-jax-seed2: finished earlier, skipped" in printed and ": trained" not in printed
    # Each cell's mean differs by 5 points from the baseline's, sd 2 over 3 seeds: se sqrt(4/3 + 4/3) = 1.63,
    # Welch's t 5 / 1.63 at 4 degrees of freedom: p 0.038 (10 points at step 2: 0.004; 1 point: 0.573).
    # Every seed pair differs by exactly 5 (10 at step 2): no spread, no paired p.
    assert "| 20 | sesemi | jax | +5.00 | 1.63 | 0.038 | - |" in printed
    assert "| 20 | sesemi | torch | 2 | +10.00 | 1.63 | 0.004 | - |" in printed  # at step 2
    assert "| 20 | sesemi | 57.00 | 58.00 | -1.00 | 3.27 | 3.27 | PASS | 0.573 |" in printed
    assert "PASS labels=20 method=sesemi: difference -1.00 points, threshold 3.27, Welch p 0.573" in printed
    result = json.loads((tmp_path / "study" / "results.json").read_text())
    assert result["baseline"] == "supervised" and not result["missing_runs"]
    assert [(g["method"], g["framework"], g["step"], round(g["gain"], 6)) for g in result["gain_curves"]] == [
        ("sesemi", "jax", 2, 10.0), ("sesemi", "jax", 4, 5.0), ("sesemi", "torch", 2, 10.0), ("sesemi", "torch", 4, 5.0)]
    assert all(row["passed"] for row in result["parity"]) and len(result["parity"]) == 2
    assert [(r["method"], r["step"], round(r["difference"], 6), r["passed"]) for r in result["parity_curves"]] == [
        ("supervised", 2, -1.0, True), ("supervised", 4, -1.0, True), ("sesemi", 2, -1.0, True),
        ("sesemi", 4, -1.0, True)]
    assert "| 20 | supervised | 2 | 42.00 | 43.00 | -1.00 | 3.27 | 3.27 | PASS | 0.573 |" in printed
    assert (tmp_path / "study" / "compare.png").stat().st_size > 0
    assert (tmp_path / "study" / "results.md").read_text().startswith("# Compare: sesemi against supervised")


def test_gains_pair_the_seeds():
    """compare.gain_rows and gain_curve_rows: the paired p-value matches seed to seed (the order
    of the results does not matter) and leaves out a seed only one of the two finished."""
    ours, base = [60.0, 50.0, 70.0], [58.0, 47.0, 69.0]  # differences 2, 3, 1 by seed
    results = [{"labels": 20, "method": m, "framework": "jax", "seed": s, "final_accuracy": a, "curve": {100: a}}
               for m, accs in (("sesemi", ours), ("supervised", base)) for s, a in enumerate(accs)]
    results.reverse()
    results.append({"labels": 20, "method": "sesemi", "framework": "jax", "seed": 3, "final_accuracy": 99.0,
                    "curve": {100: 99.0}})  # its baseline run is missing: left out of the pairs
    study = Namespace(frameworks=("jax",), labels=(20,), methods=("sesemi", "supervised"), baseline="supervised")
    report_cells = compare.cell_stats([r for r in results if r["seed"] < 3], study)
    (final,) = compare.gain_rows(results, report_cells, study)
    (at_100,) = compare.gain_curve_rows([r for r in results if r["seed"] < 3], study)
    t = 2 * math.sqrt(3)  # paired: mean 2, sd 1 over 3 pairs; p = 1 - t / sqrt(t^2 + 2) at 2 dof
    assert final["paired_p_value"] == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-9)
    assert at_100["paired_p_value"] == final["paired_p_value"]
    assert final["gain"] == pytest.approx(2.0) and final["p_value"] > 0.8  # unpaired, the seeds' spread hides it
    assert [compare._p(p) for p in (None, 0.0004, 0.0742)] == ["-", "<0.001", "0.074"]


def test_parity_at_every_evaluation_judges_each_step_both_frameworks_share():
    """compare.parity_curve_rows: a step where the frameworks part ways fails even when the final
    one passes, and a step one run lacks is not judged."""
    jax_curves = [{100: 50 + 2 * s, 200: 60 + 2 * s, 300: 70 + 2 * s} for s in range(3)]
    torch_curves = [{100: 51 + 2 * s, 200: 70 + 2 * s, 300: 70 + 2 * s} for s in range(3)]
    del torch_curves[2][300]
    results = [{"labels": 20, "method": "sesemi", "framework": f, "seed": s, "curve": c}
               for f, curves in (("jax", jax_curves), ("torch", torch_curves)) for s, c in enumerate(curves)]
    study = Namespace(frameworks=("jax", "torch"), labels=(20,), methods=("sesemi",))
    rows = compare.parity_curve_rows(results, study)
    # sd 2 over 3 seeds in both: 2 standard errors of the difference 2 * sqrt(4/3 + 4/3) = 3.27
    assert [(r["step"], round(r["difference"], 6), round(r["threshold"], 2), r["passed"]) for r in rows] == [
        (100, -1.0, 3.27, True), (200, -10.0, 3.27, False)]
    assert rows[1]["jax"]["mean"] == 62 and rows[1]["torch"]["mean"] == 72


def test_a_stack_is_compared_like_any_method(tmp_path):
    args = Namespace(methods="sesemi,sesemi+entmin", baseline="supervised", seeds=1, frameworks="torch", config="",
                     out=str(tmp_path), overrides=TINY, progress=False)
    study = compare_command.build_study(args, ["torch"])
    stacked = [key for key in study.keys() if key.method == "sesemi+entmin"]
    assert len(stacked) == 1 and study.config_for(stacked[0]).method.name == "sesemi+entmin"


def test_a_run_of_another_config_is_refused_before_training(tmp_path, capsys):
    _write_runs(tmp_path / "study")
    assert cli.main(_arguments(tmp_path / "study", "optim.lr=0.1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "was trained with another config (optim.lr differs)" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["method.name=fixmatch"], "sesemi compare sets method.name itself; use --methods and --baseline"),
    (["--baseline", "supervise"], "--baseline: unknown 'supervise': choose from supervised, sesemi"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--methods", "sesemi+rotation"], "--methods: method 'sesemi+rotation': parts 'sesemi' and 'rotation' both "
                                       "declare the head 'self'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    assert cli.main(_arguments(tmp_path / "study", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "study" / "runs").exists()


@pytest.mark.slow
def test_a_plug_in_against_the_baseline_trains_then_resumes_with_nothing_to_train(tmp_path):
    env = {**os.environ, plugins.ENVIRONMENT_VARIABLE: "examples.flip_proxy"}
    command = [sys.executable, "-m", "sesemi_common.cli", "compare", "--methods", "flip_proxy", "--seeds", "2",
               "--frameworks", "torch", "--out", str(tmp_path), *TINY]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count(": trained;") == 4
    assert "## Gain over the baseline (supervised), points" in first.stdout
    assert "| 20 | flip_proxy | torch | 2 |" in first.stdout and "| 20 | flip_proxy | torch | 4 |" in first.stdout
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished earlier, skipped") == 4 and ": trained;" not in second.stdout
    gains = [line for line in first.stdout.splitlines() if line.startswith("| 20 | flip_proxy | torch |")]
    assert gains == [line for line in second.stdout.splitlines() if line.startswith("| 20 | flip_proxy | torch |")]
