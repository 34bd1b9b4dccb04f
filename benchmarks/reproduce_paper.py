"""The results of benchmarks/reproduce_paper.sh: one speed line per run, a table beside the paper's.

    python benchmarks/reproduce_paper.py speed RUN_DIR          # one line: images/s, full-schedule estimate
    python benchmarks/reproduce_paper.py table RUN_DIR... [--out results.md]

A run's speed is the median `images_per_s` of its metrics.jsonl records, leaving out the first
window (compilation, warm-up) when there are more; the full schedule's training time is
`FULL_STEPS` steps of the run's images per step at that speed (evaluations not included: each
adds one pass over the test set, 8 views per image with eval.tta=8, once per epoch). Test
accuracy is the run's last evaluation (summary.json); a run without one (still running, or
failed) shows as such.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sesemi_common.config import Config  # noqa: E402
from sesemi_common.methods import images_per_step  # noqa: E402
from sesemi_common.runs import RunDir  # noqa: E402

STEPS_PER_EPOCH = 3125  # 50,000 training images / 16 unlabeled per step, as in the paper preset
FULL_STEPS = Config.load("paper").train.steps  # 50 epochs
# Tran 2019 (arXiv 1906.10343), SESEMI on CIFAR-10 with the 13-layer ConvNet: 100 - the error rate.
PAPER_ACCURACY = {1000: 82.12, 2000: 85.78, 4000: 88.35}


def steady_images_per_s(metrics: list[dict]) -> float | None:
    speeds = [m["images_per_s"] for m in metrics if "images_per_s" in m]
    speeds = speeds[1:] or speeds
    return statistics.median(speeds) if speeds else None


def run_result(run_dir: Path) -> dict:
    run = RunDir(run_dir)
    config, summary, metrics = run.read_config(), run.read_summary(), run.read_metrics()
    speed = steady_images_per_s(metrics)
    per_step = images_per_step(config)
    trained = max((m["step"] for m in metrics if "images_per_s" in m), default=0)
    windows = sum("images_per_s" in m for m in metrics)
    return {"run": run.path.name, "framework": (summary or {}).get("framework", run.path.name.split("-")[0]),
            "labels": config.data.n_labels, "steps": config.train.steps, "trained": trained, "tta": config.eval.tta,
            "accuracy": None if not summary or summary.get("final_test_accuracy") is None
            else 100 * summary["final_test_accuracy"],
            "images_per_s": speed, "images_per_step": per_step, "steady": windows > 1,
            "full_hours": FULL_STEPS * per_step / speed / 3600 if speed else None,
            "device": (summary or {}).get("device", "")}


def speed_line(result: dict) -> str:
    if result["images_per_s"] is None:
        return f"images/s {result['run']}: no logged step yet"
    note = "" if result["steady"] else " (one window only: includes compilation)"
    return (f"images/s {result['run']}: {result['images_per_s']:.0f} images/s{note} "
            f"({result['images_per_step']} images per step, {result['trained']} steps) -> full schedule "
            f"{FULL_STEPS:,} steps = {result['full_hours']:.2f} h of training")


def _cell(value: float | None, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def table(results: list[dict]) -> str:
    lines = ["| labels | framework | steps (of 156,250) | epochs | eval views | test accuracy | paper | images/s "
             "| full schedule (est.) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["labels"], r["framework"])):
        paper = PAPER_ACCURACY.get(r["labels"])
        lines.append(
            f"| {r['labels']:,} | {r['framework']} | {r['steps']:,} | {r['steps'] / STEPS_PER_EPOCH:.2f} | "
            f"{r['tta']} | {_cell(r['accuracy'], '.2f', 'not finished')}{'%' if r['accuracy'] is not None else ''} | "
            f"{_cell(paper, '.2f')}{'%' if paper else ''} | {_cell(r['images_per_s'], '.0f')} | "
            f"{_cell(r['full_hours'], '.2f')}{' h' if r['full_hours'] else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("speed", "table"))
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    results = [run_result(run) for run in args.runs if (run / "config.json").is_file()]
    if args.what == "speed":
        print("\n".join(speed_line(r) for r in results))
        return 0
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
