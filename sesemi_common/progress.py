"""The framework-free half of a training loop: cadence, records, loss checks, progress.

Each trainer's `fit` runs its own `for step ...` loop; after each step `cadence(done, train)`
says what is due. Metrics stay on the device between logs; fetched (every `log_every` steps and
before every checkpoint), they go to `TrainingLog`, which checks that every loss is finite,
writes one `metrics.jsonl` record per logged step, hands the same scalars to the TensorBoard and
W&B sinks (logging_sinks.py), and drives the progress bar. It also draws the picture of the views
(view_grid.py) at step 0 and at every evaluation. `checkpointing` turns a save refused for
non-finite weights into the message of a divergence.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from .config import Config, TrainConfig
from .logging_sinks import open_sinks, png_bytes, scalar_values
from .methods import images_per_step
from .runs import RunDir
from .view_grid import view_grid


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint is kept."""


class NonFiniteWeightsError(RuntimeError):
    """Raised by a framework's checkpoint save, before it writes anything, for weights that are not
    all finite: such a checkpoint would be kept as good and resumed from."""

    def __init__(self, step: int):
        super().__init__(f"the weights after step {step} are not all finite")
        self.step = step


def first_non_finite(steps: Sequence[int], losses: Sequence[float]) -> int | None:
    for step, loss in zip(steps, losses):
        if not math.isfinite(loss):
            return step
    return None


def good_checkpoint_note(step: int, run_path) -> str:
    return (f"the last good checkpoint is step {step}: continue from it with a lower lr, "
            f"`train --run-dir {run_path} --resume optim.lr=<lower>`")


def blamed_knob(config: Config | None) -> str:
    """What most likely made the run diverge, as advice. Coupled SGD weight decay multiplies the
    weights by (1 - lr x weight_decay) every step: from lr x weight_decay >= 1 on they flip sign
    and grow without bound, whatever the gradients do. That is blamed on the weight decay when the
    learning rate is an ordinary one (at most 1); otherwise the step size is."""
    if config is not None and config.optim.lr <= 1 and config.optim.lr * config.optim.weight_decay >= 1:
        product = config.optim.lr * config.optim.weight_decay
        return (f"optim.weight_decay={config.optim.weight_decay:g} with optim.lr={config.optim.lr:g} scales the "
                f"weights by 1 - {product:g} every step, so they grow without bound: start the run again "
                f"(--overwrite) with optim.weight_decay below {1 / config.optim.lr:g}")
    return "lower optim.lr or check the data"


def divergence_message(run: RunDir, what: str, bad: int, saved: Sequence[int], writer: bool) -> str:
    """One line for a run whose step `bad + 1` (0-based index `bad`, run from the weights after `bad`
    steps) gave a non-finite loss or non-finite weights. It names the cause where it can tell and the
    checkpoint that really is good: one whose weights are finite (checked before each save) and whose
    next step gave a finite loss and finite weights. A checkpoint of step `bad` is not, so process 0
    removes it (and its weights file) and `--resume` continues from the one before."""
    config = run.read_config() if run.has_run() else None
    cause = blamed_knob(config)
    removed = ""
    if bad in saved:
        if writer:
            run.remove_checkpoint(bad)
        removed = f" (checkpoint {bad}, whose weights gave it, is removed)"
    good = [step for step in saved if step < bad]
    if not good:
        where = ("no good checkpoint was written before it, so train again with the fix (the unfinished start in "
                 "the run directory is replaced)")
    elif cause.startswith("lower optim.lr"):
        where = good_checkpoint_note(good[-1], run.path)
    else:  # --resume cannot change the weight decay: every checkpoint of this run grows the same way
        return f"{what}{removed}: {cause}"
    return f"{what}{removed}: {cause}; {where}"


