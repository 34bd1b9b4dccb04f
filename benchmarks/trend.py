"""Trend parity, independent streams (issue 5): whole runs on real CIFAR-10 in each framework.

    python benchmarks/trend.py --steps 2000 [--seeds 3] [--labels 1000,4000] [--config paper]
        [--backbone resnet20]
        [--batch-labeled 96] [--batch-unlabeled 16] [--frameworks jax,torch]
        [--methods sesemi,supervised] [--eval-every N] [--out runs/trend] [--report-only]
        [section.key=value ...]

Each framework trains with its own random streams (`train.seed=s` and the trainer's own
sampling), for every seed, method (SESEMI; the supervised baseline, `method.name=supervised`
with no unlabeled batch) and label count. One config serves both frameworks: the
`section.key=value` extras apply to every run and nothing is tuned per framework
(`--channels-last` is a memory format, not a config value). `--config` starts every run from a
preset (`paper`) or a config file instead of the defaults; the study's own keys still apply. Runs go one after the other,
never two at once, each into `OUT/runs/<labels>-<method>-<framework>-seed<s>/`; a run whose
summary.json exists is skipped and one that stopped midway resumes from its checkpoint, so a
study can be resumed or extended (a run directory trained with another config is an error).

Writes OUT/trend.png (one panel per label count: mean test-accuracy curve over seeds per
framework x method, band +-1 std), OUT/results.md and OUT/results.json, and prints PASS/FAIL
per (label count, method): the two frameworks' mean final accuracies must differ by less
than max(1 point, 2 standard errors of the difference), see sesemi_common/trend_stats.py.
A run that raises is reported and the study goes on. Exit status: 0 every verdict passes,
1 a parity cell fails, 2 a run failed. Run on purpose, not in CI.

On a 2-core machine that other processes share, torch's 2 intra-op threads wait for each
other at every op: there `--torch-threads 1` measured 3x faster (see the issue's timings).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import provenance, with_provenance  # noqa: E402
from sesemi_common.config import Config, ConfigError, apply_overrides  # noqa: E402
from sesemi_common.datasets import load_dataset  # noqa: E402
from sesemi_common.methods import images_per_step, method_names  # noqa: E402
from sesemi_common.runs import RunDir  # noqa: E402
from sesemi_common.trend_stats import MeanStd, mean_curve, mean_std, parity_verdict, difference  # noqa: E402

CIFAR10_JPEG = REPO.parent / "shared" / "data" / "cifar10-jpeg"
FRAMEWORKS = ("jax", "torch")
METHODS = ("sesemi", "supervised")
FLOOR_POINTS, K_STANDARD_ERRORS = 1.0, 2.0
# Keys the study itself sets per run; an extra override of one would collapse the grid.
STUDY_KEYS = {"data.dataset": "--data-root", "data.root": "--data-root", "data.n_labels": "--labels",
              "model.backbone": "--backbone", "method.name": "--methods", "train.steps": "--steps",
              "train.batch_labeled": "--batch-labeled", "train.batch_unlabeled": "--batch-unlabeled",
              "train.seed": "--seeds", "train.eval_every": "--eval-every", "train.checkpoint_every": "--checkpoint-every",
              "train.log_every": "--log-every"}


@dataclass(frozen=True)
class RunKey:
    labels: int
    method: str
    framework: str
    seed: int

    @property
    def name(self) -> str:
        return f"labels{self.labels}-{self.method}-{self.framework}-seed{self.seed}"


def run_config(args, key: RunKey) -> Config:
    """The one config of a run; only the method, label count and seed vary, never the framework."""
    base = base_config(args)
    batch_labeled = args.batch_labeled or base.train.batch_labeled
    batch_unlabeled = 0 if key.method == "supervised" else (args.batch_unlabeled or base.train.batch_unlabeled)
    return apply_overrides(base, [
        "data.dataset=imagefolder", f"data.root={args.data_root}", f"data.n_labels={key.labels}",
        f"model.backbone={args.backbone or base.model.backbone}", f"method.name={key.method}",
        f"train.steps={args.steps}", f"train.batch_labeled={batch_labeled}",
        f"train.batch_unlabeled={batch_unlabeled}", f"train.seed={key.seed}",
        f"train.log_every={args.log_every or min(25, args.steps)}",
        f"train.eval_every={args.eval_every or args.steps}",
        f"train.checkpoint_every={args.checkpoint_every or args.eval_every or args.steps}",
        *args.overrides])


def base_config(args) -> Config:
    """The defaults, or the preset / config file `--config` names."""
    return Config.load(args.config) if args.config else Config()


def run_keys(args) -> list[RunKey]:
    # Seeds outermost: a study stopped early still holds whole seeds of every cell.
    return [RunKey(labels, method, framework, seed) for seed in range(args.seeds) for labels in args.labels
            for method in args.methods for framework in args.frameworks]


# ---------------------------------------------------------------- training


def framework_module(framework: str, name: str):
    return importlib.import_module(f"sesemi_{framework}.{name}")


def fit_options(framework: str, args) -> dict:
    if framework == "jax":
        return {}
    return {"channels_last": args.channels_last, "device": args.torch_device}


def train_or_skip(key: RunKey, config: Config, run_dir: Path, dataset, args) -> str:
    """Train one run unless it is finished; resume one that stopped after a checkpoint."""
    run = RunDir(run_dir)
    resume = False
    if run.has_run():
        saved = run.read_config()
        if saved.to_dict() != config.to_dict():
            changed = sorted(k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v)
            raise SystemExit(f"error: {run_dir} was trained with another config (section(s) {', '.join(changed)} "
                             "differ): pass another --out, or the settings of that study")
        if run.read_summary():
            return "finished earlier, skipped"
        resume = framework_module(key.framework, "checkpoints").latest_step(run.checkpoints) is not None
        if not resume:  # stopped before its first checkpoint: nothing worth keeping
            shutil.rmtree(run_dir)
    fit = framework_module(key.framework, "loop").fit
    fit(config, run_dir, resume=resume, dataset=dataset, show_progress=args.progress,
        **fit_options(key.framework, args))
    return "resumed" if resume else "trained"


def train_all(args, keys: list[RunKey]) -> list[str]:
    """Train every run in turn; a run that fails is reported and the study goes on. Returns the failed names."""
    if "torch" in args.frameworks:
        import torch
        torch.set_num_threads(args.torch_threads)
    dataset = load_dataset(run_config(args, keys[0]).data)  # the data config is the same for every run
    failed = []
    for number, key in enumerate(keys, start=1):
        run_dir = args.out / "runs" / key.name
        started = time.perf_counter()
        try:
            outcome = train_or_skip(key, run_config(args, key), run_dir, dataset, args)
        except Exception as err:  # one broken run must not cost the rest of an unattended study
            traceback.print_exc()
            print(f"[{number}/{len(keys)}] {key.name}: FAILED ({type(err).__name__}: {err})", flush=True)
            failed.append(key.name)
            continue
        result = run_result(key, run_dir)
        print(f"[{number}/{len(keys)}] {key.name}: {outcome}; test accuracy {result['final_accuracy']:.2f}%, "
              f"{result['ms_per_step']:.0f} ms/step, run {result['wall_time_s']:.0f} s "
              f"(this call {time.perf_counter() - started:.0f} s)", flush=True)
    return failed


# ---------------------------------------------------------------- results


def step_time_ms(metrics: list[dict], images: int) -> float:
    """Median ms per step over the logged windows, leaving out the first (compilation, warm-up)."""
    speeds = [m["images_per_s"] for m in metrics if "images_per_s" in m]
    speeds = speeds[1:] or speeds
    return 1e3 * images / statistics.median(speeds) if speeds else float("nan")


def run_result(key: RunKey, run_dir: Path) -> dict | None:
    """Final accuracy, curve and speed of a finished run; None while it has no summary."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    if not summary:
        return None
    config, metrics = run.read_config(), run.read_metrics()
    images = images_per_step(config)
    return {**asdict(key), "run_dir": str(run_dir), "final_accuracy": 100 * summary["final_test_accuracy"],
            "curve": {m["step"]: 100 * m["test_accuracy"] for m in metrics if "test_accuracy" in m},
            "ms_per_step": step_time_ms(metrics, images), "images_per_step": images,
            "wall_time_s": summary["wall_time_s"], "device": summary.get("device")}


