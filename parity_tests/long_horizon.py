"""Float64 lockstep of K training steps, JAX against PyTorch, and its bound (issue 12).

Shared by parity_tests/test_long_horizon.py (the default-suite rung) and
benchmarks/long_horizon_study.py (its false-alarm and planted-bug study).

Both frameworks start from the same weights (PyTorch's init, converted exactly: the values are
float32-representable) and eat the same numpy-drawn batches (`HostStream`), in float64. A
trajectory is one record per optimizer step: the loss and lr of that step, then every param and
BatchNorm running statistic after it, keyed by PyTorch state-dict names.

The bound on the JAX-PyTorch gap is measured, not guessed: PyTorch against itself with every
initial weight moved one float64 ulp (`nudged`) shows how fast a rounding-sized difference grows
over the horizon on this very problem; the JAX gap may exceed that growth by `MARGIN`, with
`FLOOR` as the smallest bound (see test_long_horizon.py for the measured numbers).

The framework calls live in `_torch_steps` and `_jax_steps` only, so a change of the step
signatures (methods plug-in redesign) is adapted here, in one place each.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch

from sesemi_common.config import Config, apply_overrides
from sesemi_common.methods import ema_decay
from sesemi_common import sampling
from sesemi_common.sampling import HostStream
from sesemi_common.stats import channel_stats
from sesemi_jax import convert as jax_convert
from sesemi_jax import methods as jax_methods
from sesemi_jax import models as jax_models
from sesemi_jax import optim as jax_optim
from sesemi_jax import train as jax_train
from sesemi_torch import methods as torch_methods
from sesemi_torch import models as torch_models
from sesemi_torch import optim as torch_optim
from sesemi_torch import train as torch_train
from sesemi_torch.data import SpecBatches, SpecSampler

NUM_CLASSES = 10
STEPS = 30
# 22 training images, 10 of them labeled: with batches of 6 labeled and 3 unlabeled both walks
# cross epoch boundaries mid-batch (10 and 22 are not multiples of 6 and 3), and 30 steps are
# 18 labeled and 4 unlabeled epochs.
N_TRAIN, N_LABELED, IMAGE_SIZE = 22, 10, 16
BASE = ["model.backbone=resnet20", "train.batch_labeled=6", "train.batch_unlabeled=3",
        "optim.warmup_steps=3"]
MARGIN = 1e3  # see test_long_horizon.py: chosen from the study's measurements
FLOOR = 1e-13  # relative; float64 rounding of one step is ~1e-16

Record = dict[str, np.ndarray]  # "loss", "lr" and the state dict after one step
Trajectory = list[Record]


@dataclass(frozen=True)
class Problem:
    config: Config
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray
    labeled: np.ndarray
    stream: Callable  # step -> BatchSpec, shared by both frameworks
    initial: dict[str, np.ndarray]  # float64 torch state dict, float32-representable values

    @property
    def steps(self) -> int:
        return self.config.train.steps


def make_problem(init_seed: int = 0, data_seed: int = 0, stream_seed: int = 5, steps: int = STEPS,
                 overrides=()) -> Problem:
    config = apply_overrides(Config(), [*BASE, f"train.steps={steps}", *overrides])
    rng = np.random.default_rng(data_seed)
    images = rng.integers(0, 256, (N_TRAIN, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.arange(N_TRAIN) % NUM_CLASSES
    labeled = np.sort(rng.choice(N_TRAIN, N_LABELED, replace=False))
    stream = HostStream.for_config(labeled, N_TRAIN, config, seed=stream_seed)
    torch.manual_seed(init_seed)
    model = torch_models.make_model(config.model.backbone, NUM_CLASSES, torch_methods.load(config).spec.heads)
    initial = {k: v.numpy().astype(np.float64) if v.is_floating_point() else v.numpy().copy()
               for k, v in model.state_dict().items()}
    return Problem(config, images, labels, labeled, stream, initial)


def nudged(state_dict: dict[str, np.ndarray], direction: str = "up", seed: int = 0) -> dict[str, np.ndarray]:
    """Every float entry moved one float64 ulp: "up", "down", or "random" (each entry up or down,
    or left alone, with equal chance): a perturbation at rounding level."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in state_dict.items():
        if not np.issubdtype(value.dtype, np.floating):
            out[key] = value.copy()
            continue
        step = {"up": np.ones(value.shape), "down": -np.ones(value.shape),
                "random": rng.integers(-1, 2, value.shape).astype(np.float64)}[direction]
        moved = np.nextafter(value, np.where(step > 0, np.inf, -np.inf))
        out[key] = np.where(step == 0, value, moved)
    return out


