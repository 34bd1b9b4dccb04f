"""Does a method beat its baseline, and do the two frameworks agree? (`sesemi compare`, benchmarks/trend.py)

A study is a grid of runs: label counts x methods (the baseline among them) x frameworks x
seeds, each trained with its own random streams into `OUT/runs/labels<L>-<method>-<framework>-seed<s>/`,
one after the other. A run whose summary.json exists is skipped, one stopped after a checkpoint
resumes, one stopped before its first checkpoint starts over, so a study is resumed or extended
by running the same command again; a run directory trained with another config is refused before
anything trains. The report gives, from the finished runs:

- final test accuracy per cell (labels, method, framework): mean and std over seeds;
- each method's gain over the baseline per framework, at the end and at every evaluation:
  the difference of the means over seeds, with its standard error (sesemi_common/trend_stats.py);
- per (labels, method), the JAX-against-PyTorch verdict: the means must differ by less than
  max(1 point, 2 standard errors of the difference);
- the curves (mean over seeds, band +-1 std) in one PNG, results.md and results.json.

Framework-free: each framework's loop is imported when its first run trains.
"""

from __future__ import annotations

import importlib
import json
import shutil
import statistics
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .config import Config
from .datasets import load_dataset
from .methods import images_per_step
from .progress import training_seconds
from .runs import RunDir, RunDirError
from .trend_stats import (MeanStd, difference, mean_curve, mean_std, paired_p_value, parity_verdict,
                          welch_p_value)

FRAMEWORKS = ("jax", "torch")
FLOOR_POINTS, K_STANDARD_ERRORS = 1.0, 2.0


@dataclass(frozen=True)
class RunKey:
    labels: int
    method: str
    framework: str
    seed: int

    @property
    def name(self) -> str:
        return f"labels{self.labels}-{self.method}-{self.framework}-seed{self.seed}"


@dataclass
class Study:
    """The grid, where it lives, and how each run's config is made (only the method, label count
    and seed vary; never the framework)."""

    out: Path
    labels: list[int]
    methods: list[str]  # the baseline, when there is one, among them
    frameworks: list[str]
    seeds: int
    config_for: Callable[[RunKey], Config]
    baseline: str | None = None
    fit_options: dict[str, dict] = field(default_factory=dict)  # framework -> extra keyword arguments of fit
    progress: bool = False

    def keys(self) -> list[RunKey]:
        # Seeds outermost: a study stopped early still holds whole seeds of every cell.
        return [RunKey(labels, method, framework, seed) for seed in range(self.seeds) for labels in self.labels
                for method in self.methods for framework in self.frameworks]

    def run_dir(self, key: RunKey) -> Path:
        return self.out / "runs" / key.name


# ---------------------------------------------------------------- training


def _framework_module(framework: str, name: str):
    return importlib.import_module(f"sesemi_{framework}.{name}")


def check_run_dirs(study: Study) -> None:
    """Refuse, before anything trains, a run directory that holds a run of another config."""
    for key in study.keys():
        run = RunDir(study.run_dir(key))
        if not run.has_run():
            continue
        saved, wanted = _flat(run.read_config().to_dict()), _flat(study.config_for(key).to_dict())
        if saved != wanted:
            changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
            raise RunDirError(f"{run.path} was trained with another config ({', '.join(changed)} "
                              f"{'differs' if len(changed) == 1 else 'differ'}): "
                              "pass another --out, or the settings of that study")


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def train_or_skip(key: RunKey, config: Config, run_dir: Path, dataset, study: Study) -> str:
    """Train one run unless it is finished; resume one that stopped after a checkpoint."""
    run = RunDir(run_dir)
    resume = False
    if run.has_run():
        if run.read_summary():
            return "finished earlier, skipped"
        resume = _framework_module(key.framework, "checkpoints").latest_step(run.checkpoints) is not None
        if not resume:  # stopped before its first checkpoint: nothing worth keeping
            shutil.rmtree(run_dir)
    fit = _framework_module(key.framework, "loop").fit
    fit(config, run_dir, resume=resume, dataset=dataset, show_progress=study.progress,
        **study.fit_options.get(key.framework, {}))
    return "resumed" if resume else "trained"


