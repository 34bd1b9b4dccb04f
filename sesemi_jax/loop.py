"""The JAX training loop: runs the jitted step, logs, evaluates, checkpoints, resumes.

The loop is the only place that talks to the host: it fetches the buffered metrics every
`log_every` steps, and before each checkpoint, so a NaN is caught before it is saved.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from sesemi_common.config import Config
from sesemi_common.distributed import Process
from sesemi_common.experiment import Experiment, prepare
from sesemi_common import pretrained, progress
from sesemi_common.methods import ema_decay, images_per_step
from sesemi_common.progress import TrainingLog
from sesemi_common.runs import note
from sesemi_common.sampling import BatchSpec

from . import checkpoints, convert, distributed, methods, placement, run_weights, tta, view_pictures
from .convert import WeightsError
from .models import init_variables, make_model
from .optim import lr_schedule, make_optimizer
from .train import TrainState, batch_mesh, check_divisible, create_state, device_data, jit_train_steps


def _fetch(metrics: list[dict]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in m.items()} for m in jax.device_get(metrics)]


def load_pretrained(variables: dict, path: str, backbone: str) -> dict:
    """The backbone from a torchvision state dict in its torch-free `.npz` form, or from a run's
    `model.npz` (either framework's); `torchvision:resnet18` names torchvision's ImageNet weights,
    read from the `.npz` that `python -m sesemi_torch.convert torchvision:resnet18` wrote."""
    if pretrained.is_torchvision(path):
        npz = pretrained.npz_path(pretrained.check(path, backbone))
        if not npz.is_file():
            raise WeightsError(pretrained.missing_npz_message(path))
        return convert.load_torchvision_weights(variables, npz, backbone)
    if path.endswith((".pth", ".pt")):
        raise WeightsError(f"model.weights={path} is a PyTorch file, which sesemi_jax cannot read: convert it "
                           f"with `python -m sesemi_torch.convert {path} OUT.npz` and pass OUT.npz (a .pth written "
                           "by `sesemi export`: pass the run's model.npz instead)")
    return convert.load_backbone_weights(variables, path, backbone)


def _initial_state(exp: Experiment, model, tx, initial_variables: dict | None) -> TrainState:
    config = exp.config
    if initial_variables is None:
        key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 1)
        initial_variables = init_variables(model, key, exp.dataset.train_images.shape[1])
        if config.model.weights:
            initial_variables = load_pretrained(initial_variables, config.model.weights, config.model.backbone)
    return create_state(model, initial_variables, tx, config.train.seed, ema_decay(config),
                        methods.initial_state(config, exp.num_classes, len(exp.training.pool)))


def eval_variables(state: TrainState, config: Config) -> dict:
    """The variables evaluation uses: the EMA's with `train.eval_ema`, else the model's."""
    if config.train.eval_ema:
        return state.ema
    return {"params": state.params, "batch_stats": state.batch_stats}


def _start_state(exp: Experiment, model, config: Config, mesh, initial_variables: dict | None,
                 resume: bool, writer: bool) -> TrainState:
    """The state the loop starts from: new, or the run's checkpoint with `resume` (whose later
    metrics records are dropped: the steps after it run again)."""
    state = _initial_state(exp, model, make_optimizer(config.optim, config.train.steps), initial_variables)
    # On the devices the step's outputs live on (so step 2 does not compile the step again), and
    # the shape orbax restores a multi-process state into.
    state = distributed.replicated(state, mesh)
    if resume:
        state = checkpoints.restore(exp.run.checkpoints, state)
        if writer:
            exp.run.truncate_metrics(int(state.step))
    return state


def _training_batches(exp: Experiment, config: Config, method, state: TrainState, mesh,
                      stream: Callable[[int], BatchSpec] | None, writer: bool, input_waits: list[float]):
    """(step, batch) for each step still to run, and the jitted step `train_step(state, *batch)`.
    A lockstep stream (parity) feeds the device path; data.placement decides the rest
    (docs/placement.md). On the device path `batch` is (the whole data set,) or, with `stream`,
    (it, the step's spec); on the host path (this step's gathered images, their renumbered spec),
    gathered a few steps ahead from the memory map, each wait appended to `input_waits`. The
    iterator's `close()` stops the prefetch thread."""
    own_step, spec_step = jit_train_steps(method, config, lr_schedule(config.optim, config.train.steps), mesh)
    steps = range(int(state.step), config.train.steps)
    where = "device" if stream is not None else placement.choose(config, exp.training.images.nbytes, writer)
    if where == "host":
        host = placement.host_batches(exp, config, method, state.rng, mesh)
        return placement.prefetched(host, steps, waits=input_waits), spec_step
    data = device_data(exp.training.images, exp.training.labels, exp.labeled, exp.mean, exp.std, exp.zca,
                       exp.training.pool)
    data = distributed.replicated(data, mesh)
    if stream is None:
        return ((step, (data,)) for step in steps), own_step
    return ((step, (data, jax.tree_util.tree_map(np.asarray, stream(step)))) for step in steps), spec_step