def _record(metrics: dict, state_dict: dict[str, np.ndarray]) -> Record:
    return {"loss": np.float64(metrics["loss"]), "lr": np.float64(metrics["lr"]), **state_dict}


def _torch_steps(problem: Problem, initial: dict[str, np.ndarray], before_training=None) -> Trajectory:
    """PyTorch in float64 through `sesemi_torch.train.train_step`; `before_training(model,
    optimizer, scheduler)` may plant a bug."""
    config = problem.config
    method = torch_methods.load(config)
    model = torch_models.make_model(config.model.backbone, NUM_CLASSES, method.spec.heads).to(torch.float64)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in initial.items()})
    ema = torch_train.make_ema(model, config)  # None unless the config keeps an EMA
    optimizer = torch_optim.make_optimizer(model, config.optim)
    scheduler = torch_optim.make_scheduler(optimizer, config.optim, problem.steps)
    if before_training is not None:
        before_training(model, optimizer, scheduler)
    mean, std = (torch.from_numpy(a) for a in channel_stats(problem.images))
    batches = SpecBatches(problem.images, problem.labels)
    trajectory = []
    for step in range(problem.steps):
        lr = optimizer.param_groups[0]["lr"]  # the metric is a float32 tensor; this is what the step uses
        metrics = torch_train.train_step(model, optimizer, scheduler, batches[problem.stream(step)], step,
                                         method, config, mean, std, ema=ema)
        state = _torch_state(model)
        if ema is not None:
            state.update({f"ema.{k}": v for k, v in _torch_state(ema.module).items()})
        trajectory.append(_record({**metrics, "lr": lr}, state))
    return trajectory


def _torch_state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _state_dict_float64(variables: dict) -> dict[str, np.ndarray]:
    """`jax_convert.state_dict_from_variables` without its float32 cast (it would round away
    the 1e-16 differences this rung measures); same table, same layouts."""
    table, _ = jax_convert._table(variables)
    out = {}
    for key, (collection, path, layout) in table.items():
        leaf = variables[collection]
        for name in path:
            leaf = leaf[name]
        out[key] = jax_convert._TO_TORCH[layout](np.asarray(leaf, np.float64))
    return out


def _jax_steps(problem: Problem) -> Trajectory:
    """JAX in float64 through `sesemi_jax.train.train_step_on_spec`, jitted once."""
    config, backbone = problem.config, problem.config.model.backbone
    with jax.enable_x64(True):
        method = jax_methods.load(config)
        model = jax_models.make_model(backbone, NUM_CLASSES, method.spec.heads)
        variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64),
                                           jax_convert.variables_from_state_dict(problem.initial, backbone))
        tx = jax_optim.make_optimizer(config.optim, problem.steps)
        state = jax_train.create_state(model, variables, tx, config.train.seed, ema_decay(config))
        mean, std = channel_stats(problem.images)
        data = jax_train.device_data(problem.images, problem.labels, problem.labeled, mean, std)
        schedule = jax_optim.lr_schedule(config.optim, problem.steps)
        step_fn = jax.jit(partial(jax_train.train_step_on_spec, method=method, config=config, schedule=schedule))
        trajectory = []
        for step in range(problem.steps):
            spec = jax.tree_util.tree_map(np.asarray, problem.stream(step))
            state, metrics = step_fn(state, data, spec)
            record = _state_dict_float64(jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))
            if state.ema:
                record.update({f"ema.{k}": v for k, v in _state_dict_float64(jax.device_get(state.ema)).items()})
            trajectory.append(_record(metrics, record))
    return trajectory