class TrainingLog:
    """`writer=False` (a training process other than process 0): the same checks, no progress bar,
    nothing written or printed. `config` (its train.tensorboard and train.wandb) opens the sinks
    beside metrics.jsonl; without it, metrics.jsonl alone is written."""

    def __init__(self, run: RunDir, total_steps: int, start_step: int, images_per_step: int,
                 steps_per_epoch: float, show_progress: bool = True, writer: bool = True,
                 config: Config | None = None):
        self.run = run
        self.writer = writer
        self.start_step = start_step
        self.sinks = open_sinks(run, config, start_step) if writer and config is not None else []
        self.images_per_step = images_per_step
        self.steps_per_epoch = steps_per_epoch
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not (show_progress and writer),
                        unit="step", dynamic_ncols=True)
        self._clock = time.perf_counter()
        self._clock_step = start_step

    def log_steps(self, steps: Sequence[int], metrics: Sequence[Mapping[str, float]],
                  saved: Sequence[int] = ()) -> dict[str, Any]:
        """Check and record a window of steps; returns the record of the last one. `saved`: the
        steps of the run's checkpoints, for the message of a loss that is not finite."""
        bad = first_non_finite(steps, [m["loss"] for m in metrics])
        if bad is not None:
            self.bar.close()
            raise NonFiniteLossError(divergence_message(
                self.run, f"loss became {metrics[steps.index(bad)]['loss']} at step {bad + 1}", bad, saved,
                self.writer))
        now = time.perf_counter()
        done = steps[-1] + 1
        speed = (done - self._clock_step) * self.images_per_step / max(now - self._clock, 1e-9)
        self._clock, self._clock_step = now, done
        record = {"step": done, "epoch": done / self.steps_per_epoch,
                  **{k: float(v) for k, v in metrics[-1].items()}, "images_per_s": speed}
        self._record(record)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{speed:.0f}")
        return record

    def log_eval(self, step: int, accuracy: float) -> dict[str, Any]:
        record = {"step": step, "epoch": step / self.steps_per_epoch, "test_accuracy": accuracy}
        self._record(record)
        if self.writer:
            self.bar.write(f"step {step}: test accuracy {accuracy:.4f}")
        self._clock = time.perf_counter()  # evaluation time is not training speed
        return record

    def _record(self, record: Mapping[str, Any]) -> None:
        if not self.writer:
            return
        self.run.append_metrics(record)
        for sink in self.sinks:
            sink.scalars(record["step"], scalar_values(record))

    def log_views(self, step: int, pictures: Callable[[int], Mapping[str, Any]]) -> None:
        """The picture of `pictures(step)` ({row name: uint8 images}, view_grid.view_rows; each
        framework's view_pictures.make_pictures) at `step`: a PNG in views/ and an image in the
        sinks. Drawn by the writer alone."""
        if not self.writer:
            return
        picture = view_grid(pictures(step))
        self.run.write_views(step, png_bytes(picture))
        for sink in self.sinks:
            sink.image("views", step, picture)

    def close(self) -> None:
        self.bar.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []


@dataclass(frozen=True)
class Due:
    """What is due once a step is done (`cadence`)."""
    log: bool  # fetch the pending steps' metrics to the host, check their losses, record them
    evaluate: bool  # the test accuracy
    pictures: bool  # the picture of the views, drawn at every evaluation
    save: bool  # a checkpoint and its weights file


def cadence(done: int, train: TrainConfig) -> Due:
    """What is due after `done` steps. Metrics are fetched every `log_every` steps, and also before
    every checkpoint, so a NaN is caught before it is saved; the last step logs, evaluates and
    saves whatever the intervals."""
    at_end = done == train.steps
    save = done % train.checkpoint_every == 0 or at_end
    evaluate = done % train.eval_every == 0 or at_end
    return Due(log=save or done % train.log_every == 0, evaluate=evaluate,
               pictures=evaluate and train.view_images > 0, save=save)


def fallbacks(latest_step: int | None) -> list[int]:
    """The checkpoints a divergence may fall back to when the loop starts: the run's newest, if any.
    The loop appends each one it saves (`checkpointing`)."""
    return [latest_step] if latest_step else []


@contextmanager
def checkpointing(log: TrainingLog, done: int, saved: list[int]) -> Iterator[None]:
    """Around the save of the checkpoint after `done` steps. A framework's save refuses weights that are
    not all finite (NonFiniteWeightsError, before it writes anything): the run stops there with the
    message of a divergence. A save that succeeds joins `saved`."""
    try:
        yield
    except NonFiniteWeightsError:
        log.close()
        # Step `done` ran from the weights of checkpoint done - 1 and made them non-finite: that
        # checkpoint is no way on (its gradients overflow whatever the lr).
        raise NonFiniteLossError(divergence_message(log.run, f"the weights became non-finite at step {done}",
                                                    done - 1, saved, log.writer)) from None
    saved.append(done)


def training_seconds(metrics: list[dict], images: int) -> float:
    """The run's time in training steps, summed over its logged windows (steps since the previous
    record / its images_per_s), evaluations and checkpoints left out. Unlike wall_time_s,
    which is the last call's (a resumed run's is the time since its resume), it covers every
    call; a step logged twice (a window run again after a stop) counts once."""
    windows = {m["step"]: m["images_per_s"] for m in metrics if "images_per_s" in m}
    total, previous = 0.0, 0
    for step in sorted(windows):
        total += (step - previous) * images / windows[step]
        previous = step
    return total


def summary(framework: str, method: str, config: Config, n_labels: int, class_names: Sequence[str],
            last_record: dict, last_accuracy: float | None, wall_time_s: float, device: str,
            run: RunDir) -> dict[str, Any]:
    """The run's summary.json. wall_time_s is this call's time (a resumed run's since its resume);
    training_s sums the training windows of every call, read from the run's metrics."""
    return {"framework": framework, "method": method, "backbone": config.model.backbone,
            "dataset": config.data.dataset, "steps": config.train.steps, "n_labels": n_labels,
            "final_test_accuracy": last_accuracy, "final_loss": last_record.get("loss"),
            "wall_time_s": wall_time_s,
            "training_s": training_seconds(run.read_metrics(), images_per_step(config)),
            "device": device, "class_names": list(class_names)}
