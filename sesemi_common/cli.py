"""`sesemi report RUN_DIR...`, `sesemi verify RUN_DIR`, `sesemi export RUN_DIR --to PATH`, `sesemi compare` and `sesemi demo`.

The frameworks are imported only by the commands that need them, so `sesemi report` works
with neither installed."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from . import compare_command
from . import verify as verification
from .commands import (FILE_SYSTEM_FAILED, INTERRUPTED, USER_ERRORS, file_system_error, file_system_message,
                       parse_intermixed)
from .config import Config, apply_overrides, preset_path
from .export import ExportError, export
from .report import markdown_table, plot_runs, sesemi_effect
from .runs import RunDirError

# The demo's settings are the `demo` preset (sesemi_common/presets/demo.json): small enough that
# SESEMI and the baseline train in both frameworks in about 2 minutes on 2 cores.
DEMO_PRESET = preset_path("demo")
FRAMEWORKS = {"jax": "sesemi_jax.loop", "torch": "sesemi_torch.loop"}
# What each framework's extra installs (pyproject.toml), by import name.
FRAMEWORK_PACKAGES = {"jax": ("jax", "flax", "optax", "orbax"), "torch": ("torch", "torchvision")}


class MissingDependency(RuntimeError):
    """A package the command needs is not installed; the message names the pip command."""


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def installed_frameworks() -> list[str]:
    """Frameworks whose extra is fully installed; a partial one is refused rather than skipped."""
    found = []
    for name, packages in FRAMEWORK_PACKAGES.items():
        missing = [p for p in packages if not _installed(p)]
        if len(missing) < len(packages) and missing:
            raise MissingDependency(f"{name} is installed but {', '.join(missing)} "
                                    f"{'is' if len(missing) == 1 else 'are'} not: pip install 'sesemi[{name}]'")
        if not missing:
            found.append(name)
    return found


def check_plotting() -> None:
    if not _installed("matplotlib"):
        raise MissingDependency("the report's curves need matplotlib, which is not installed: pip install matplotlib")


def check_out_path(out: Path) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise MissingDependency(f"--out {out}: folder {folder} does not exist: create it or choose another path")


def demo(out_dir: Path, overrides: Sequence[str] = ()) -> Path:
    # Every check before the first step: a missing package must not surface after minutes of training.
    frameworks = installed_frameworks()
    if not frameworks:
        raise MissingDependency("neither jax nor torch is installed: pip install 'sesemi[jax]' or 'sesemi[torch]'")
    check_plotting()
    base = apply_overrides(Config.load(DEMO_PRESET), overrides)
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
    effect = sesemi_effect(run_dirs)
    if effect:
        print(effect)
    png = plot_runs(run_dirs, out_dir / "report.png")
    print(f"curves: {png}")
    if len(frameworks) == len(FRAMEWORKS):  # the first run, trained in JAX, evaluated in both
        print(f"== verify {run_dirs[0]}: its model in both frameworks on the test set", flush=True)
        print(verification.table(verification.verify(run_dirs[0])))
    return png


def check_both_frameworks(command: str) -> None:
    missing = [name for name in FRAMEWORKS if name not in installed_frameworks()]
    if missing:
        raise MissingDependency(f"{command} runs the model in both frameworks and {missing[0]} is not installed: "
                                f"pip install 'sesemi[{missing[0]}]'")


def verify(run_dir: str, step: int | None) -> int:
    """Print the verdict as one table; exit 1 when the frameworks disagree beyond the tolerance."""
    check_both_frameworks("sesemi verify")
    result = verification.evaluate(run_dir, step)
    print(verification.table(result), flush=True)  # the verdict first: a write that fails must not hide it
    verification.write(result)
    print(f"wrote {Path(run_dir) / 'verify.json'} ({result['wall_time_s']:.1f} s)")
    if not result["passed"]:
        print(f"error: the frameworks disagree beyond the tolerance (|logit diff| <= {result['rtol']:g} x "
              f"max(1, max|logit|) = {result['bound']:.2e}; labels equal except near-ties): see verify.json",
              file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sesemi", description="compare runs; run the demo")
    commands = parser.add_subparsers(dest="command", required=True)
    report_parser = commands.add_parser("report", help="curves of several runs in one PNG, and a Markdown table")
    report_parser.add_argument("run_dirs", nargs="+")
    report_parser.add_argument("--out", default="report.png")
    verify_parser = commands.add_parser("verify", help="evaluate a run's model in both frameworks and compare")
    verify_parser.add_argument("run_dir")
    verify_parser.add_argument("--checkpoint", type=int, metavar="STEP", help="a kept checkpoint instead of the final model")
    export_parser = commands.add_parser("export", help="a run's model as a PyTorch state dict (torch.save)")
    export_parser.add_argument("run_dir")
    export_parser.add_argument("--to", required=True, help="the .pth file to write")
    export_parser.add_argument("--torchvision", action="store_true",
                               help="a plain torchvision resnet18/resnet50 state dict (fc = the supervised head)")
    export_parser.add_argument("--checkpoint", type=int, metavar="STEP", help="a kept checkpoint instead of the final model")
    demo_parser = commands.add_parser("demo", help="SESEMI against the supervised baseline on digits")
    demo_parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. train.steps=100")
    demo_parser.add_argument("--out-dir", default="runs/demo")
    compare_command.add_parser(commands)
    args = parse_intermixed(parser, argv)
    try:
        if args.command == "report":
            report(args.run_dirs, Path(args.out))
        elif args.command == "verify":
            return verify(args.run_dir, args.checkpoint)
        elif args.command == "compare":
            check_plotting()
            return compare_command.run(args, installed_frameworks())
        elif args.command == "export":
            if not _installed("torch"):
                raise MissingDependency("sesemi export writes a torch.save file and torch is not installed: "
                                        "pip install 'sesemi[torch]'")
            written = export(args.run_dir, args.to, args.torchvision, args.checkpoint)
            print(f"wrote {written['to']}: {written['format']} state dict, {written['num_classes']} classes, "
                  f"step {written['step']} trained by {written['trained_by']} (from {written['weights']})")
        else:
            started = time.perf_counter()
            demo(Path(args.out_dir), args.overrides)
            print(f"demo took {time.perf_counter() - started:.0f} s")
    except (MissingDependency, ExportError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:
        failed = file_system_error(err)
        if failed is None:
            raise
        print(file_system_message(failed), file=sys.stderr)
        return FILE_SYSTEM_FAILED
    return 0


def report(run_dirs: Sequence[str], out: Path) -> None:
    check_plotting()
    check_out_path(out)
    missing = [d for d in run_dirs if not (Path(d) / "summary.json").is_file()]
    if missing:
        raise RunDirError(f"{missing[0]} has no summary.json: pass finished run directories")
    print(markdown_table(run_dirs))
    print(f"curves: {plot_runs(run_dirs, out)}")


if __name__ == "__main__":
    raise SystemExit(main())