def torch_trajectory(problem: Problem, initial: dict[str, np.ndarray] | None = None,
                     before_training=None) -> Trajectory:
    return _torch_steps(problem, problem.initial if initial is None else initial, before_training)


def jax_trajectory(problem: Problem) -> Trajectory:
    return _jax_steps(problem)


def relative_gap(a: Record, b: Record) -> tuple[float, str]:
    """(largest gap, its key): per entry of the record max|a - b| over the scale of the whole
    tensor, max(|a|, |b|) (an element that passes near 0 keeps the rounding of its tensor's scale;
    an lr of 0 against one that is not gives 1, not infinity)."""
    worst, worst_key = 0.0, ""
    for key, expected in b.items():
        actual = np.asarray(a[key], np.float64)
        scale = max(float(np.max(np.abs(expected))), float(np.max(np.abs(actual))), np.finfo(np.float64).tiny)
        gap = float(np.max(np.abs(actual - expected))) / scale
        if gap > worst or not worst_key:
            worst, worst_key = gap, key
    return worst, worst_key


@dataclass(frozen=True)
class StepVerdict:
    step: int
    gap: float  # JAX against PyTorch
    noise: float  # PyTorch nudged against PyTorch
    bound: float
    key: str  # where the gap is largest

    @property
    def ratio(self) -> float:
        return self.gap / self.bound


def compare(candidate: Trajectory, reference: Trajectory, nudged_reference: Trajectory,
            margin: float = MARGIN, floor: float = FLOOR) -> list[StepVerdict]:
    """Per step: the candidate's gap to the reference, against margin * max(noise, floor)."""
    assert len(candidate) == len(reference) == len(nudged_reference)
    verdicts = []
    for step, (c, r, n) in enumerate(zip(candidate, reference, nudged_reference)):
        assert c.keys() == r.keys() == n.keys(), set(c) ^ set(r)
        gap, key = relative_gap(c, r)
        noise, _ = relative_gap(n, r)
        verdicts.append(StepVerdict(step, gap, noise, margin * max(noise, floor), key))
    return verdicts


