"""The `train | eval | predict | export` command line shared by `sesemi-jax` and `sesemi-torch`.

Both CLIs take the same options and config file; only the `Backend` (how to train, how to turn
a state dict into a classifier, how to read its own checkpoints) differs. `eval` and `predict`
read the run's framework-free weights file (sesemi_common/run_weights.py), so either CLI works on
a run of either framework. Every user error ends as one line on
stderr and exit code 2; Ctrl-C ends as one line saying where the run stopped, exit 130.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from . import resize, run_lock, run_weights, tta
from .config import Config, ConfigError, apply_overrides, replace_dotted, resume_changes
from .datasets import DatasetError, load_dataset, read_images
from .distributed import Process
from .experiment import check_new_run
from .progress import NonFiniteLossError
from .runs import CheckpointError, RunDir, RunDirError, note, to_json
from .splits import SplitError
from .weights import WeightsError, write_npz

# uint8 NHWC images -> (N, K) scores whose argmax is the prediction: the supervised logits, or with
# eval.tta=8 each image's softmax averaged over its 8 test-time views (sesemi_common/tta.py).
Classifier = Callable[[np.ndarray], np.ndarray]
class NonFiniteOutputError(RuntimeError):
    """The model gives NaN or infinite logits (a diverged run): nothing it predicts means anything."""


USER_ERRORS = (ConfigError, DatasetError, SplitError, RunDirError, CheckpointError, FileNotFoundError,
               NonFiniteLossError, WeightsError, run_lock.RunInUseError, NonFiniteOutputError)
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


class Backend(Protocol):
    name: str
    user_errors: tuple[type[Exception], ...]  # raised on bad input; the CLI prints them as one line

    def fit(self, config: Config, run_dir: Path, resume: bool, **options) -> dict: ...

    def classifier(self, state_dict: dict[str, np.ndarray], source: str, config: Config, mean: np.ndarray,
                   std: np.ndarray, zca: tuple[np.ndarray, np.ndarray] | None) -> Classifier:
        """Scores (`Classifier`, by `config.eval.tta`) of the SesemiNet with this PyTorch-named state dict
        (from `source`), inputs normalized per channel by `mean`/`std`, or by GCN + ZCA with `zca` (mean, matrix)."""

    def checkpoint_state_dict(self, run: RunDir, config: Config, num_classes: int,
                              step: int | None) -> tuple[dict, int]:
        """(state dict of what evaluation uses, its step) from one of this framework's checkpoints."""


def build_parser(prog: str, train_options: Callable[[argparse.ArgumentParser], None] | None = None):
    parser = argparse.ArgumentParser(prog=prog, description="SESEMI semi-supervised training")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model into a run directory")
    train.add_argument("overrides", nargs="*", help="config overrides, e.g. optim.lr=0.1 train.steps=500")
    train.add_argument("--config", help="JSON config file or a preset name (defaults apply to what it leaves out)")
    train.add_argument("--run-dir", default="runs/latest", help="where config, split, metrics, checkpoints go")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir where it stopped (overrides may change optim.lr "
                            "and the log/eval/checkpoint cadence)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run in --run-dir, even one with checkpoints or a summary")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    if train_options:
        train_options(train)
    evaluate = commands.add_parser("eval", help="test accuracy of a run's model (a run of either framework)")
    evaluate.add_argument("run_dir")
    predict = commands.add_parser("predict", help="classify image files or folders, write a CSV")
    predict.add_argument("run_dir")
    predict.add_argument("inputs", nargs="+", help="image files or folders of images")
    predict.add_argument("--out", default="predictions.csv")
    export = commands.add_parser("export", help="write a run's framework-free weights file from its checkpoint")
    export.add_argument("run_dir")
    export.add_argument("--to", help="where to write the .npz (default: the run's weights/step_<N>.npz)")
    for command in (evaluate, predict, export):
        command.add_argument("--checkpoint", type=int, metavar="STEP",
                             help="the model of this kept checkpoint (default: the final model, else the newest)")
    for command in (evaluate, predict):
        command.add_argument("--tta", type=int, metavar="VIEWS",
                             help="test-time views per image: 1, or 8 as in the paper (default: the run's eval.tta)")
    return parser


