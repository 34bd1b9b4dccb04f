"""The framework-free half of a training loop: logging cadence, records, loss checks, progress.

Both trainers hand their per-step metrics (already on the host, fetched every `log_every`
steps) to `TrainingLog`, which checks that every loss is finite, writes one `metrics.jsonl`
record per logged step, hands the same scalars to the TensorBoard and W&B sinks
(logging_sinks.py), and drives the progress bar. It also draws the picture of the views
(view_grid.py) at step 0 and at every evaluation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from .config import Config, TrainConfig
from .logging_sinks import open_sinks, png_bytes, scalar_values
from .runs import RunDir
from .view_grid import view_grid


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint is kept."""


def first_non_finite(steps: Sequence[int], losses: Sequence[float]) -> int | None:
    for step, loss in zip(steps, losses):
        if not math.isfinite(loss):
            return step
    return None


_NO_CHECKPOINT = ("no checkpoint was written before it, so train again with a lower optim.lr (the unfinished "
                  "start in the run directory is replaced)")


def good_checkpoint_note(step: int, run_path) -> str:
    return (f"the last good checkpoint is step {step}: continue from it with a lower lr, "
            f"`train --run-dir {run_path} --resume optim.lr=<lower>`")


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
                  checkpoint_note: str = "") -> dict[str, Any]:
        """Check and record a window of steps; returns the record of the last one."""
        bad = first_non_finite(steps, [m["loss"] for m in metrics])
        if bad is not None:
            self.bar.close()
            raise NonFiniteLossError(
                f"loss became {metrics[steps.index(bad)]['loss']} at step {bad + 1}: lower optim.lr or check "
                f"the data; {checkpoint_note or _NO_CHECKPOINT}")
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

    def log_views(self, step: int, rows: Mapping[str, Any]) -> None:
        """The picture of `rows` ({row name: uint8 images}, view_grid.view_rows) at `step`: a PNG in
        views/ and an image in the sinks."""
        if not self.writer:
            return
        picture = view_grid(rows)
        self.run.write_views(step, png_bytes(picture))
        for sink in self.sinks:
            sink.image("views", step, picture)

    def close(self) -> None:
        self.bar.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def run_steps(log: TrainingLog, train: TrainConfig, steps: Iterable[tuple[int, Any]],
              step_fn: Callable[[int, Any], Any], fetch: Callable[[Any], dict[str, float]],
              evaluate: Callable[[], float], save: Callable[[int], None],
              saved_step: int | None,
              pictures: Callable[[int], Mapping[str, Any]] | None = None) -> tuple[dict[str, Any], float | None]:
    """The cadence both loops share: step, fetch and check metrics every `log_every` steps (and
    before every checkpoint, so a NaN is never saved), evaluate, checkpoint.
    `pictures(step)`, where given, returns the rows of the picture of the views
    (view_grid.view_rows), drawn at step 0 and at every evaluation (process 0 only).

    `steps` yields (step, batch); `step_fn(step, batch)` runs one step and returns its metrics,
    still on the device; `fetch` brings a list of them to the host as floats.
    Returns the last metrics record and the last test accuracy.
    """
    def picture(step: int) -> None:
        if pictures is not None and log.writer and train.view_images:
            log.log_views(step, pictures(step))

    buffer, last_record, last_accuracy = [], {}, None
    if log.start_step == 0:
        picture(0)
    for step, batch in steps:
        buffer.append((step, step_fn(step, batch)))
        done = step + 1
        at_end = done == train.steps
        if done % train.log_every == 0 or done % train.checkpoint_every == 0 or at_end:
            note = good_checkpoint_note(saved_step, log.run.path) if saved_step else ""
            host = fetch([metrics for _, metrics in buffer])
            last_record = log.log_steps([s for s, _ in buffer], host, checkpoint_note=note)
            buffer = []
        if done % train.eval_every == 0 or at_end:
            last_accuracy = evaluate()
            log.log_eval(done, last_accuracy)
            picture(done)
        if done % train.checkpoint_every == 0 or at_end:
            save(done)
            saved_step = done
    return last_record, last_accuracy


def summary(framework: str, method: str, config: Config, n_labels: int, class_names: Sequence[str],
            last_record: dict, last_accuracy: float | None, wall_time_s: float, device: str) -> dict[str, Any]:
    return {"framework": framework, "method": method, "backbone": config.model.backbone,
            "dataset": config.data.dataset, "steps": config.train.steps, "n_labels": n_labels,
            "final_test_accuracy": last_accuracy, "final_loss": last_record.get("loss"),
            "wall_time_s": wall_time_s, "device": device, "class_names": list(class_names)}