def cell_stats(results: list[dict], args) -> dict[tuple[int, str, str], MeanStd]:
    cells = {}
    for labels in args.labels:
        for method in args.methods:
            for framework in args.frameworks:
                finals = [r["final_accuracy"] for r in results
                          if (r["labels"], r["method"], r["framework"]) == (labels, method, framework)]
                if finals:
                    cells[labels, method, framework] = mean_std(finals)
    return cells


def parity_rows(cells: dict, args) -> list[dict]:
    if len(args.frameworks) != 2:
        return []
    first, second = args.frameworks
    rows = []
    for labels in args.labels:
        for method in args.methods:
            a, b = cells.get((labels, method, first)), cells.get((labels, method, second))
            if a is None or b is None:
                continue
            verdict = parity_verdict(a, b, FLOOR_POINTS, K_STANDARD_ERRORS)
            rows.append({"labels": labels, "method": method, first: asdict(a), second: asdict(b), **asdict(verdict)})
    return rows


def gain_rows(cells: dict, args) -> list[dict]:
    rows = []
    for labels in args.labels:
        for framework in args.frameworks:
            sesemi, baseline = cells.get((labels, "sesemi", framework)), cells.get((labels, "supervised", framework))
            if sesemi is not None and baseline is not None:
                gain, se = difference(sesemi, baseline)
                rows.append({"labels": labels, "framework": framework, "gain": gain, "standard_error": se})
    return rows