def parse_intermixed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse `COMMAND ...` so that positionals may follow options (`train --run-dir R x.y=1 --no-progress
    a.b=2`). argparse cannot intermix through subparsers, so the command's own parser does it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in subcommands:
        return parser.parse_args(argv)  # help, or a usage error that lists the commands
    args = subcommands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def _resume_config(args, run: RunDir) -> Config:
    if args.config:
        raise ConfigError(f"--resume continues with {run.path / 'config.json'}, so --config {args.config} would be "
                          "ignored: drop it, and pass what may change as overrides (e.g. optim.lr=0.01)")
    run.require_run("nothing to resume; train without --resume to start a run there")
    saved = run.read_config()
    config = apply_overrides(saved, args.overrides)
    resume_changes(saved, config)  # refuses a key that cannot change before anything runs
    return config


def _train(backend: Backend, args, options: dict, process: Process = Process(),
           synchronize: Callable[[], None] = lambda: None) -> int:
    """With several processes every one runs this: each reads the run directory, `synchronize`
    waits until all have, and only then does process 0 change it (and alone print). A backend that
    learns its process only when it joins the others (JAX: in `fit_options`) passes it in `options`."""
    process = options.get("process", process)
    run = RunDir(args.run_dir)
    run.check_folder()
    say = note if process.writer else (lambda text: None)
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues the run in --run-dir and --overwrite replaces it: pass one of them")
    if args.resume:  # before the lock, which would create the folder
        run.require_run("nothing to resume; train without --resume to start a run there")
    # Process 0 holds the run directory from before it reads its state until the command ends, so
    # a second trainer is refused before it reads, clears or appends anything (run_lock.py).
    lock = run_lock.acquire(run.path, f"sesemi-{backend.name} {' '.join(sys.argv[1:])}") if process.writer else None
    try:
        config = _resume_config(args, run) if args.resume else None
        return _train_holding(backend, args, options, process, synchronize, run, config, say)
    finally:
        if lock is not None:
            lock.release()


def _train_holding(backend: Backend, args, options: dict, process: Process, synchronize: Callable[[], None],
                   run: RunDir, config: Config | None, say: Callable[[str], None]) -> int:
    def fit(config: Config, resume: bool) -> dict:
        return backend.fit(config, run.path, resume, show_progress=not args.no_progress, **options)

    if args.resume:
        state = run.state()
        synchronize()
        if state == "finished":
            # Exit 0: the run a --resume asks for is complete, so a script that resumes whatever
            # stopped (a preempted job array) succeeds; the summary is printed as a train would.
            say(f"note: {run.path} is finished: nothing to resume, its summary.json is left as it was")
            if process.writer:
                print(to_json(run.read_summary(), indent=2))
            return 0
        if state == "unfinished":
            say(f"note: {run.path} has no checkpoint yet: training from step 0 with its saved config")
            if process.writer:
                run.clear()
            summary = fit(config, False)
        else:
            summary = fit(config, True)
    else:
        config = apply_overrides(Config.load(args.config) if args.config else Config(), args.overrides)
        replacing = args.overwrite and run.has_run()
        synchronize()
        if replacing:
            # The old run goes only once the new one is known to start: a typo must not cost a result.
            dataset = load_dataset(config.data)
            check_new_run(config, dataset)
            say(f"note: replacing the run in {run.path} (--overwrite)")
            if process.writer:
                run.clear()
            options = {**options, "dataset": dataset}
        summary = fit(config, False)
    if process.writer:
        print(to_json(summary, indent=2))
    return 0


def run_to_read(run_dir: str, prog: str) -> RunDir:
    """The run of `eval`, `predict` or `export`: it must exist and hold a checkpoint."""
    run = RunDir(run_dir)
    run.require_run(f"pass the folder given to `{prog} train --run-dir`")
    if not run.checkpoint_steps() and not run_weights.find(run):
        every = run.read_config().train.checkpoint_every
        raise RunDirError(f"{run.path} has no checkpoint yet (its training stopped before step {every}): "
                          f"train it with `{prog} train --run-dir {run.path} --resume`")
    return run


def _num_classes(run: RunDir, config: Config) -> int:
    return len(run.read_summary().get("class_names") or load_dataset(config.data).class_names)


