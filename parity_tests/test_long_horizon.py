"""Rung "long horizon" (issue 12): what only shows over many steps, checked deterministically.

It replaces the lockstep accuracy-curve test (now benchmarks/lockstep.py), which compared
float32 runs whose gap is amplified rounding and so failed by chance on a fresh machine.

(a) Float64 lockstep, 30 steps: ResNet-20 on 22 random 16x16 images (10 labeled), 6 labeled +
3 unlabeled x 6 views per step, 3 warm-up steps then poly decay, one numpy `HostStream` and one
set of initial weights (PyTorch's, converted) for both frameworks. At every step the loss, every
param and every BatchNorm running statistic is compared (parity_tests/long_horizon.py).

(b) The bound is measured in the same run: PyTorch against itself with every initial weight one
float64 ulp up. That gap grows from 2.8e-15 after step 1 to 7e-14 after step 30 (relative to
each tensor's scale); JAX's gap to PyTorch follows it (3e-15 to 9.5e-14). JAX passes while its
gap stays below MARGIN = 1e3 times that growth, floored at FLOOR = 1e-13, i.e. 1e-10 over this
horizon. Over 24 runs of benchmarks/long_horizon_study.py (8 init seeds, 24 data and stream
seeds, ulp up, down or random) JAX's gap was at most 8.4 times the one-ulp growth: ratio
gap/bound at most 8.4e-3 (median 1.2e-3). The weakest planted bug (running variance without
n/(n-1)) gave 7.3e7, the lr schedule one step ahead 1.9e10, BatchNorm momentum 0.8 6.6e9
(docs/parity.md, "Long horizon"). Clean runs sit 2 orders of magnitude below the bound and plants 7 or
more above it, so neither outcome depends on luck. In float32 no such bound exists (ReLU inputs
within rounding of 0 flip sides; docs/results/index.md, "CIFAR-10, lockstep"); in float64 no kink is crossed
over 30 steps.

Finding on the way: the JAX lr schedule computed in float32 even under x64, which alone moved
the float64 run by 5e-8 relative a step, then jumped at step 12 (a kink crossed) to 1e-1 at step 30;
sesemi_jax/optim.py now computes it in JAX's default float (float32 normally).

The same lockstep runs Mean Teacher (EMA of params and BatchNorm statistics, teacher branch
through it, decay 0.9) with the EMA in the record, and checks the EMA against its closed form.

(c) What a lockstep cannot see: the lr schedule at every step of the horizon against the closed
form (docs/DESIGN.md section 5), and the three samplers over several epochs.
"""

import dataclasses
import math

import jax
import numpy as np
import pytest
import torch

from parity_tests import long_horizon as lh
from sesemi_common.config import OptimConfig
from sesemi_jax import optim as jax_optim
from sesemi_torch import optim as torch_optim


@pytest.fixture(scope="module")
def runs():
    """(problem, PyTorch, PyTorch nudged one ulp, JAX): the three float64 trajectories."""
    problem = lh.make_problem()
    with lh.torch_threads(1):
        reference = lh.torch_trajectory(problem)
        nudged = lh.torch_trajectory(problem, lh.nudged(problem.initial, "up"))
    return problem, reference, nudged, lh.jax_trajectory(problem)


def _table(verdicts: list[lh.StepVerdict]) -> str:
    return "\n".join(["step  gap        noise      bound      ratio      worst key"] + [
        f"{v.step:4d}  {v.gap:.3e}  {v.noise:.3e}  {v.bound:.3e}  {v.ratio:.3e}  {v.key}" for v in verdicts])


@pytest.mark.slow
def test_jax_follows_torch_in_float64_for_30_steps(runs):
    problem, reference, nudged, jax_run = runs
    verdicts = lh.compare(jax_run, reference, nudged)
    print("\n" + _table(verdicts))
    assert len(verdicts) == problem.steps == 30
    assert all(v.noise > 0 for v in verdicts), "the nudged reference must differ: it measures growth"
    worst = lh.worst(verdicts)
    assert worst.ratio <= 1.0, f"step {worst.step}: {worst.key} gap {worst.gap:.3g} > bound {worst.bound:.3g}"


# Each plant changes PyTorch alone (no JAX compile: 4 s each); the study plants the JAX side too.
@pytest.mark.slow
@pytest.mark.parametrize("plant", [lh.plant_torch_schedule_one_step_ahead, lh.plant_torch_bn_momentum],
                         ids=["lr-schedule-one-step-ahead", "bn-momentum-0.8"])