def train_all(study: Study) -> list[str]:
    """Train every run in turn; a run that fails is reported and the study goes on. Returns the failed names."""
    check_run_dirs(study)
    keys = study.keys()
    dataset = None
    failed = []
    for number, key in enumerate(keys, start=1):
        run_dir = study.run_dir(key)
        started = time.perf_counter()
        try:
            if dataset is None and not RunDir(run_dir).is_finished():
                dataset = load_dataset(study.config_for(key).data)  # the data config is the same for every run
            outcome = train_or_skip(key, study.config_for(key), run_dir, dataset, study)
        except Exception as err:  # one broken run must not cost the rest of an unattended study
            traceback.print_exc()
            print(f"[{number}/{len(keys)}] {key.name}: FAILED ({type(err).__name__}: {err})", flush=True)
            failed.append(key.name)
            continue
        result = run_result(key, run_dir)
        print(f"[{number}/{len(keys)}] {key.name}: {outcome}; test accuracy {result['final_accuracy']:.2f}%, "
              f"{result['ms_per_step']:.0f} ms/step, training {result['training_s']:.0f} s "
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
            "wall_time_s": summary["wall_time_s"], "training_s": training_seconds(metrics, images),
            "device": summary.get("device")}


def finished_results(study: Study) -> list[dict]:
    return [r for key in study.keys() if (r := run_result(key, study.run_dir(key))) is not None]


def _of(results: list[dict], labels: int, method: str, framework: str) -> list[dict]:
    return [r for r in results if (r["labels"], r["method"], r["framework"]) == (labels, method, framework)]


def cell_stats(results: list[dict], study: Study) -> dict[tuple[int, str, str], MeanStd]:
    cells = {}
    for labels in study.labels:
        for method in study.methods:
            for framework in study.frameworks:
                finals = [r["final_accuracy"] for r in _of(results, labels, method, framework)]
                if finals:
                    cells[labels, method, framework] = mean_std(finals)
    return cells


def parity_rows(cells: dict, study: Study) -> list[dict]:
    """The JAX-against-PyTorch verdict of every (labels, method) both frameworks have finished."""
    if len(study.frameworks) != 2:
        return []
    first, second = study.frameworks
    rows = []
    for labels in study.labels:
        for method in study.methods:
            a, b = cells.get((labels, method, first)), cells.get((labels, method, second))
            if a is None or b is None:
                continue
            rows.append({"labels": labels, "method": method, **_parity(a, b, first, second)})
    return rows


def _parity(a: MeanStd, b: MeanStd, first: str, second: str) -> dict:
    """Both frameworks' statistics and the verdict on them, as a row of the parity tables holds them."""
    return {first: asdict(a), second: asdict(b), **asdict(parity_verdict(a, b, FLOOR_POINTS, K_STANDARD_ERRORS))}


def compared_methods(study: Study) -> list[str]:
    return [m for m in study.methods if study.baseline and m != study.baseline]


def seed_pairs(results: list[dict], labels: int, method: str, baseline: str, framework: str,
               accuracy) -> tuple[list[float], list[float]]:
    """`accuracy(result)` of the method's and the baseline's runs of every seed both finished,
    seed by seed (the same seed: the same split and initial draw); a None accuracy leaves its seed out."""
    ours = {r["seed"]: accuracy(r) for r in _of(results, labels, method, framework)}
    base = {r["seed"]: accuracy(r) for r in _of(results, labels, baseline, framework)}
    seeds = sorted(s for s in set(ours) & set(base) if ours[s] is not None and base[s] is not None)
    return [ours[s] for s in seeds], [base[s] for s in seeds]


def gain_rows(results: list[dict], cells: dict, study: Study) -> list[dict]:
    """Each method's final accuracy minus the baseline's, per label count and framework."""
    rows = []
    for labels in study.labels:
        for method in compared_methods(study):
            for framework in study.frameworks:
                ours, base = cells.get((labels, method, framework)), cells.get((labels, study.baseline, framework))
                if ours is not None and base is not None:
                    pairs = seed_pairs(results, labels, method, study.baseline, framework,
                                       lambda r: r["final_accuracy"])
                    rows.append({"labels": labels, "method": method, "baseline": study.baseline,
                                 "framework": framework, **_gain(ours, base, pairs)})
    return rows


def _gain(ours: MeanStd, base: MeanStd, pairs: tuple[list[float], list[float]]) -> dict:
    """A method's mean minus the baseline's, its standard error, and both tests' p-values."""
    gain, se = difference(ours, base)
    return {"gain": gain, "standard_error": se, "p_value": welch_p_value(ours, base),
            "paired_p_value": paired_p_value(*pairs)}


