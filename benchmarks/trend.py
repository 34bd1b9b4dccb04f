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

The machinery is sesemi_common/compare.py (`sesemi compare` runs any dataset and baseline with
it); this script keeps the CIFAR-10 study's options and run directory layout. The gain table is
every method minus the supervised baseline, when `supervised` is among --methods; a method
registered by a plug-in (SESEMI_PLUGINS, docs/ADDING_A_METHOD.md) is a valid --methods name.

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
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import provenance, with_provenance  # noqa: E402
from sesemi_common import compare, methods, plugins  # noqa: E402
from sesemi_common.compare import RunKey, Study  # noqa: E402
from sesemi_common.config import Config, ConfigError, apply_overrides  # noqa: E402
from sesemi_common.compare_command import parse_names  # noqa: E402
from sesemi_common.methods import method_names  # noqa: E402
from sesemi_common.runs import RunDirError  # noqa: E402

CIFAR10_JPEG = REPO.parent / "shared" / "data" / "cifar10-jpeg"
FRAMEWORKS = compare.FRAMEWORKS
METHODS = ("sesemi", "supervised")
BASELINE = "supervised"  # the gain table: every other method minus this one, when it is in --methods
# Keys the study itself sets per run; an extra override of one would collapse the grid.
STUDY_KEYS = {"data.dataset": "--data-root", "data.root": "--data-root", "data.n_labels": "--labels",
              "model.backbone": "--backbone", "method.name": "--methods", "train.steps": "--steps",
              "train.batch_labeled": "--batch-labeled", "train.batch_unlabeled": "--batch-unlabeled",
              "train.seed": "--seeds", "train.eval_every": "--eval-every", "train.checkpoint_every": "--checkpoint-every",
              "train.log_every": "--log-every"}


def run_config(args, key: RunKey) -> Config:
    """The one config of a run; only the method, label count and seed vary, never the framework."""
    base = base_config(args)
    batch_labeled = args.batch_labeled or base.train.batch_labeled
    unlabeled = methods.get(key.method).views_per_image  # the baseline (and any method without views) has no unlabeled batch
    batch_unlabeled = (args.batch_unlabeled or base.train.batch_unlabeled) if unlabeled else 0
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


def study(args) -> Study:
    """The study's grid for sesemi_common.compare, which trains, skips, resumes and reports."""
    torch_options = {"channels_last": args.channels_last, "device": args.torch_device}
    return Study(out=args.out, labels=args.labels, methods=args.methods, frameworks=args.frameworks,
                 seeds=args.seeds, config_for=lambda key: run_config(args, key),
                 baseline=BASELINE if BASELINE in args.methods else None,
                 fit_options={"torch": torch_options}, progress=args.progress)


def run_keys(args) -> list[RunKey]:
    return study(args).keys()


def train_all(args) -> list[str]:
    """Train every run in turn (sesemi_common.compare.train_all); returns the failed names."""
    if "torch" in args.frameworks:
        import torch
        torch.set_num_threads(args.torch_threads)
    try:
        return compare.train_all(study(args))
    except RunDirError as err:
        raise SystemExit(f"error: {err}") from None


def markdown(report: compare.Report, args) -> str:
    train = run_config(args, RunKey(args.labels[0], args.methods[0], args.frameworks[0], 0)).train
    lines = [f"# Trend study: {' vs '.join(args.frameworks)}, independent random streams", "",
             f"CIFAR-10 JPEG ({args.data_root}), {args.backbone}, {args.steps} steps, batch "
             f"{train.batch_labeled} labeled + {train.batch_unlabeled} unlabeled, each in its method's views (6 for "
             f"SESEMI, 2 for pi_model and mean_teacher, 1 for entmin; the baseline has no unlabeled batch), seeds 0..{args.seeds - 1}, evaluation every {train.eval_every} "
             f"steps on the 10,000 test images. Base config: {args.config or 'the defaults'}. Extra overrides: {' '.join(args.overrides) or 'none'}.", ""]
    lines += compare.markdown_tables(report, study(args))
    return "\n".join(lines) + "\n"


def report(args) -> bool:
    """Write trend.png, results.md, results.json; print the tables; True when every verdict passes."""
    grid = study(args)
    outcome = compare.analyse(grid)
    if not outcome.results:
        print(f"no finished runs under {args.out / 'runs'} for these settings")
        return True
    record = provenance()
    text = with_provenance(markdown(outcome, args), record)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    compare.write_report(grid, outcome, text, "trend.png",
                         f"CIFAR-10, {args.backbone}, {args.steps} steps: mean over seeds, band +-1 std",
                         {"provenance": record, "settings": settings})
    print(text)
    print("\n".join(compare.verdict_lines(outcome, grid)) + f"; wrote {args.out / 'trend.png'}, results.md, results.json")
    return outcome.passed


# ---------------------------------------------------------------- command line


def names(allowed: tuple[str, ...] | None, option: str):
    """An argparse type: `sesemi compare`'s parser of comma-separated names (stacks such as
    sesemi+entmin included), its error an argparse one. `allowed` None: the registered methods,
    read when the option is parsed (after plug-ins load)."""
    def parse(text: str) -> list[str]:
        try:
            return parse_names(text, method_names() if allowed is None else allowed, option)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{option}: ")) from None
    return parse


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' needs positive label counts, e.g. 1000,4000")
    return values


def parse_args(argv: list[str] | None = None):
    plugins.load()  # a method of SESEMI_PLUGINS or an installed plug-in is a valid --methods name
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every run, e.g. optim.lr=0.1")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per run (the budget)")
    parser.add_argument("--seeds", type=int, default=3, help="train.seed = 0 .. seeds-1")
    parser.add_argument("--labels", type=positive_ints, default=[1000, 4000], help="label counts, e.g. 1000,4000")
    parser.add_argument("--config", default="", help="start from a preset (paper) or config file, not the defaults")
    parser.add_argument("--backbone", default="", help="default: the config's (resnet20 unless --config says otherwise)")
    parser.add_argument("--batch-labeled", type=int, default=0, help="0: the Config default")
    parser.add_argument("--batch-unlabeled", type=int, default=0, help="0: the Config default (SESEMI runs)")
    parser.add_argument("--frameworks", type=names(FRAMEWORKS, "--frameworks"), default=list(FRAMEWORKS))
    parser.add_argument("--methods", type=names(None, "--methods"), default=list(METHODS))
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
    failed = [] if args.report_only else train_all(args)
    passed = report(args)
    print(f"study wall time {time.perf_counter() - started:.0f} s")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}")
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
