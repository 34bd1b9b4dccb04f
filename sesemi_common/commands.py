"""The `train | eval | predict` command line shared by `sesemi-jax` and `sesemi-torch`.

Both CLIs take the same options and config file; only the `Backend` (how to train, and how
to turn a run directory into a classifier) differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .config import Config, ConfigError, apply_overrides
from .datasets import DatasetError, load_dataset, read_images
from .progress import NonFiniteLossError
from .runs import RunDir

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC images -> supervised logits


class Backend(Protocol):
    name: str
    user_errors: tuple[type[Exception], ...]  # raised on bad input; the CLI prints them as one line

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict: ...

    def classifier(self, run: RunDir, config: Config, num_classes: int) -> Classifier: ...


def build_parser(prog: str, train_options: Callable[[argparse.ArgumentParser], None] | None = None):
    parser = argparse.ArgumentParser(prog=prog, description="SESEMI semi-supervised training")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model into a run directory")
    train.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=0.1 train.steps=500")
    train.add_argument("--config", help="JSON config file (defaults apply to what it leaves out)")
    train.add_argument("--run-dir", default="runs/latest", help="where config, split, metrics, checkpoints go")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir where it stopped")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    if train_options:
        train_options(train)
    evaluate = commands.add_parser("eval", help="test accuracy of a run's latest checkpoint")
    evaluate.add_argument("run_dir")
    predict = commands.add_parser("predict", help="classify image files or folders, write a CSV")
    predict.add_argument("run_dir")
    predict.add_argument("inputs", nargs="+", help="image files or folders of images")
    predict.add_argument("--out", default="predictions.csv")
    return parser


def _config(args) -> Config:
    if args.resume:
        saved = RunDir(args.run_dir).read_config()
        return apply_overrides(saved, args.overrides) if args.overrides else saved
    base = Config.load(args.config) if args.config else Config()
    return apply_overrides(base, args.overrides)


def _evaluate(backend: Backend, run_dir: str) -> dict:
    run = RunDir(run_dir)
    config = run.read_config()
    dataset = load_dataset(config.data)
    classify = backend.classifier(run, config, len(dataset.class_names))
    predictions = classify(dataset.test_images).argmax(-1)
    return {"run_dir": str(run.path), "framework": backend.name,
            "test_accuracy": float(np.mean(predictions == dataset.test_labels)), "test_images": len(predictions)}


def _predict(backend: Backend, run_dir: str, inputs: Sequence[str], out: str) -> int:
    run = RunDir(run_dir)
    config = run.read_config()
    class_names = run.read_summary().get("class_names") or load_dataset(config.data).class_names
    paths, images = read_images([Path(p) for p in inputs], config.data.image_size)
    logits = backend.classifier(run, config, len(class_names))(images)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "class_name", "probability"])
        for path, p in zip(paths, probs):
            writer.writerow([str(path), int(p.argmax()), class_names[int(p.argmax())], f"{p.max():.6f}"])
    return len(paths)


def main(backend: Backend, argv: Sequence[str] | None = None,
         train_options: Callable[[argparse.ArgumentParser], None] | None = None,
         fit_options: Callable[[argparse.Namespace], dict] | None = None) -> int:
    args = build_parser(f"sesemi-{backend.name}", train_options).parse_args(argv)
    try:
        if args.command == "train":
            options = fit_options(args) if fit_options else {}
            summary = backend.fit(_config(args), Path(args.run_dir), args.resume,
                                  show_progress=not args.no_progress, **options)
            print(json.dumps(summary, indent=2))
        elif args.command == "eval":
            print(json.dumps(_evaluate(backend, args.run_dir), indent=2))
        else:
            count = _predict(backend, args.run_dir, args.inputs, args.out)
            print(f"wrote {count} predictions to {args.out}")
    except (ConfigError, DatasetError, FileNotFoundError, NonFiniteLossError, *backend.user_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