def gain_curve_rows(results: list[dict], study: Study) -> list[dict]:
    """Each method minus the baseline at every evaluation both share (mean over seeds, standard error)."""
    rows = []
    for labels in study.labels:
        for method in compared_methods(study):
            for framework in study.frameworks:
                curves = {m: [r["curve"] for r in _of(results, labels, m, framework)] for m in (method, study.baseline)}
                for step in shared_steps(curves):
                    ours, base = (mean_std([c[step] for c in curves[m]]) for m in (method, study.baseline))
                    pairs = seed_pairs(results, labels, method, study.baseline, framework,
                                       lambda r, step=step: r["curve"].get(step))
                    rows.append({"labels": labels, "method": method, "baseline": study.baseline,
                                 "framework": framework, "step": step, **_gain(ours, base, pairs)})
    return rows


def shared_steps(curves: dict[str, list[dict]]) -> list[int]:
    """The evaluation steps every curve of every group has; none while a group has no curve."""
    if not all(curves.values()):
        return []
    return sorted(set.intersection(*(set(c) for each in curves.values() for c in each)))


def parity_curve_rows(results: list[dict], study: Study) -> list[dict]:
    """The parity verdict at every evaluation both frameworks share, per (labels, method). The
    ladder judges the final accuracy (docs/DESIGN.md section 5); these rows show whether the two
    frameworks part ways on the way there."""
    if len(study.frameworks) != 2:
        return []
    first, second = study.frameworks
    rows = []
    for labels in study.labels:
        for method in study.methods:
            curves = {f: [r["curve"] for r in _of(results, labels, method, f)] for f in study.frameworks}
            for step in shared_steps(curves):
                a, b = (mean_std([c[step] for c in curves[f]]) for f in (first, second))
                rows.append({"labels": labels, "method": method, "step": step, **_parity(a, b, first, second)})
    return rows


def _p(value: float | None) -> str:
    """A p-value for a table: '-' where there is none (one seed, or no spread), never a bare 0.000."""
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _parity_line(row: dict, first: str, second: str, *cells) -> str:
    return (f"| {' | '.join(str(c) for c in cells)} | {row[first]['mean']:.2f} | {row[second]['mean']:.2f} "
            f"| {row['difference']:+.2f} | {K_STANDARD_ERRORS * row['standard_error']:.2f} "
            f"| {row['threshold']:.2f} | {'PASS' if row['passed'] else 'FAIL'} | {_p(row['p_value'])} |")


def markdown_tables(report: "Report", study: Study) -> list[str]:
    """The report's sections (accuracy, gains, parity, speed), without its title and settings."""
    results, cells, gains, curve_gains, parity = (report.results, report.cells, report.gains, report.curve_gains,
                                                  report.parity)
    lines = ["## Final test accuracy (%), mean +- std over seeds", "",
             "| labels | method | framework | seeds | mean | std |", "|---:|---|---|---:|---:|---:|"]
    for (labels, method, framework), stats in cells.items():
        lines.append(f"| {labels} | {method} | {framework} | {stats.n} | {stats.mean:.2f} | {stats.std:.2f} |")
    if study.baseline and compared_methods(study):
        lines += ["", f"## Gain over the baseline ({study.baseline}), points", "",
                  "| labels | method | framework | gain | standard error | Welch p | paired p |",
                  "|---:|---|---|---:|---:|---:|---:|"]
        lines += [f"| {g['labels']} | {g['method']} | {g['framework']} | {g['gain']:+.2f} | {g['standard_error']:.2f} "
                  f"| {_p(g['p_value'])} | {_p(g['paired_p_value'])} |" for g in gains]
    if curve_gains:
        lines += ["", "### The gain at every evaluation (points, +- standard error)", "",
                  "| labels | method | framework | step | gain | standard error | Welch p | paired p |",
                  "|---:|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {g['labels']} | {g['method']} | {g['framework']} | {g['step']} | {g['gain']:+.2f} "
                  f"| {g['standard_error']:.2f} | {_p(g['p_value'])} | {_p(g['paired_p_value'])} |" for g in curve_gains]
    if parity:
        first, second = study.frameworks
        lines += ["", f"## Parity: |{first} - {second}| < max({FLOOR_POINTS:g} point, "
                  f"{K_STANDARD_ERRORS:g} standard errors)", "",
                  f"| labels | method | {first} | {second} | difference | 2 se | threshold | verdict | Welch p |",
                  "|---:|---|---:|---:|---:|---:|---:|---|---:|"]
        lines += [_parity_line(row, first, second, row["labels"], row["method"]) for row in parity]
    if report.curve_parity:
        first, second = study.frameworks
        lines += ["", "### Parity at every evaluation (the verdict above is the final one; these show the way there)",
                  "", f"| labels | method | step | {first} | {second} | difference | 2 se | threshold | verdict "
                  "| Welch p |", "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        lines += [_parity_line(row, first, second, row["labels"], row["method"], row["step"])
                  for row in report.curve_parity]
    lines += ["", "## Speed (median over runs)", "",
              "| framework | method | device | ms / step | training s (every call) | wall s (last call) |",
              "|---|---|---|---:|---:|---:|"]
    for framework in study.frameworks:
        for method in study.methods:
            mine = [r for r in results if (r["framework"], r["method"]) == (framework, method)]
            if mine:
                lines.append(f"| {framework} | {method} | {mine[0]['device']} "
                             f"| {statistics.median(r['ms_per_step'] for r in mine):.1f} "
                             f"| {statistics.median(r['training_s'] for r in mine):.0f} "
                             f"| {statistics.median(r['wall_time_s'] for r in mine):.0f} |")
    return lines


