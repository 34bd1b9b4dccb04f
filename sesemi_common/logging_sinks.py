"""Where a run's metrics go besides `metrics.jsonl`: TensorBoard event files and Weights & Biases.

`metrics.jsonl` stays the record that `report`, `verify` and the studies read; these sinks are
for watching a run live. `TrainingLog` (progress.py) feeds every record it appends to
metrics.jsonl, and every picture of the views, to the sinks `open_sinks` returns; only
process 0 opens any. Both trainers share this one module, so a JAX run and a PyTorch run of
the same config write the same tags.

TensorBoard: the `tensorboard` package's own event writer, not tensorboardX: tensorboardX's
`SummaryWriter` imports torch whenever torch is installed (its module does `try: import torch`),
which would drag torch into the JAX trainer, while `tensorboard` imports neither torch nor
TensorFlow for writing. The same package reads the files back (EventAccumulator, the tests) and
serves them (`tensorboard --logdir runs`), so one extra dependency does all three.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from .config import Config
from .runs import RunDir, note

WANDB_ID_FILE = "wandb_id.txt"  # the W&B run id, so `--resume` continues the same W&B run
EVENT_FILE_PREFIX = "events.out.tfevents."


class Sink(Protocol):
    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...
    def image(self, tag: str, step: int, picture: np.ndarray) -> None: ...
    def close(self) -> None: ...


def scalar_values(record: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of a metrics.jsonl record under their own names: every number but `step`."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


def png_bytes(picture: np.ndarray) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(picture, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class TensorBoardSink:
    """Event files in the run directory itself, so `tensorboard --logdir runs` names each run by
    its folder. A resumed run opens a new file that begins with a SessionLog.START event at
    `start_step + 1`: TensorBoard then drops what the old files hold from that step on (the
    steps after the checkpoint that the killed run had logged, which metrics.jsonl dropped too),
    so the curve continues without duplicate or missing steps (tensorboardX's `purge_step`)."""

    def __init__(self, folder: Path, start_step: int):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self._event_pb2 = event_pb2
        # The start step in the name keeps two writers of one second and one process apart.
        self._writer = EventFileWriter(str(folder), flush_secs=10, filename_suffix=f".from_step_{start_step}")
        if start_step:
            self._writer.add_event(event_pb2.Event(
                wall_time=time.time(), step=start_step + 1,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
        self._add(step, summary)

    def image(self, tag: str, step: int, picture: np.ndarray) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        height, width, channels = picture.shape
        image = Summary.Image(height=height, width=width, colorspace=channels,
                              encoded_image_string=png_bytes(picture))
        self._add(step, Summary(value=[Summary.Value(tag=tag, image=image)]))

    def _add(self, step: int, summary) -> None:
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        self._writer.flush()  # a record per log_every steps: cheap, and a killed run loses nothing

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """A Weights & Biases run with the run's config as its config. Its id is saved in the run
    directory before `wandb.init`, so `--resume` continues the same W&B run. Steps the killed
    run had logged past its checkpoint are logged again with the same values (resuming is
    exact); W&B keeps the first of each."""

    def __init__(self, run: RunDir, project: str, config: Config):
        import wandb
        self._wandb = wandb
        id_file = run.path / WANDB_ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)  # W&B ids are short lowercase alphanumerics
            id_file.write_text(run_id + "\n")
        # wandb's own files go in the run directory, unless the user points WANDB_DIR elsewhere.
        self._run = wandb.init(project=project, id=run_id, resume="allow", name=run.path.name,
                               dir=os.environ.get("WANDB_DIR") or str(run.path), config=config.to_dict())

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        self._run.log(dict(values), step=step)

    def image(self, tag: str, step: int, picture: np.ndarray) -> None:
        self._run.log({tag: self._wandb.Image(np.asarray(picture, np.uint8))}, step=step)

    def close(self) -> None:
        self._run.finish()


def tensorboard_available() -> bool:
    try:
        import tensorboard.summary.writer.event_file_writer  # noqa: F401
    except ImportError:
        return False
    return True


def open_sinks(run: RunDir, config: Config, start_step: int) -> list[Sink]:
    """The sinks `config` asks for, in the run directory (process 0 only calls this)."""
    sinks: list[Sink] = []
    if config.train.tensorboard:
        if tensorboard_available():
            sinks.append(TensorBoardSink(run.path, start_step))
        else:
            note("note: no TensorBoard event files (the tensorboard package is not installed: "
                 "pip install 'sesemi[tensorboard]'; train.tensorboard=false silences this)")
    if config.train.wandb:  # config.validate has refused it where wandb is not installed
        os.environ.setdefault("WANDB_SILENT", "true")  # its banner would break the progress bar
        sinks.append(WandbSink(run, config.train.wandb, config))
    return sinks


def event_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob(EVENT_FILE_PREFIX + "*") if p.is_file())
