"""Compare run directories: one PNG of their curves and a Markdown table."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from .runs import RunDir


def _label(summary: dict, run: RunDir) -> str:
    return f"{summary.get('framework', '?')} {summary.get('method', '?')} ({run.path.name})"


def _verification(run: RunDir) -> str:
    """`sesemi verify`'s verdict: PASS/FAIL, label agreement, largest logit difference."""
    result = run.read_verification()
    if not result:
        return "-"
    return (f"{'PASS' if result.get('passed') else 'FAIL'} {100 * result['label_agreement']:.2f}% agree, "
            f"max diff {result['max_abs_logit_diff']:.1e}")


def markdown_table(run_dirs: Sequence[str | Path]) -> str:
    verified = any(RunDir(path).read_verification() for path in run_dirs)  # the column only when it says something
    rows = ["| run | framework | method | backbone | labels | steps | final test acc | train images/s |"
            + (" verification |" if verified else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if verified else "")]
    for path in run_dirs:
        run = RunDir(path)
        summary, metrics = run.read_summary(), run.read_metrics()
        speeds = [m["images_per_s"] for m in metrics if "images_per_s" in m]
        accuracy = summary.get("final_test_accuracy")
        rows.append(f"| {run.path.name} | {summary.get('framework')} | {summary.get('method')} | "
                    f"{summary.get('backbone')} | {summary.get('n_labels')} | {summary.get('steps')} | "
                    f"{'-' if accuracy is None else f'{100 * accuracy:.2f}%'} | "
                    f"{statistics.median(speeds) if speeds else 0:.0f} |"
                    + (f" {_verification(run)} |" if verified else ""))
    return "\n".join(rows)


def plot_runs(run_dirs: Sequence[str | Path], out_png: str | Path) -> Path:
    """Test accuracy and training loss against step, one line per run."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError("the report needs matplotlib: pip install matplotlib") from err
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for path in run_dirs:
        run = RunDir(path)
        metrics, label = run.read_metrics(), _label(run.read_summary(), run)
        evals = [m for m in metrics if "test_accuracy" in m]
        logs = [m for m in metrics if "loss" in m]
        acc_ax.plot([m["step"] for m in evals], [100 * m["test_accuracy"] for m in evals], marker="o", label=label)
        loss_ax.plot([m["step"] for m in logs], [m["loss"] for m in logs], label=label)
    acc_ax.set(xlabel="step", ylabel="test accuracy (%)", title="Test accuracy")
    loss_ax.set(xlabel="step", ylabel="loss", title="Training loss (sup + w * self)", yscale="log")
    acc_ax.legend(fontsize=8)
    acc_ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


# What the longest CPU study measured (docs/results/index.md, "Does SESEMI beat the baseline when it
# has time?"): quoted by the demo so that a short run's result is read against it, not alone.
LONG_STUDY = ("On CIFAR-10 with 1,000 labels, 3 seeds and 5,000 steps SESEMI beats the baseline by 2.5 points "
              "(standard error 0.5) in JAX and 3.3 (0.9) in PyTorch, winning every seed pair; at 750 steps it "
              "did not: README, 'Results'")


def sesemi_effect(run_dirs: Sequence[str | Path]) -> str:
    """One line on SESEMI against the supervised baseline in these runs, per framework."""
    finals: dict[str, dict[str, dict]] = {}
    for path in run_dirs:
        summary = RunDir(path).read_summary()
        finals.setdefault(summary.get("framework", "?"), {})[summary.get("method")] = summary
    pairs = {fw: (m["sesemi"], m["supervised"]) for fw, m in finals.items() if {"sesemi", "supervised"} <= set(m)}
    if not pairs:
        return ""
    gains = {fw: 100 * (s["final_test_accuracy"] - b["final_test_accuracy"]) for fw, (s, b) in pairs.items()}
    first = next(iter(pairs.values()))[0]
    budget = f"{first.get('steps')} steps, {first.get('n_labels')} labels, one seed"
    measured = ", ".join(f"{fw} {gain:+.1f}" for fw, gain in gains.items())
    if all(gain > 0 for gain in gains.values()):
        return f"SESEMI minus baseline here ({budget}): {measured} points. {LONG_STUDY}"
    return (f"SESEMI minus baseline here ({budget}): {measured} points: SESEMI needs long schedules to pay off. "
            f"{LONG_STUDY}")
