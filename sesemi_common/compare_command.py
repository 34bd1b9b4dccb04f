"""`sesemi compare`: methods against a baseline over seeds, in one or both frameworks, on any dataset.

    sesemi compare --methods fixmatch,sesemi [--baseline supervised] [--seeds 3] [--frameworks jax,torch]
        [--config PRESET_OR_FILE] [--out runs/compare] [--report-only] [section.key=value ...]

Every run starts from the defaults (or `--config`) with the overrides; the command sets only
`method.name`, `train.seed` and, for a method without an unlabeled batch (the supervised
baseline), `train.batch_unlabeled=0`. The machinery (training, skipping, resuming, statistics,
the report) is sesemi_common/compare.py.
"""

from __future__ import annotations

from pathlib import Path

from . import compare, methods, plugins
from .compare import RunKey, Study
from .config import Config, ConfigError, apply_overrides

# Keys the command sets per run; an override of one would collapse the grid.
COMMAND_KEYS = {"method.name": "--methods and --baseline", "train.seed": "--seeds"}


def add_parser(commands) -> None:
    parser = commands.add_parser("compare", help="methods against a baseline over seeds, in one or both frameworks")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.steps=500")
    parser.add_argument("--methods", required=True, help="comma-separated methods to compare, e.g. fixmatch,sesemi")
    parser.add_argument("--baseline", default="supervised", help="the method each one is compared with "
                                                                 "(default supervised; 'none' for no gain table)")
    parser.add_argument("--seeds", type=int, default=3, help="train.seed = 0 .. seeds-1 (default 3)")
    parser.add_argument("--frameworks", default="", help="jax, torch or jax,torch (default: every installed one)")
    parser.add_argument("--config", default="", help="start every run from a preset or config file")
    parser.add_argument("--out", default="runs/compare", help="the study's folder (runs/, results.md, compare.png)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--progress", action="store_true", help="show each run's progress bar")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")


def parse_names(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """Comma-separated distinct names from `allowed` (or stacks of registered methods, sesemi+entmin);
    ConfigError, naming `option`, otherwise. benchmarks/trend.py parses its options with it too."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        if methods.stacking.is_stacked(item):  # a stack of registered methods, e.g. sesemi+entmin
            try:
                methods.get(item)
            except ValueError as err:
                raise ConfigError(f"{option}: {err}") from None
    unknown = [item for item in items if item not in allowed and not methods.stacking.is_stacked(item)]
    if unknown:
        raise ConfigError(f"{option}: unknown '{unknown[0]}': choose from {', '.join(allowed)} (or stack them: sesemi+entmin)")
    if not items or len(set(items)) != len(items):
        raise ConfigError(f"{option}: give distinct names from {', '.join(allowed)}, got '{text}'")
    return items


def build_study(args, installed: list[str]) -> Study:
    """The grid of `sesemi compare`, every config checked before the first run."""
    plugins.load()
    if args.seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {args.seeds}")
    for override in args.overrides:
        key = override.partition("=")[0].strip()
        if key in COMMAND_KEYS:
            raise ConfigError(f"override '{override}': sesemi compare sets {key} itself; use {COMMAND_KEYS[key]}")
    compared = parse_names(args.methods, methods.method_names(), "--methods")
    baseline = None if args.baseline == "none" else parse_names(args.baseline, methods.method_names(), "--baseline")[0]
    frameworks = parse_names(args.frameworks, compare.FRAMEWORKS, "--frameworks") if args.frameworks else installed
    missing = [f for f in frameworks if f not in installed]
    if missing or not frameworks:
        raise ConfigError(f"--frameworks: {(missing or ['jax or torch'])[0]} is not installed: "
                          f"pip install 'sesemi[{(missing or ['jax'])[0]}]'")
    base = apply_overrides(Config.load(args.config) if args.config else Config(), args.overrides)

    def config_for(key: RunKey) -> Config:
        unlabeled = [] if methods.get(key.method).views_per_image else ["train.batch_unlabeled=0"]
        return apply_overrides(base, [f"method.name={key.method}", f"train.seed={key.seed}", *unlabeled])

    study = Study(out=Path(args.out).absolute(), labels=[base.data.n_labels],
                  methods=([baseline] if baseline and baseline not in compared else []) + compared,
                  frameworks=frameworks, seeds=args.seeds, config_for=config_for, baseline=baseline,
                  progress=args.progress)
    for key in study.keys():
        config_for(key)  # a bad value surfaces now, not after the first runs
    return study


def markdown(report: compare.Report, study: Study, args) -> str:
    shown = (compare.compared_methods(study) or study.methods)[0]  # the baseline may have no unlabeled batch
    config = study.config_for(RunKey(study.labels[0], shown, study.frameworks[0], 0))
    data = config.data.dataset + (f" ({config.data.root})" if config.data.root else "")
    lines = [f"# Compare: {', '.join(compared for compared in compare.compared_methods(study)) or 'methods'}"
             f"{f' against {study.baseline}' if study.baseline else ''}", "",
             f"{data}, {config.data.n_labels} labels, {config.model.backbone}, {config.train.steps} steps, batch "
             f"{config.train.batch_labeled} labeled + {config.train.batch_unlabeled} unlabeled, frameworks "
             f"{', '.join(study.frameworks)}, seeds 0..{study.seeds - 1}, evaluation every {config.train.eval_every} "
             f"steps. Base config: {args.config or 'the defaults'}. Overrides: {' '.join(args.overrides) or 'none'}.", ""]
    lines += compare.markdown_tables(report, study)
    return "\n".join(lines) + "\n"


def run(args, installed: list[str]) -> int:
    """Train what is missing, report; exit 0, 1 when a parity verdict fails, 2 when a run failed."""
    study = build_study(args, installed)
    study.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(study.keys())} runs into {study.out}", flush=True)
    if args.torch_threads and "torch" in study.frameworks:
        import torch
        torch.set_num_threads(args.torch_threads)
    failed = [] if args.report_only else compare.train_all(study)
    report = compare.analyse(study)
    text = markdown(report, study, args)
    compare.write_report(study, report, text, "compare.png", f"{text.splitlines()[0].removeprefix('# Compare: ')}: mean over seeds, band +-1 std",
                         {"settings": {k: v for k, v in vars(args).items() if k != "command"}})
    print(text)
    print("\n".join(compare.verdict_lines(report, study))
          + f"; wrote {study.out / 'results.md'}, results.json{', compare.png' if report.results else ''}")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}")
        return 2
    return 0 if report.passed else 1
