"""The framework-free weights files of a run (docs/DESIGN.md section 8): what lets one framework
evaluate, verify and export a model the other trained.

    weights/step_<N>.npz   the model at checkpoint N, written atomically right after that
                           checkpoint; the steps kept are the checkpoints' (2)
    model.npz              the final model, written with the last checkpoint

Each is `sesemi_common.weights`' `.npz`: the PyTorch state dict of `SesemiNet` (every head,
BatchNorm running statistics) plus a metadata record: `framework` (which one trained it), `step`,
`variables` ("ema" with `train.eval_ema`, whose EMA variables are what evaluation uses and so
what is written; else "model"), `backbone`, `num_classes`, `heads`, `method`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .config import Config
from .runs import RunDir, RunDirError
from .weights import extra_heads, read_npz_with_metadata, write_npz

FINAL = "model.npz"
_STEP_FILE = re.compile(r"^step_(\d+)\.npz$")
_TORCH_CHECKPOINT = re.compile(r"^step_\d+\.pt$")


def folder(run: RunDir) -> Path:
    return run.path / "weights"


def step_file(run: RunDir, step: int) -> Path:
    return folder(run) / f"step_{step}.npz"


def final_file(run: RunDir) -> Path:
    return run.path / FINAL


def saved_steps(run: RunDir) -> list[int]:
    """Steps of the weights files in `weights/`, ascending."""
    if not folder(run).is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder(run).iterdir() if (m := _STEP_FILE.match(p.name)))


def metadata(framework: str, step: int, config: Config, state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {"framework": framework, "step": int(step), "variables": "ema" if config.train.eval_ema else "model",
            "backbone": config.model.backbone, "method": config.method.name,
            "num_classes": int(np.shape(state_dict["sup_head.linear.weight"])[0]),
            "heads": extra_heads(state_dict)}


def save(run: RunDir, step: int, state_dict: Mapping[str, np.ndarray], framework: str, config: Config) -> Path:
    """Write the weights file of checkpoint `step` (and `model.npz` at the last step); files of
    steps that are no longer checkpoints go, so `weights/` keeps what `checkpoints/` keeps."""
    folder(run).mkdir(parents=True, exist_ok=True)
    remove_orphan_temporaries(run)
    record = metadata(framework, step, config, state_dict)
    path = step_file(run, step)
    write_npz(state_dict, path, record)
    kept = set(run.checkpoint_steps()) | {step}
    for old in saved_steps(run):
        if old not in kept:
            step_file(run, old).unlink(missing_ok=True)
    if step == config.train.steps:
        write_npz(state_dict, final_file(run), record)
    return path


def remove_orphan_temporaries(run: RunDir) -> None:
    """Temporary files of weights writes a kill interrupted (files.atomic_write's `.<name>.<hex>.tmp`):
    the one process holding the run (run_lock.py) is the one writing, so none of them is in use."""
    for pattern, where in ((".step_*.npz.*.tmp", folder(run)), (f".{FINAL}.*.tmp", run.path)):
        for orphan in where.glob(pattern):
            orphan.unlink(missing_ok=True)


def trained_by(run: RunDir) -> str | None:
    """'jax' or 'torch': the summary says so once the run ends, the checkpoints' names before."""
    framework = run.read_summary().get("framework")
    if framework:
        return framework
    if not run.checkpoints.is_dir():
        return None
    names = [p.name for p in run.checkpoints.iterdir()]
    if any(_TORCH_CHECKPOINT.match(name) for name in names):
        return "torch"
    return "jax" if any(name.isdigit() for name in names) else None


def find(run: RunDir, step: int | None = None) -> Path | None:
    """The weights file to read: the one of checkpoint `step`; by default the final model, else the
    newest checkpoint's. None when there is none (a run written before runs had weights files)."""
    if step is not None:
        return step_file(run, step) if step_file(run, step).is_file() else None
    if final_file(run).is_file():
        return final_file(run)
    steps = saved_steps(run)
    return step_file(run, steps[-1]) if steps else None


def require(run: RunDir, step: int | None = None) -> Path:
    """`find`, or a RunDirError that says which steps there are."""
    path = find(run, step)
    if path is not None:
        return path
    steps = saved_steps(run)
    trainer = trained_by(run)
    if step is not None and step in run.checkpoint_steps() and trainer is not None:
        # A kill while this file was being written: the checkpoint is whole, the file never was.
        raise RunDirError(f"{run.path} has checkpoint {step} but no weights file of it: write it with "
                          f"`sesemi-{trainer} export {run.path} --checkpoint {step}`")
    if step is not None and steps:
        raise RunDirError(f"{run.path} keeps no weights of step {step}: its weights files are of steps "
                          f"{', '.join(map(str, steps))} (pass one of them to --checkpoint)")
    if trainer is None:
        raise RunDirError(f"{run.path} has no checkpoint yet: train it further with `--resume`")
    at = "" if step is None else f" --checkpoint {step}"
    raise RunDirError(f"{run.path} has no weights file{'' if step is None else f' of step {step}'}: write it from "
                      f"its checkpoint with `sesemi-{trainer} export {run.path}{at}`")


def read(path: Path, config: Config | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state dict, metadata) of a weights file; with the run's `config`, a file of another backbone
    (copied in from another run) is refused by name before any key is compared."""
    state_dict, record = read_npz_with_metadata(path)
    if config is not None and record.get("backbone", config.model.backbone) != config.model.backbone:
        raise RunDirError(f"{path} holds a {record['backbone']} and its run trains a {config.model.backbone}: "
                          "the weights file was copied from another run; use that run instead")
    return state_dict, record
