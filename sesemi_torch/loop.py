"""The PyTorch training loop: loader, step, logging, evaluation, checkpoints, resume.

Twin of sesemi_jax/loop.py; both write the same run directory.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from sesemi_common.config import Config, ConfigError
from sesemi_common.experiment import prepare
from sesemi_common import progress
from sesemi_common.methods import images_per_step
from sesemi_common.progress import TrainingLog
from sesemi_common.sampling import BatchSpec

from . import checkpoints, convert, distributed, methods, run_weights, transforms, tta, view_pictures
from .data import SpecSampler, to_device
from .mmap_data import training_loader
from .models import make_model
from .optim import make_optimizer, make_scheduler
from .train import make_ema, train_step


def _fetch(metrics: list[dict]) -> list[dict[str, float]]:
    """The metrics of a window of steps as floats, averaged over the processes: means of equal
    chunks, so the global batch's (but a ratio of two counts, e.g. FixMatch's
    kept_pseudo_label_accuracy, becomes the mean of the chunks' ratios)."""
    if not metrics:
        return []
    names = list(metrics[0])
    table = torch.stack([torch.stack([m[k].detach().double().cpu() for k in names]) for m in metrics])
    table = distributed.mean_over_processes(table)
    return [dict(zip(names, row.tolist())) for row in table]


def resolve_device(name: str) -> torch.device:
    """`name` as a torch device, refusing one this machine lacks (rather than failing mid-run)."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device {name!r} is not a torch device: use cpu, cuda or cuda:N ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: torch sees no CUDA GPU on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def check_compiler() -> None:
    """Refuses --compile up front, rather than at the first step deep in a traceback, where
    torch.compile's inductor has no C++ compiler (its default, or $CXX) to build kernels with."""
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise ConfigError(f"--compile needs a C++ compiler for torch.compile, and {compiler!r} is not on PATH: "
                          "install g++ (or set CXX), or train without --compile")


@dataclass
class TrainState:
    """What a checkpoint holds besides the step and torch's random state (the twin of JAX's
    TrainState): the model, its optimizer, schedule and EMA, and the method's state."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    method_state: dict[str, torch.Tensor]

    def eval_model(self, config: Config) -> torch.nn.Module:
        """The model evaluation and the weights files use: the EMA's with `train.eval_ema`."""
        return self.ema.module if config.train.eval_ema else self.model


def _initial_state(config: Config, exp, method, device: torch.device, process, channels_last: bool,
                   initial_state_dict: dict | None) -> TrainState:
    torch.manual_seed(config.train.seed)
    model = make_model(config.model.backbone, exp.num_classes, method.spec.heads, config.model.dropout)
    if initial_state_dict is not None:
        model.load_state_dict(initial_state_dict)
    elif config.model.weights:
        convert.load_backbone_weights(model, config.model.weights)
    model = distributed.global_model(model, device, process).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optim)
    return TrainState(model, optimizer, make_scheduler(optimizer, config.optim, config.train.steps),
                      make_ema(model, config), methods.initial_state(config, exp.num_classes, device,
                                                                 len(exp.training.pool)))


def _restore(state: TrainState, exp, device: torch.device, writer: bool) -> int:
    """Loads the run's checkpoint into `state` and torch's random state (every process does);
    returns its step. Metrics records after it are dropped: those steps run again."""
    saved = checkpoints.restore(exp.run.checkpoints)
    state.model.load_state_dict(saved["model"])
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if state.method_state:  # a checkpoint of a method with state holds it (exactly: tensors, not floats)
        state.method_state.update({k: v.to(device) for k, v in saved["method_state"].items()})
    torch.set_rng_state(saved["torch_rng"])
    if writer:
        exp.run.truncate_metrics(saved["step"])
    return saved["step"]


def _save(exp, done: int, state: TrainState, config: Config) -> None:
    """The checkpoint (on the CPU, so a run resumes on any device) and the weights file after `done` steps."""
    checkpoints.save(exp.run.checkpoints, done, {
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "step": done,
        **({"ema": state.ema.state_dict()} if state.ema is not None else {}),
        **({"method_state": {k: v.cpu() for k, v in state.method_state.items()}} if state.method_state else {})})
    run_weights.save(exp.run, done, state.eval_model(config), config)


