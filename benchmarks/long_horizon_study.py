"""False alarms and planted bugs of the long-horizon rung (issue 12, parity_tests/test_long_horizon.py).

    python benchmarks/long_horizon_study.py [--runs 24] [--steps 30] [--out runs/long_horizon]

Part 1, false alarms: the float64 lockstep check (JAX against PyTorch, bounded by MARGIN times
the growth of a one-ulp PyTorch perturbation, floored at FLOOR) on `--runs` problems that differ
in init seed, data seed, stream seed and perturbation direction (ulp up, down, or a random
third of entries up, a third down). Prints per run the largest ratio gap/bound and PASS/FAIL.

Part 2, planted bugs, each a separate run that must FAIL: the JAX lr schedule one step ahead,
flax BatchNorm momentum 0.8 instead of 0.9, the running variance without n/(n-1) (float64
lockstep), the same two on the PyTorch side (what the default suite plants), and the sampler
drifts (HostStream one position off, the JAX walk not crossing epoch boundaries) against the
sampler check.

Writes OUT/results.json and OUT/results.md. Exit status 0 when every clean run passes and every
plant fails, 1 otherwise. Run on purpose, not in CI (about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import with_provenance  # noqa: E402
from parity_tests import long_horizon as lh  # noqa: E402

DIRECTIONS = ("up", "down", "random")


def run_variants(count: int) -> list[dict]:
    return [{"init_seed": i // len(DIRECTIONS), "data_seed": i, "stream_seed": 100 + i,
             "direction": DIRECTIONS[i % len(DIRECTIONS)]} for i in range(count)]


def references(problem, direction: str, seed: int):
    with lh.torch_threads(1):
        return lh.torch_trajectory(problem), lh.torch_trajectory(problem, lh.nudged(problem.initial, direction, seed))


def summary(verdicts: list[lh.StepVerdict]) -> dict:
    worst = lh.worst(verdicts)
    first_fail = next((v.step for v in verdicts if v.ratio > 1.0), None)
    return {"worst_ratio": worst.ratio, "worst_step": worst.step, "worst_key": worst.key, "gap": worst.gap,
            "noise": worst.noise, "final_gap": verdicts[-1].gap, "final_noise": verdicts[-1].noise,
            "first_failing_step": first_fail, "verdict": "PASS" if worst.ratio <= 1.0 else "FAIL"}


def false_alarm_runs(args) -> list[dict]:
    rows = []
    print(f"{'run':>3}  {'init':>4} {'data':>4} {'stream':>6} {'ulp':>6}  {'worst gap/bound':>15}  "
          f"{'at step':>7}  {'final gap':>9}  {'final noise':>11}  verdict  seconds")
    for number, variant in enumerate(run_variants(args.runs)):
        started = time.perf_counter()
        problem = lh.make_problem(variant["init_seed"], variant["data_seed"], variant["stream_seed"], args.steps)
        reference, nudged = references(problem, variant["direction"], number)
        row = {**variant, **summary(lh.compare(lh.jax_trajectory(problem), reference, nudged)),
               "seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"{number:3d}  {row['init_seed']:4d} {row['data_seed']:4d} {row['stream_seed']:6d} "
              f"{row['direction']:>6}  {row['worst_ratio']:15.3e}  {row['worst_step']:7d}  {row['final_gap']:9.2e}  "
              f"{row['final_noise']:11.2e}  {row['verdict']:>7}  {row['seconds']:7.1f}", flush=True)
    return rows


def lockstep_plants(problem, reference, nudged) -> list[tuple[str, list[lh.StepVerdict]]]:
    results = []
    for name, plant in [("JAX lr schedule one step ahead", lh.plant_jax_schedule_one_step_ahead),
                        ("flax BatchNorm momentum 0.8 (not 0.9)", lh.plant_jax_bn_momentum),
                        ("JAX running variance without n/(n-1)", lh.plant_jax_biased_running_var)]:
        with plant():
            results.append((name, lh.compare(lh.jax_trajectory(problem), reference, nudged)))
    for name, hook in [("PyTorch lr schedule one step ahead (default suite)", lh.plant_torch_schedule_one_step_ahead),
                       ("PyTorch BatchNorm momentum 0.2 = flax 0.8 (default suite)", lh.plant_torch_bn_momentum)]:
        with lh.torch_threads(1):
            planted = lh.torch_trajectory(problem, before_training=hook)
        results.append((name, lh.compare(planted, reference, nudged)))
    return results


def planted_bug_runs(args) -> list[dict]:
    problem = lh.make_problem(steps=args.steps)
    reference, nudged = references(problem, "up", 0)
    rows = []
    print(f"\n{'planted bug':58}  {'worst gap/bound':>15}  {'first failing step':>18}  verdict (must FAIL)")
    for name, verdicts in lockstep_plants(problem, reference, nudged):
        rows.append({"plant": name, "check": "float64 lockstep", **summary(verdicts)})
    for name, plant, sampler in [("HostStream one position off", lh.plant_host_stream_off_by_one, lh.host_sampler),
                                 ("JAX walk does not cross epoch boundaries", lh.plant_jax_sampler_no_epoch_crossing,
                                  lh.jax_sampler)]:
        with plant():
            errors = lh.sampler_errors(sampler(problem), problem, args.steps)
        rows.append({"plant": name, "check": "sampler epochs", "errors": errors,
                     "verdict": "FAIL" if errors else "PASS"})
    for row in rows:
        ratio = f"{row['worst_ratio']:15.3e}" if "worst_ratio" in row else f"{len(row['errors']):6d} errors  "
        step = "" if row.get("first_failing_step") is None else row["first_failing_step"]
        print(f"{row['plant']:58}  {ratio:>15}  {step!s:>18}  {row['verdict']}", flush=True)
    return rows


def markdown(clean: list[dict], plants: list[dict], args, seconds: float) -> str:
    worst = max(clean, key=lambda r: r["worst_ratio"])
    lines = [f"Long-horizon rung: {len(clean)} clean runs and {len(plants)} planted bugs, {args.steps} float64 steps, "
             f"bound = {lh.MARGIN:g} x max(one-ulp growth, {lh.FLOOR:g}); {seconds / 60:.1f} min on "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}).", "",
             "| runs | passed | largest gap/bound | at | smallest gap/bound of a lockstep plant |", "|---|---|---|---|---|"]
    lockstep = [p for p in plants if "worst_ratio" in p]
    lines.append(f"| {len(clean)} | {sum(r['verdict'] == 'PASS' for r in clean)} | {worst['worst_ratio']:.2e} | "
                 f"init {worst['init_seed']}, data {worst['data_seed']}, ulp {worst['direction']}, step "
                 f"{worst['worst_step']} | {min(p['worst_ratio'] for p in lockstep):.2e} |")
    lines += ["", "| planted bug | check | gap/bound | first failing step | verdict |", "|---|---|---|---|---|"]
    for p in plants:
        ratio = f"{p['worst_ratio']:.2e}" if "worst_ratio" in p else f"{len(p['errors'])} errors"
        step = "" if p.get("first_failing_step") is None else p["first_failing_step"]
        lines.append(f"| {p['plant']} | {p['check']} | {ratio} | {step} | {p['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=24, help="clean runs (false-alarm estimate)")
    parser.add_argument("--steps", type=int, default=lh.STEPS, help="lockstep horizon")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "long_horizon")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    clean = false_alarm_runs(args)
    plants = planted_bug_runs(args)
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    report = with_provenance(markdown(clean, plants, args, seconds))
    (args.out / "results.md").write_text(report)
    (args.out / "results.json").write_text(json.dumps({"margin": lh.MARGIN, "floor": lh.FLOOR, "steps": args.steps,
                                                       "clean": clean, "plants": plants, "seconds": seconds}, indent=1))
    print("\n" + report + f"loadavg at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    ok = all(r["verdict"] == "PASS" for r in clean) and all(p["verdict"] == "FAIL" for p in plants)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
