"""The framework-free half of a training loop: logging cadence, records, loss checks, progress.

Both trainers hand their per-step metrics (already on the host, fetched every `log_every`
steps) to `TrainingLog`, which checks that every loss is finite, writes one `metrics.jsonl`
record per logged step, and drives the progress bar.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from .config import Config, TrainConfig
from .runs import RunDir


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
    """`writer=False` (every process of a multi-process run but process 0): the same checks and
    records, but no progress bar and nothing appended to the run's metrics."""

    def __init__(self, run: RunDir, total_steps: int, start_step: int, images_per_step: int,
                 steps_per_epoch: float, show_progress: bool = True, writer: bool = True):
        self.run = run
        self.writer = writer
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
        if self.writer:
            self.run.append_metrics(record)
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{speed:.0f}")
        return record

    def log_eval(self, step: int, accuracy: float) -> dict[str, Any]:
        record = {"step": step, "epoch": step / self.steps_per_epoch, "test_accuracy": accuracy}
        if self.writer:
            self.run.append_metrics(record)
            self.bar.write(f"step {step}: test accuracy {accuracy:.4f}")
        self._clock = time.perf_counter()  # evaluation time is not training speed
        return record

    def close(self) -> None:
        self.bar.close()


def run_steps(log: TrainingLog, train: TrainConfig, steps: Iterable[tuple[int, Any]],
              step_fn: Callable[[int, Any], Any], fetch: Callable[[Any], dict[str, float]],
              evaluate: Callable[[], float], save: Callable[[int], None],
              saved_step: int | None) -> tuple[dict[str, Any], float | None]:
    """The cadence both loops share: step, fetch and check metrics every `log_every` steps (and
    before every checkpoint, so a NaN is never saved), evaluate, checkpoint.

    `steps` yields (step, batch); `step_fn(step, batch)` runs one step and returns its metrics,
    still on the device; `fetch` brings a list of them to the host as floats.
    Returns the last metrics record and the last test accuracy.
    """
    buffer, last_record, last_accuracy = [], {}, None
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