def _test_accuracy(model: torch.nn.Module, exp, config: Config, mean: torch.Tensor, std: torch.Tensor,
                   device: torch.device, zca) -> float:
    # Float32 whatever train.precision: autocast covers the train step only (as in JAX).
    scores = tta.predict_scores(model, exp.dataset.test_images, config, mean, std, device, zca)
    return float(np.mean(scores.argmax(-1) == exp.dataset.test_labels))


def fit(config: Config, run_dir: str | Path, *, resume: bool = False, dataset=None,
        initial_state_dict: dict | None = None, stream: Callable[[int], BatchSpec] | None = None,
        show_progress: bool = True, channels_last: bool = False, device: str = "cpu",
        compile_model: bool = False) -> dict:
    """Train `config` into `run_dir` and return the summary.

    `initial_state_dict` replaces the random init (e.g. weights shared with JAX); `stream`,
    `stream(step) -> BatchSpec`, replaces the torch-drawn batches (lockstep parity). `device`
    holds the model, optimizer state and each step's batch; the loader, its random streams and
    the checkpoints stay on the CPU, so a run resumes on any device. `compile_model` runs the
    train step's forwards through `torch.compile`; checkpoints, weights files and evaluation
    use the model itself, so their names carry no `_orig_mod.` prefix.

    In one of several processes (`torchrun`, see `distributed`), every process runs this with the
    same arguments: each trains on its chunk of every batch, process 0 alone evaluates and writes.
    """
    process = distributed.current()
    distributed.check_divisible(config, process)  # before prepare: a refused run leaves no directory
    if compile_model:
        check_compiler()
    device = resolve_device(distributed.local_device(device, process))
    with distributed.together(process, "preparing the run"):
        exp = prepare(config, run_dir, resume=resume, dataset=dataset, process=process)
    method = methods.load(config)
    state = _initial_state(config, exp, method, device, process, channels_last, initial_state_dict)
    start = _restore(state, exp, device, process.writer) if resume else 0
    trained = distributed.wrap(state.model, device, process)
    net = torch.compile(trained) if compile_model else trained  # shares the model's parameters and buffers
    mean, std = torch.from_numpy(exp.mean).to(device), torch.from_numpy(exp.std).to(device)
    zca = transforms.zca_tensors(exp.zca, device)
    specs = SpecSampler(exp.labeled, exp.training.pool, config, start) if stream is None \
        else [stream(step) for step in range(start, config.train.steps)]
    loader = training_loader(exp, config, specs, process)  # data.placement: in RAM or memory-mapped
    pictures = view_pictures.make_pictures(method, config, exp.dataset.train_images, exp.labeled)
    log = TrainingLog(exp.run, config.train.steps, start, images_per_step(config), exp.steps_per_epoch,
                      show_progress, writer=process.writer, config=config)
    saved = progress.fallbacks(checkpoints.latest_step(exp.run.checkpoints))
    pending, last_record, last_accuracy = [], {}, None  # pending: (step, its metrics still on the device)
    started = time.perf_counter()
    try:
        with distributed.peer_failures(process):
            if start == 0 and config.train.view_images:
                log.log_views(0, pictures)
            for step, batch in enumerate(loader, start=start):
                metrics = train_step(net, state.optimizer, state.scheduler, to_device(batch, device), step, method,
                                     config, mean, std, channels_last, state.ema, zca, process, state.method_state)
                pending.append((step, metrics))
                done = step + 1
                due = progress.cadence(done, config.train)
                if due.log:  # the loop's only host sync (and, in several processes, a collective)
                    last_record = log.log_steps([s for s, _ in pending], _fetch([m for _, m in pending]), saved)
                    pending = []
                if due.evaluate:  # process 0 alone: the others go on to their next step and wait there
                    last_accuracy = _test_accuracy(state.eval_model(config), exp, config, mean, std, device, zca) \
                        if process.writer else None
                    log.log_eval(done, last_accuracy)
                if due.pictures:
                    log.log_views(done, pictures)
                if due.save:
                    with progress.checkpointing(log, done, saved):
                        if process.writer:
                            _save(exp, done, state, config)
    finally:
        log.close()
    summary = progress.summary("torch", method.spec.name, config, len(exp.labeled), exp.dataset.class_names,
                               last_record, last_accuracy,
                               time.perf_counter() - started, str(device), exp.run)
    if process.writer:
        exp.run.write_summary(summary)
    return summary