def gain_curve_rows(results: list[dict], args) -> list[dict]:
    """SESEMI minus baseline at every evaluation both methods share, per label count and framework."""
    rows = []
    for labels in args.labels:
        for framework in args.frameworks:
            curves = {method: [r["curve"] for r in results if (r["labels"], r["method"], r["framework"])
                               == (labels, method, framework)] for method in ("sesemi", "supervised")}
            if not all(curves.values()):
                continue
            shared = sorted(set.intersection(*(set(c) for method_curves in curves.values() for c in method_curves)))
            for step in shared:
                gain, se = difference(*(mean_std([c[step] for c in curves[m]]) for m in ("sesemi", "supervised")))
                rows.append({"labels": labels, "framework": framework, "step": step, "gain": gain,
                             "standard_error": se})
    return rows


def markdown(results: list[dict], cells: dict, gains: list[dict], parity: list[dict], args) -> str:
    train = run_config(args, RunKey(args.labels[0], "sesemi", args.frameworks[0], 0)).train
    lines = [f"# Trend study: {' vs '.join(args.frameworks)}, independent random streams", "",
             f"CIFAR-10 JPEG ({args.data_root}), {args.backbone}, {args.steps} steps, batch "
             f"{train.batch_labeled} labeled + {train.batch_unlabeled} unlabeled, each in its method's views (6 for "
             f"SESEMI, 2 for pi_model and mean_teacher, 1 for entmin; the baseline has no unlabeled batch), seeds 0..{args.seeds - 1}, evaluation every {train.eval_every} "
             f"steps on the 10,000 test images. Base config: {args.config or 'the defaults'}. Extra overrides: {' '.join(args.overrides) or 'none'}.", "",
             "## Final test accuracy (%), mean +- std over seeds", "",
             "| labels | method | framework | seeds | mean | std |", "|---:|---|---|---:|---:|---:|"]
    for (labels, method, framework), stats in cells.items():
        lines.append(f"| {labels} | {method} | {framework} | {stats.n} | {stats.mean:.2f} | {stats.std:.2f} |")
    lines += ["", "## SESEMI minus supervised baseline (points)", "",
              "| labels | framework | gain | standard error |", "|---:|---|---:|---:|"]
    lines += [f"| {g['labels']} | {g['framework']} | {g['gain']:+.2f} | {g['standard_error']:.2f} |" for g in gains]
    curve_gains = gain_curve_rows(results, args)
    if curve_gains:
        lines += ["", "### The gain at every evaluation (points, +- standard error)", "",
                  "| labels | framework | step | gain | standard error |", "|---:|---|---:|---:|---:|"]
        lines += [f"| {g['labels']} | {g['framework']} | {g['step']} | {g['gain']:+.2f} | {g['standard_error']:.2f} |"
                  for g in curve_gains]
    if parity:
        first, second = args.frameworks
        lines += ["", f"## Parity: |{first} - {second}| < max({FLOOR_POINTS:g} point, "
                  f"{K_STANDARD_ERRORS:g} standard errors)", "",
                  f"| labels | method | {first} | {second} | difference | 2 se | threshold | verdict |",
                  "|---:|---|---:|---:|---:|---:|---:|---|"]
        for row in parity:
            lines.append(f"| {row['labels']} | {row['method']} | {row[first]['mean']:.2f} | {row[second]['mean']:.2f} "
                         f"| {row['difference']:+.2f} | {K_STANDARD_ERRORS * row['standard_error']:.2f} "
                         f"| {row['threshold']:.2f} | {'PASS' if row['passed'] else 'FAIL'} |")
    lines += ["", "## Speed (median over runs)", "",
              "| framework | method | device | ms / step | run wall s |", "|---|---|---|---:|---:|"]
    for framework in args.frameworks:
        for method in args.methods:
            mine = [r for r in results if (r["framework"], r["method"]) == (framework, method)]
            if mine:
                lines.append(f"| {framework} | {method} | {mine[0]['device']} "
                             f"| {statistics.median(r['ms_per_step'] for r in mine):.1f} "
                             f"| {statistics.median(r['wall_time_s'] for r in mine):.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], args, out_png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.labels), figsize=(5.5 * len(args.labels), 4.2), squeeze=False)
    colors = {"sesemi": "tab:blue", "supervised": "tab:orange"}
    styles = {"jax": "-", "torch": "--"}
    for ax, labels in zip(axes[0], args.labels):
        for method in args.methods:
            for framework in args.frameworks:
                curves = [r["curve"] for r in results
                          if (r["labels"], r["method"], r["framework"]) == (labels, method, framework)]
                if not curves:
                    continue
                steps, mean, std = mean_curve(curves)
                color = colors.get(method)
                ax.plot(steps, mean, styles.get(framework, ":"), color=color, marker="o", markersize=3,
                        label=f"{framework} {method} (n={len(curves)})")
                ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12)
        ax.set(title=f"{labels} labels", xlabel="step", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"CIFAR-10, {args.backbone}, {args.steps} steps: mean over seeds, band +-1 std")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def report(args, keys: list[RunKey]) -> bool:
    """Write trend.png, results.md, results.json; print the tables; True when every verdict passes."""
    results = [r for key in keys if (r := run_result(key, args.out / "runs" / key.name)) is not None]
    if not results:
        print(f"no finished runs under {args.out / 'runs'} for these settings")
        return True
    cells = cell_stats(results, args)
    gains, parity = gain_rows(cells, args), parity_rows(cells, args)
    record = provenance()
    text = with_provenance(markdown(results, cells, gains, parity, args), record)
    (args.out / "results.md").write_text(text)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps({
        "provenance": record, "settings": settings, "missing_runs": [k.name for k in keys if k.name not in {RunKey(
            r["labels"], r["method"], r["framework"], r["seed"]).name for r in results}],
        "runs": results, "cells": [{"labels": n, "method": m, "framework": f, **asdict(s)}
                                   for (n, m, f), s in cells.items()],
        "gains": gains, "gain_curves": gain_curve_rows(results, args), "parity": parity}, indent=1) + "\n")
    plot(results, args, args.out / "trend.png")
    print(text)
    for row in parity:
        print(f"{'PASS' if row['passed'] else 'FAIL'} labels={row['labels']} method={row['method']}: "
              f"difference {row['difference']:+.2f} points, threshold {row['threshold']:.2f}")
    missing = len(keys) - len(results)
    print(f"{len(results)} of {len(keys)} runs finished{f'; {missing} missing' if missing else ''}; "
          f"wrote {args.out / 'trend.png'}, results.md, results.json")
    return all(row["passed"] for row in parity)