def worst(verdicts: list[StepVerdict]) -> StepVerdict:
    return max(verdicts, key=lambda v: v.ratio)


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """On this shared 2-core box torch's 2 intra-op threads wait for each other at every op of
    these tiny float64 steps: one thread ran the 30 steps in 4 s, two in 27-58 s."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ---- Samplers over several epochs (check c) --------------------------------------------------
# Each sampler as `step -> (labeled indices, unlabeled indices)`, all three on the same pools.

def host_sampler(problem: Problem) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    return lambda step: (problem.stream(step).labeled, problem.stream(step).unlabeled)


def torch_sampler(problem: Problem, start_step: int = 0) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    sampler = SpecSampler(problem.labeled, len(problem.images), problem.config, start_step=start_step)
    return lambda step: (sampler.spec(step).labeled, sampler.spec(step).unlabeled)


def jax_sampler(problem: Problem, seed: int = 0) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    mean, std = channel_stats(problem.images)
    data = jax_train.device_data(problem.images, problem.labels, problem.labeled, mean, std)
    sample = jax.jit(partial(jax_train.sample_spec, config=problem.config, method=jax_methods.load(problem.config)))
    key = jax.random.PRNGKey(seed)

    def indices(step: int):
        spec = sample(key, np.int32(step), data)
        return np.asarray(spec.labeled), np.asarray(spec.unlabeled)
    return indices


def epoch_walk_errors(batches: list[np.ndarray], pool: np.ndarray) -> list[str]:
    """What is wrong with consecutive batches as a walk through epochs of `pool`: read one
    after the other, every full epoch (len(pool) items) must be a permutation of the pool, and
    consecutive epochs different permutations. A batch that crosses a boundary takes the tail
    of one epoch and the head of the next, so it is checked by both epochs."""
    walk = np.concatenate(batches)
    size, errors = len(pool), []
    epochs = [walk[start:start + size] for start in range(0, len(walk) - size + 1, size)]
    for number, epoch in enumerate(epochs):
        if not np.array_equal(np.sort(epoch), np.sort(pool)):
            values, counts = np.unique(epoch, return_counts=True)
            errors.append(f"epoch {number} is not a permutation of the pool (repeats {values[counts > 1].tolist()})")
    for number in range(1, len(epochs)):
        if np.array_equal(epochs[number], epochs[number - 1]):
            errors.append(f"epoch {number} repeats epoch {number - 1}'s order")
    return errors


def sampler_errors(sampler: Callable[[int], tuple[np.ndarray, np.ndarray]], problem: Problem,
                   steps: int) -> list[str]:
    labeled, unlabeled = zip(*(sampler(step) for step in range(steps)))
    return ([f"labeled: {e}" for e in epoch_walk_errors(list(labeled), problem.labeled)]
            + [f"unlabeled: {e}" for e in epoch_walk_errors(list(unlabeled), np.arange(len(problem.images)))])


# ---- Planted bugs: each must make its check fail ----------------------------------------------
# PyTorch-side plants are `before_training(model, optimizer, scheduler)` hooks (cheap: no JAX
# compile, so the default suite runs them); JAX-side plants are context managers that patch
# sesemi_jax for the length of one run (the study runs them).

def plant_torch_schedule_one_step_ahead(model, optimizer, scheduler):
    with warnings.catch_warnings():  # torch warns about exactly this misuse
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()  # update k now uses schedule(k + 1)


def plant_torch_bn_momentum(model, optimizer, scheduler):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.2  # flax 0.8 instead of 0.9


@contextlib.contextmanager
def plant_jax_schedule_one_step_ahead() -> Iterator[None]:
    schedule = jax_optim.lr_schedule
    shifted = lambda cfg, total: (lambda count: schedule(cfg, total)(count + 1))  # noqa: E731
    with mock.patch.object(jax_optim, "lr_schedule", shifted):
        yield


class _BatchNormMomentum08(jax_models.BatchNorm):
    momentum: float = 0.8


class _BatchNormBiasedRunningVar(jax_models.BatchNorm):
    """`jax_models.BatchNorm` with the running variance fed the biased batch variance (flax.linen's
    own convention) instead of torch's unbiased one."""

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            mean, var = self._batch_stats(x)
            if not self.is_initializing():
                keep = self.momentum
                running_mean.value = keep * running_mean.value + (1.0 - keep) * mean
                running_var.value = keep * running_var.value + (1.0 - keep) * var  # the plant: no n / (n - 1)
        alpha = jax.lax.rsqrt(var + self.epsilon) * scale
        return x * alpha + (bias - mean * alpha)


@contextlib.contextmanager
def plant_jax_batchnorm(replacement) -> Iterator[None]:
    with mock.patch.object(jax_models, "BatchNorm", replacement):
        yield


def plant_jax_bn_momentum():
    return plant_jax_batchnorm(_BatchNormMomentum08)


def plant_jax_biased_running_var():
    return plant_jax_batchnorm(_BatchNormBiasedRunningVar)


@contextlib.contextmanager
def plant_host_stream_off_by_one() -> Iterator[None]:
    """HostStream reads one position further along its walk than the spec says."""
    def shifted(step, batch, pool):
        flat = step * batch + np.arange(batch, dtype=np.int64) + 1
        return flat // pool, flat % pool
    with mock.patch.object(sampling, "epoch_positions", shifted):
        yield


@contextlib.contextmanager
def plant_jax_sampler_no_epoch_crossing() -> Iterator[None]:
    """The JAX walk takes a whole batch from the permutation of the epoch it starts in."""
    def one_permutation(key, step, batch, pool):
        flat = step * batch + jax.numpy.arange(batch)
        return jax.random.permutation(jax.random.fold_in(key, (step * batch) // pool), pool)[flat % pool]
    with mock.patch.object(jax_train, "_epoch_batch", one_permutation):
        yield


@contextlib.contextmanager
def plant_torch_ema_decay(decay: float) -> Iterator[None]:
    """The PyTorch EMA averages with another decay than the config says."""
    real = torch_train.make_ema
    with mock.patch.object(torch_train, "make_ema",
                           lambda model, config: real(model, apply_overrides(config, [f"train.ema_decay={decay}"]))):
        yield