def test_the_check_fails_on_a_planted_bug(runs, plant):
    problem, reference, nudged, _ = runs
    with lh.torch_threads(1):
        planted = lh.torch_trajectory(problem, before_training=plant)
    worst = lh.worst(lh.compare(planted, reference, nudged))
    assert worst.ratio > 1e3, f"the plant went unseen: ratio {worst.ratio:.3g} at step {worst.step}"


# ---- EMA and teacher: Mean Teacher keeps an EMA of params and BatchNorm statistics and runs its
# teacher branch through it; both trajectories record the EMA under "ema." names, so the same
# bound holds it, and the closed form pins the conventions two equally wrong EMAs would share.
EMA_DECAY = 0.9
TEACHER = ("method.name=mean_teacher", "method.mean_teacher.rampup_steps=0", f"train.ema_decay={EMA_DECAY}")


@pytest.fixture(scope="module")
def teacher_runs():
    problem = lh.make_problem(overrides=TEACHER)
    with lh.torch_threads(1):
        reference = lh.torch_trajectory(problem)
        nudged = lh.torch_trajectory(problem, lh.nudged(problem.initial, "up"))
    return problem, reference, nudged, lh.jax_trajectory(problem)


@pytest.mark.slow
def test_jax_follows_torch_with_an_ema_teacher_in_float64(teacher_runs):
    problem, reference, nudged, jax_run = teacher_runs
    assert any(key.startswith("ema.") for key in reference[0]) and set(jax_run[0]) == set(reference[0])
    worst = lh.worst(lh.compare(jax_run, reference, nudged))
    assert worst.ratio <= 1.0, f"step {worst.step}: {worst.key} gap {worst.gap:.3g} > bound {worst.bound:.3g}"


@pytest.mark.slow
def test_the_ema_is_the_closed_form_average_after_every_update(teacher_runs):
    """ema_t = d ema_{t-1} + (1 - d) p_t, ema_0 = p_0: averaged after each update, params and
    BatchNorm running statistics alike (docs/DESIGN.md section 7)."""
    problem, reference, _, _ = teacher_runs
    previous = {k: v for k, v in problem.initial.items() if not k.endswith("num_batches_tracked")}
    for step, record in enumerate(reference, start=1):
        for key, before in previous.items():
            expected = EMA_DECAY * before + (1 - EMA_DECAY) * record[key]
            np.testing.assert_allclose(record[f"ema.{key}"], expected, rtol=1e-12, atol=1e-15,
                                       err_msg=f"step {step}: ema.{key}")
        previous = {key: record[f"ema.{key}"] for key in previous}


@pytest.mark.slow
def test_the_check_fails_on_a_planted_ema_bug(teacher_runs):
    problem, reference, nudged, _ = teacher_runs
    with lh.torch_threads(1), lh.plant_torch_ema_decay(0.8):
        planted = lh.torch_trajectory(problem)
    worst = lh.worst(lh.compare(planted, reference, nudged))
    assert worst.ratio > 1e3, f"the plant went unseen: ratio {worst.ratio:.3g} at step {worst.step}"


