"""`sesemi report RUN_DIR...` and `sesemi demo`."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import Config, apply_overrides
from .report import markdown_table, plot_runs

# Small enough that SESEMI and the baseline train in both frameworks in about 3 minutes on 2 cores.
DEMO_OVERRIDES = [
    "data.dataset=digits", "data.n_labels=50", "model.backbone=resnet20",
    "train.steps=100", "train.batch_labeled=32", "train.batch_unlabeled=8",
    "train.log_every=25", "train.eval_every=25", "train.checkpoint_every=100",
]
FRAMEWORKS = {"jax": "sesemi_jax.loop", "torch": "sesemi_torch.loop"}


def installed_frameworks() -> list[str]:
    return [name for name in FRAMEWORKS if importlib.util.find_spec(name) is not None]


def demo(out_dir: Path, overrides: Sequence[str] = ()) -> Path:
    frameworks = installed_frameworks()
    if not frameworks:
        raise SystemExit("error: neither jax nor torch is installed: pip install 'sesemi[jax]' or 'sesemi[torch]'")
    base = apply_overrides(Config(), [*DEMO_OVERRIDES, *overrides])
    run_dirs = []
    for framework in frameworks:
        fit = importlib.import_module(FRAMEWORKS[framework]).fit
        for method in ("sesemi", "supervised"):
            config = apply_overrides(base, [f"method.name={method}"])
            run_dir = out_dir / f"{framework}-{method}"
            if run_dir.exists():  # the demo's own output of an earlier demo
                shutil.rmtree(run_dir)
            print(f"== {framework}: {method} ({config.train.steps} steps, {config.data.n_labels} labels)", flush=True)
            started = time.perf_counter()
            summary = fit(config, run_dir)
            print(f"   test accuracy {100 * summary['final_test_accuracy']:.2f}% "
                  f"in {time.perf_counter() - started:.0f} s", flush=True)
            run_dirs.append(run_dir)
    print(markdown_table(run_dirs))
    png = plot_runs(run_dirs, out_dir / "report.png")
    print(f"curves: {png}")
    return png


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sesemi", description="compare runs; run the demo")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="curves of several runs in one PNG, and a Markdown table")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--out", default="report.png")
    demo_parser = commands.add_parser("demo", help="SESEMI against the supervised baseline on digits")
    demo_parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. train.steps=100")
    demo_parser.add_argument("--out-dir", default="runs/demo")
    args = parser.parse_args(argv)
    if args.command == "report":
        missing = [d for d in args.run_dirs if not (Path(d) / "summary.json").is_file()]
        if missing:
            print(f"error: {missing[0]} has no summary.json: pass finished run directories", file=sys.stderr)
            return 2
        print(markdown_table(args.run_dirs))
        print(f"curves: {plot_runs(args.run_dirs, args.out)}")
    else:
        started = time.perf_counter()
        demo(Path(args.out_dir), args.overrides)
        print(f"demo took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
