"""The loop of both trainers' `fit` (sesemi_jax/loop.py, sesemi_torch/loop.py) around a fake step, so
the common tests drive the shared pieces (progress.cadence, TrainingLog, progress.checkpointing) as
the real loops do, without a model."""

from __future__ import annotations

from typing import Callable, Mapping

from sesemi_common import progress
from sesemi_common.config import TrainConfig
from sesemi_common.progress import TrainingLog


def fake_fit(log: TrainingLog, train: TrainConfig, steps: range, metrics: Callable[[int], Mapping[str, float]],
             save: Callable[[int], None] = lambda done: None, accuracy: float = 0.5,
             pictures: Callable[[int], Mapping] | None = None, latest_step: int | None = None):
    """Runs `steps`, step `s` giving `metrics(s)`; `save(done)` stands for the framework's save
    and `pictures` for its view_pictures.make_pictures. Returns the last record and accuracy."""
    saved = progress.fallbacks(latest_step)
    pending, last_record, last_accuracy = [], {}, None
    if log.start_step == 0 and train.view_images and pictures is not None:
        log.log_views(0, pictures)
    for step in steps:
        pending.append((step, metrics(step)))
        done = step + 1
        due = progress.cadence(done, train)
        if due.log:
            last_record = log.log_steps([s for s, _ in pending], [m for _, m in pending], saved)
            pending = []
        if due.evaluate:
            last_accuracy = accuracy
            log.log_eval(done, accuracy)
        if due.pictures and pictures is not None:
            log.log_views(done, pictures)
        if due.save:
            with progress.checkpointing(log, done, saved):
                save(done)
    return last_record, last_accuracy