def _closed_form_lr(cfg: OptimConfig, total: int, step: int) -> float:
    """docs/DESIGN.md section 5: warm-up lr * t / W, then the decay over the T - W remaining steps."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return cfg.lr * step / warmup
    s = min((step - warmup) / (total - warmup), 1.0)
    decay = {"poly": (1 - s) ** cfg.poly_power, "cosine": 0.5 * (1 + math.cos(math.pi * s)), "constant": 1.0}
    return cfg.lr * decay[cfg.schedule]


@pytest.mark.parametrize("schedule", ["poly", "cosine", "constant"])
def test_lr_schedule_at_every_update_is_the_closed_form(schedule):
    """Both frameworks, all T updates, as the optimizer sees them (torch: the param group's lr at
    each `optimizer.step()`; JAX: the schedule at optax's count). test_optim_parity compares the
    two with each other, tests/*/test_optim.py at sample points; this pins both to the spec."""
    total = 37
    cfg = dataclasses.replace(OptimConfig(), schedule=schedule, warmup_steps=5)
    expected = np.array([_closed_form_lr(cfg, total, t) for t in range(total)])
    optimizer = torch_optim.make_optimizer([{"params": [torch.zeros(1, requires_grad=True)]}], cfg)
    scheduler = torch_optim.make_scheduler(optimizer, cfg, total)
    torch_lrs = []
    for _ in range(total):
        torch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # float64: relative 1e-14, plus a few ulps of lr absolute: near the end 1 + cos(pi s) of the
    # closed form cancels (its rounding, 1e-16 absolute, was 1.4e-14 relative to lr 1.2e-4 at
    # t = T - 1), which JAX's sin^2 form avoids.
    atol = 4 * np.finfo(np.float64).eps * cfg.lr
    np.testing.assert_allclose(torch_lrs, expected, rtol=1e-14, atol=atol)
    with jax.enable_x64(True):
        jax_lrs = np.asarray(jax.jit(jax_optim.lr_schedule(cfg, total))(np.arange(total, dtype=np.int32)))
    np.testing.assert_allclose(jax_lrs, expected, rtol=1e-14, atol=atol)
    # float32 (training): a few ulps, the tail included (the remaining steps are counted in integers)
    jax_lrs32 = np.asarray(jax_optim.lr_schedule(cfg, total)(np.arange(total, dtype=np.int32)))
    assert jax_lrs32.dtype == np.float32
    np.testing.assert_allclose(jax_lrs32, expected, rtol=4 * np.finfo(np.float32).eps, atol=0)


@pytest.mark.slow
def test_lockstep_updates_used_the_closed_form_lr(runs):
    problem, reference, _, jax_run = runs
    expected = [_closed_form_lr(problem.config.optim, problem.steps, t) for t in range(problem.steps)]
    np.testing.assert_allclose([r["lr"] for r in reference], expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose([r["lr"] for r in jax_run], expected, rtol=1e-14, atol=0)


# ---- Samplers over several epochs ---------------------------------------------------------------
# 30 steps walk 18 epochs of the 10 labeled images and 4 of the 22 unlabeled ones, most batches
# crossing an epoch boundary. tests/common/test_sampling.py covers HostStream within whole epochs.
SAMPLER_STEPS = 30
SAMPLERS = {"host": lh.host_sampler, "torch": lh.torch_sampler, "jax": lh.jax_sampler}


@pytest.fixture(scope="module")
def walks():
    """Each sampler's first SAMPLER_STEPS batches, drawn once (the JAX one compiles)."""
    problem = lh.make_problem()
    samplers = {name: make(problem) for name, make in SAMPLERS.items()}
    return problem, {name: [sampler(step) for step in range(SAMPLER_STEPS)] for name, sampler in samplers.items()}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_walks_fresh_permutations_across_epoch_boundaries(walks, name):
    problem, walk = walks[0], walks[1][name]
    assert lh.sampler_errors(lambda step: walk[step], problem, SAMPLER_STEPS) == []


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_resumed_at_step_s_gives_step_s(walks, name):
    """A resumed run builds a fresh sampler and asks for step s first."""
    problem, walk = walks[0], walks[1][name]
    resumed = SAMPLERS[name](problem)
    for s in (29, 7, 18):
        for got, want in zip(resumed(s), walk[s]):
            np.testing.assert_array_equal(got, want)


def test_torch_spec_sampler_started_at_s_yields_the_uninterrupted_specs():
    problem = lh.make_problem()
    full = list(lh.SpecSampler(problem.labeled, len(problem.images), problem.config))
    resumed = list(lh.SpecSampler(problem.labeled, len(problem.images), problem.config, start_step=18))
    assert len(full) == problem.steps and len(resumed) == problem.steps - 18
    for got, want in zip(resumed, full[18:]):
        np.testing.assert_array_equal(got.labeled, want.labeled)
        np.testing.assert_array_equal(got.unlabeled, want.unlabeled)
        np.testing.assert_array_equal(got.sup_offsets, want.sup_offsets)


@pytest.mark.parametrize("plant, name", [(lh.plant_host_stream_off_by_one, "host"),
                                         (lh.plant_jax_sampler_no_epoch_crossing, "jax")])
def test_the_sampler_check_fails_on_a_planted_drift(plant, name):
    problem = lh.make_problem()
    with plant():
        errors = lh.sampler_errors(SAMPLERS[name](problem), problem, SAMPLER_STEPS)
    assert errors, "the drift went unseen"