def _save(exp: Experiment, done: int, state: TrainState, config: Config, writer: bool) -> None:
    checkpoints.save(exp.run.checkpoints, done, state)  # every process: orbax coordinates them
    if writer:
        run_weights.save(exp.run, done, eval_variables(state, config), config)


def fit(config: Config, run_dir: str | Path, *, resume: bool = False, dataset=None,
        initial_variables: dict | None = None, stream: Callable[[int], BatchSpec] | None = None,
        show_progress: bool = True, process: Process | None = None) -> dict:
    """Train `config` into `run_dir` and return the summary.

    `initial_variables` (Flax variables) replaces the random init, e.g. weights converted
    from PyTorch; `stream(step) -> BatchSpec` replaces the on-device sampling so another
    framework can be fed the very same batches (lockstep parity). In a run of several
    processes (`distributed.initialize`) every process calls `fit` alike; `process` (default:
    JAX's own) says which one this is, and only process 0 writes the run directory.
    """
    process = process or distributed.current_process()
    method = methods.load(config)
    mesh = batch_mesh()
    check_divisible(config, mesh)  # before prepare: a refused run leaves no directory
    # Between the barriers process 0 alone touches the run directory: the others have read
    # what they needed of it before, and read what it wrote after.
    distributed.sync("sesemi: run directory read")
    exp = prepare(config, run_dir, resume=resume, dataset=dataset, process=process)
    distributed.sync("sesemi: run directory prepared")
    model = make_model(config.model.backbone, exp.num_classes, method.spec.heads, config.model.dropout,
                       config.train.precision)
    state = _start_state(exp, model, config, mesh, initial_variables, resume, process.writer)
    input_waits: list[float] = []  # host placement: seconds each step waited for its gathered images
    batches, train_step = _training_batches(exp, config, method, state, mesh, stream, process.writer, input_waits)
    # Evaluation stays float32 whatever train.precision (as in PyTorch, where autocast covers
    # the train step only): the accuracy logged is that of the float32 weights the run saves,
    # which `eval`, `verify` and the other framework compute from model.npz.
    predict_scores = tta.make_predict_scores(model.clone(dtype=None), config, exp.mean, exp.std, exp.zca, mesh)
    pictures = view_pictures.make_pictures(method, config, exp.dataset.train_images, exp.labeled)
    log = TrainingLog(exp.run, config.train.steps, int(state.step), images_per_step(config),
                      exp.steps_per_epoch, show_progress, writer=process.writer, config=config)
    saved = progress.fallbacks(checkpoints.latest_step(exp.run.checkpoints))
    pending, last_record, last_accuracy = [], {}, None  # pending: (step, its metrics still on the devices)
    started = time.perf_counter()
    try:
        if log.start_step == 0 and config.train.view_images:
            log.log_views(0, pictures)
        for step, batch in batches:
            state, metrics = train_step(state, *batch)
            pending.append((step, metrics))
            done = step + 1
            due = progress.cadence(done, config.train)
            if due.log:  # the loop's only host sync
                last_record = log.log_steps([s for s, _ in pending], _fetch([m for _, m in pending]), saved)
                pending = []
            if due.evaluate:
                scores = predict_scores(eval_variables(state, config), exp.dataset.test_images)
                last_accuracy = float(np.mean(scores.argmax(-1) == exp.dataset.test_labels))
                log.log_eval(done, last_accuracy)
            if due.pictures:
                log.log_views(done, pictures)
            if due.save:
                with progress.checkpointing(log, done, saved):
                    _save(exp, done, state, config, process.writer)
    finally:
        batches.close()  # host placement: stops the prefetch thread
        log.close()
    if input_waits and process.writer:  # the first step's wait includes starting the prefetch
        note(f"data.placement=host: input wait {sum(input_waits[1:]):.2f} s over {len(input_waits) - 1} steps "
             f"(longest {max(input_waits[1:], default=0.0):.3f} s), plus {input_waits[0]:.2f} s before the first")
    summary = progress.summary("jax", method.spec.name, config, len(exp.labeled), exp.dataset.class_names,
                               last_record, last_accuracy,
                               time.perf_counter() - started, jax.devices()[0].platform, exp.run)
    if process.writer:
        exp.run.write_summary(summary)
    return summary