def load_classifier(backend: Backend, run: RunDir, config: Config, step: int | None = None
                    ) -> tuple[Classifier, dict]:
    """The run's model as a classifier in `backend`'s framework, and where it came from (the
    weights file's metadata: which framework trained it, step, EMA or not)."""
    path = run_weights.find(run, step)
    if path is None and run_weights.trained_by(run) == backend.name and not run_weights.saved_steps(run):
        # A run written before runs had weights files: its own framework reads the checkpoint.
        state_dict, saved_step = backend.checkpoint_state_dict(run, config, _num_classes(run, config), step)
        source = f"checkpoint {saved_step} of {run.path}"
        info = run_weights.metadata(backend.name, saved_step, config, state_dict)
    else:
        path = run_weights.require(run, step)
        state_dict, info = run_weights.read(path, config)
        source = f"weights file {path}"
    split = run.read_split()
    zca = (split["zca_mean"], split["zca_matrix"]) if config.augment.normalize == "zca" else None
    classify = finite_scores(backend.classifier(state_dict, source, config, split["mean"], split["std"], zca),
                             run, info.get("step"), source)
    return classify, {"trained_by": info.get("framework", run_weights.trained_by(run)), "step": info.get("step"),
                      "variables": info.get("variables", "model"), "weights": source}


def finite_scores(classify: Classifier, run: RunDir, step: int | None, source: str) -> Classifier:
    """`classify`, refusing to score a model whose outputs are not all finite: the argmax of NaN
    logits is class 0, which would read as an accuracy of about 1 / classes."""
    def checked(images: np.ndarray) -> np.ndarray:
        scores = classify(images)
        bad = int(np.sum(~np.isfinite(scores).all(axis=-1)))
        if bad:
            kept = [s for s in run_weights.saved_steps(run) if step is None or s < step]
            other = (f"evaluate an earlier one (--checkpoint {kept[-1]})" if kept else "no earlier weights are kept")
            raise NonFiniteOutputError(
                f"the model of step {step} ({source}) gives non-finite logits for {bad} of {len(scores)} images: "
                f"it diverged, so it is not scored; {other}, or train again with a lower optim.lr")
        return scores
    return checked


def _read_config(run: RunDir, views: int | None) -> Config:
    """The run's config, with `--tta` (when given) in place of its eval.tta."""
    config = run.read_config()
    return config if views is None else replace_dotted(config, {"eval.tta": views})


def _evaluate(backend: Backend, run_dir: str, step: int | None, views: int | None = None) -> dict:
    run = run_to_read(run_dir, f"sesemi-{backend.name}")
    config = _read_config(run, views)
    dataset = load_dataset(config.data)
    classify, origin = load_classifier(backend, run, config, step)
    predictions = classify(dataset.test_images).argmax(-1)
    return {"run_dir": str(run.path), "framework": backend.name, **origin, "tta": config.eval.tta,
            "test_accuracy": float(np.mean(predictions == dataset.test_labels)), "test_images": len(predictions)}


def _predict(backend: Backend, run_dir: str, inputs: Sequence[str], out: str, step: int | None,
             views: int | None = None) -> int:
    """Writes each image's predicted class and its probability: the softmax of the logits, or with
    eval.tta=8 the average of the 8 views' softmax (whose argmax is the predicted class)."""
    run = run_to_read(run_dir, f"sesemi-{backend.name}")
    config = _read_config(run, views)
    class_names = run.read_summary().get("class_names") or load_dataset(config.data).class_names
    paths, images = read_images([Path(p) for p in inputs], config.data.image_size, resize.labeled_policy(config.data))
    classify, origin = load_classifier(backend, run, config, step)
    note(f"note: the model of step {origin['step']}, trained by {origin['trained_by']} ({origin['weights']})")
    probs = tta.class_probabilities(classify(images), config.eval.tta)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "class_name", "probability"])
        for path, p in zip(paths, probs):
            writer.writerow([str(path), int(p.argmax()), class_names[int(p.argmax())], f"{p.max():.6f}"])
    return len(paths)


def _export(backend: Backend, run_dir: str, to: str | None, step: int | None) -> Path:
    """The weights file of one of the run's checkpoints (the newest that loads by default), read
    with the framework that trained it: for a run written before runs had weights files, or a copy."""
    prog = f"sesemi-{backend.name}"
    run = run_to_read(run_dir, prog)
    trainer = run_weights.trained_by(run)
    if trainer != backend.name:
        raise RunDirError(f"{run.path} was trained by {trainer}, so {prog} cannot read its checkpoints: "
                          f"run `sesemi-{trainer} export {run.path}`")
    config = run.read_config()
    state_dict, saved_step = backend.checkpoint_state_dict(run, config, _num_classes(run, config), step)
    if to is None:
        return run_weights.save(run, saved_step, state_dict, backend.name, config)
    write_npz(state_dict, to, run_weights.metadata(backend.name, saved_step, config, state_dict))
    return Path(to)