def plot(results: list[dict], study: Study, out_png: Path, title: str) -> None:
    """One panel per label count: the mean test-accuracy curve over seeds per framework x method, band +-1 std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(study.labels), figsize=(max(7.0, 5.5 * len(study.labels)), 4.2), squeeze=False)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {method: palette[i % len(palette)] for i, method in enumerate(study.methods)}
    styles = {"jax": "-", "torch": "--"}
    for ax, labels in zip(axes[0], study.labels):
        for method in study.methods:
            for framework in study.frameworks:
                curves = [r["curve"] for r in _of(results, labels, method, framework)]
                if not curves:
                    continue
                steps, mean, std = mean_curve(curves)
                ax.plot(steps, mean, styles.get(framework, ":"), color=colors[method], marker="o", markersize=3,
                        label=f"{framework} {method} (n={len(curves)})")
                ax.fill_between(steps, mean - std, mean + std, color=colors[method], alpha=0.12)
        ax.set(title=f"{labels} labels", xlabel="step", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


@dataclass
class Report:
    results: list[dict]
    cells: dict
    gains: list[dict]
    curve_gains: list[dict]
    parity: list[dict]
    curve_parity: list[dict]

    @property
    def passed(self) -> bool:
        return all(row["passed"] for row in self.parity)


def analyse(study: Study) -> Report:
    results = finished_results(study)
    cells = cell_stats(results, study)
    return Report(results, cells, gain_rows(results, cells, study), gain_curve_rows(results, study),
                  parity_rows(cells, study), parity_curve_rows(results, study))


def write_report(study: Study, report: Report, markdown: str, png_name: str, plot_title: str,
                 extra_json: dict | None = None) -> None:
    """results.md (`markdown`), results.json and the curves (`png_name`) into the study's folder."""
    (study.out / "results.md").write_text(markdown)
    names = {RunKey(r["labels"], r["method"], r["framework"], r["seed"]).name for r in report.results}
    (study.out / "results.json").write_text(json.dumps({
        **(extra_json or {}), "baseline": study.baseline,
        "missing_runs": [k.name for k in study.keys() if k.name not in names],
        "runs": report.results, "cells": [{"labels": n, "method": m, "framework": f, **asdict(s)}
                                          for (n, m, f), s in report.cells.items()],
        "gains": report.gains, "gain_curves": report.curve_gains, "parity": report.parity,
        "parity_curves": report.curve_parity}, indent=1) + "\n")
    if report.results:
        plot(report.results, study, study.out / png_name, plot_title)


def verdict_lines(report: Report, study: Study) -> list[str]:
    """One PASS/FAIL line per (labels, method) and a count of the finished runs."""
    lines = [f"{'PASS' if row['passed'] else 'FAIL'} labels={row['labels']} method={row['method']}: "
             f"difference {row['difference']:+.2f} points, threshold {row['threshold']:.2f}"
             + ("" if row["p_value"] is None else f", Welch p {row['p_value']:.3f}") for row in report.parity]
    missing = len(study.keys()) - len(report.results)
    lines.append(f"{len(report.results)} of {len(study.keys())} runs finished{f'; {missing} missing' if missing else ''}")
    return lines