# ---------------------------------------------------------------- command line


def names(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        if item not in allowed:
            raise argparse.ArgumentTypeError(f"unknown '{item}': choose from {', '.join(allowed)}")
    if not items or len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"give distinct names from {', '.join(allowed)}, got '{text}'")
    return items


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' needs positive label counts, e.g. 1000,4000")
    return values


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every run, e.g. optim.lr=0.1")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per run (the budget)")
    parser.add_argument("--seeds", type=int, default=3, help="train.seed = 0 .. seeds-1")
    parser.add_argument("--labels", type=positive_ints, default=[1000, 4000], help="label counts, e.g. 1000,4000")
    parser.add_argument("--config", default="", help="start from a preset (paper) or config file, not the defaults")
    parser.add_argument("--backbone", default="", help="default: the config's (resnet20 unless --config says otherwise)")
    parser.add_argument("--batch-labeled", type=int, default=0, help="0: the Config default")
    parser.add_argument("--batch-unlabeled", type=int, default=0, help="0: the Config default (SESEMI runs)")
    parser.add_argument("--frameworks", type=lambda t: names(t, FRAMEWORKS, "--frameworks"), default=list(FRAMEWORKS))
    parser.add_argument("--methods", type=lambda t: names(t, method_names(), "--methods"), default=list(METHODS))
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between test evaluations (0: only at the end)")
    parser.add_argument("--log-every", type=int, default=0, help="0: min(25, steps)")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="0: --eval-every; smaller loses less of a long run that is stopped")
    parser.add_argument("--data-root", type=Path, default=CIFAR10_JPEG, help="CIFAR-10 ImageFolder tree")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "trend")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (2 on this 2-core box)")
    parser.add_argument("--torch-device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="torch in NCHW instead of channels_last (the faster CPU path)")
    parser.add_argument("--progress", action="store_true", help="show each run's progress bar")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    args = parser.parse_args(argv)
    for option in ("steps", "seeds"):
        if getattr(args, option) <= 0:
            parser.error(f"--{option} must be positive, got {getattr(args, option)}")
    if min(args.eval_every, args.log_every, args.checkpoint_every) < 0:
        parser.error("--eval-every, --log-every and --checkpoint-every must be zero or positive")
    if not args.report_only and not args.data_root.is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder: point it at the CIFAR-10 JPEG ImageFolder tree")
    args.data_root = args.data_root.absolute()
    args.out = args.out.absolute()
    for override in args.overrides:
        key = override.partition("=")[0].strip()
        if key in STUDY_KEYS:
            parser.error(f"override '{override}': the study sets {key} itself; use {STUDY_KEYS[key]}")
    try:  # every config of the study, before the first run rather than midway
        args.backbone = args.backbone or base_config(args).model.backbone
        configs = [run_config(args, key) for key in run_keys(args)]
    except ConfigError as err:
        parser.error(str(err))
    for config in configs:
        if config.train.batch_labeled > config.data.n_labels:
            parser.error(f"--labels {config.data.n_labels} is smaller than the labeled batch "
                         f"({config.train.batch_labeled}): lower --batch-labeled or raise --labels")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = run_keys(args)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"{len(keys)} runs, {args.steps} steps each, into {args.out}; python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    failed = [] if args.report_only else train_all(args, keys)
    passed = report(args, keys)
    print(f"study wall time {time.perf_counter() - started:.0f} s")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}")
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