# What to do about the file-system errors a user can fix, by errno (anything else stays a traceback: a bug).
_FILE_SYSTEM_ADVICE = {
    errno.EROFS: "the file system is read-only: use a folder on a writable one",
    errno.ENOSPC: "the disk is full: free space there and run the command again",
    errno.EDQUOT: "the disk quota is used up: free space there and run the command again",
    errno.EACCES: "permission denied: use a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted: use a folder you may write to, or fix its permissions",
}
FILE_SYSTEM_FAILED = 1  # not exit 2: the command was right, the file system refused it


def file_system_error(err: BaseException | None) -> OSError | None:
    """The OSError a user can fix behind `err`, also when a library raised another error while
    handling it (torch.save on a full disk raises a RuntimeError from the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FILE_SYSTEM_ADVICE:
            return err
        err = err.__cause__ or err.__context__
    return None


def file_system_message(err: OSError, args=None, prog: str = "") -> str:
    """One line: what failed, where, what to do; for `train`, where the run stands and how to go on."""
    train = args is not None and getattr(args, "command", "") == "train"
    where = f" at {err.filename}" if err.filename else (f" writing in {args.run_dir}" if train else "")
    line = f"error: {err.strerror}{where}: {_FILE_SYSTEM_ADVICE[err.errno]}"
    if train:
        run = RunDir(args.run_dir)
        steps = run.checkpoint_steps() if run.path.is_dir() else []
        if steps and err.errno in (errno.ENOSPC, errno.EDQUOT):
            line += (f"; {run.path} keeps its checkpoint of step {steps[-1]}: continue with "
                     f"`{prog} train --run-dir {run.path} --resume`")
    return line


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, `kill`): stops `train` as Ctrl-C does, at the same place."""


TERMINATED = 143  # the shell's code for a command ended by SIGTERM


@contextlib.contextmanager
def terminated_as_interrupt():
    """SIGTERM raises Terminated in the main thread while the block runs, so a terminated `train`
    says where it stopped and how to resume, as Ctrl-C does (the default SIGTERM ends it silently)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_message(args, prog: str) -> str:
    """Where a run stopped by Ctrl-C stands, and the command that continues it."""
    if args.command != "train":
        return f"interrupted: {prog} {args.command} stopped; nothing was changed"
    run = RunDir(args.run_dir)
    steps = run.checkpoint_steps() if run.path.is_dir() else []
    if steps:
        return (f"interrupted: {run.path} stopped; its last checkpoint is step {steps[-1]}: continue with "
                f"`{prog} train --run-dir {run.path} --resume`")
    return (f"interrupted before the first checkpoint: nothing to resume in {run.path}; run the same command "
            "again to start over")


def main(backend: Backend, argv: Sequence[str] | None = None,
         train_options: Callable[[argparse.ArgumentParser], None] | None = None,
         fit_options: Callable[[argparse.Namespace], dict] | None = None,
         process: Process = Process(), synchronize: Callable[[], None] = lambda: None) -> int:
    """`process` and `synchronize` (a barrier across processes): for `train` in one of several
    processes (see `_train`)."""
    prog = f"sesemi-{backend.name}"
    args = parse_intermixed(build_parser(prog, train_options), argv)
    try:
        if args.command == "train":
            with terminated_as_interrupt():
                return _train(backend, args, fit_options(args) if fit_options else {}, process, synchronize)
        if args.command == "eval":
            print(to_json(_evaluate(backend, args.run_dir, args.checkpoint, args.tta), indent=2))
        elif args.command == "export":
            print(f"wrote {_export(backend, args.run_dir, args.to, args.checkpoint)}")
        else:
            count = _predict(backend, args.run_dir, args.inputs, args.out, args.checkpoint, args.tta)
            print(f"wrote {count} predictions to {args.out}")
    except (*USER_ERRORS, *backend.user_errors) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        message = interrupted_message(args, prog)
        print(message.replace("interrupted", "terminated (SIGTERM)", 1) if terminated else message, file=sys.stderr)
        return TERMINATED if terminated else INTERRUPTED
    except Exception as err:
        failed = file_system_error(err)
        if failed is None:
            raise
        print(file_system_message(failed, args, prog), file=sys.stderr)
        return FILE_SYSTEM_FAILED
    return 0
