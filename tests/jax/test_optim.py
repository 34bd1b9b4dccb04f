"""LR schedules, the weight-decay mask and single SGD steps of sesemi_jax.optim, against hand values."""

import dataclasses
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sesemi_common.config import OptimConfig
from sesemi_jax.optim import decay_mask, lr_schedule, make_optimizer

T = 100


def schedule_values(steps, **overrides):
    schedule = lr_schedule(dataclasses.replace(OptimConfig(), **overrides), T)
    return [float(schedule(jnp.asarray(t, jnp.int32))) for t in steps]


@pytest.mark.parametrize("overrides, expected", [
    # t = 0, T/2, T-1, T: lr (1 - t/T)^0.5
    ({}, [0.05, 0.05 * math.sqrt(0.5), 0.05 * 0.1, 0.0]),
    ({"schedule": "cosine"}, [0.05, 0.025, 0.025 * (1 + math.cos(math.pi * 0.99)), 0.0]),
    ({"schedule": "constant"}, [0.05, 0.05, 0.05, 0.05]),
    ({"poly_power": 1.0, "lr": 0.1}, [0.1, 0.05, 0.001, 0.0]),
])
def test_schedule_without_warmup(overrides, expected):
    np.testing.assert_allclose(schedule_values([0, 50, 99, 100], **overrides), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("schedule, expected_after_warmup", [
    # after warm-up W = 10 the decay spans T - W = 90 steps: t = 50 is s = 40/90, t = 99 is s = 89/90
    ("poly", [0.05, 0.05 * math.sqrt(5 / 9), 0.05 * math.sqrt(1 / 90)]),
    ("cosine", [0.05, 0.025 * (1 + math.cos(math.pi * 4 / 9)), 0.025 * (1 + math.cos(math.pi * 89 / 90))]),
    ("constant", [0.05, 0.05, 0.05]),
])
def test_schedule_with_warmup(schedule, expected_after_warmup):
    values = schedule_values([0, 1, 5, 10, 50, 99], schedule=schedule, warmup_steps=10)
    np.testing.assert_allclose(values, [0.0, 0.005, 0.025] + expected_after_warmup, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("overrides, total, message", [
    ({"schedule": "step"}, T, "optim.schedule must be one of poly, cosine, constant, fixmatch_cosine, got 'step'"),
    ({"warmup_steps": 100}, T, "optim.warmup_steps (100) must be in [0, total steps 100)"),
    ({}, 0, "total steps must be positive, got 0"),
    ({"momentum": 0.0}, T, "optim.nesterov needs optim.momentum > 0, got 0.0"),
])
def test_bad_optim_config_is_a_one_line_error(overrides, total, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)) as err:
        make_optimizer(dataclasses.replace(OptimConfig(), **overrides), total)
    assert "\n" not in str(err.value)


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        x = nn.Conv(4, (3, 3), use_bias=True, name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
        return nn.Dense(3, name="fc")(x.mean(axis=(1, 2)))


def test_decay_mask_selects_conv_and_dense_kernels_only():
    variables = TinyNet().init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
    assert decay_mask(variables["params"]) == {
        "conv": {"kernel": True, "bias": False},
        "bn": {"scale": False, "bias": False},
        "fc": {"kernel": True, "bias": False},
    }


def one_step_cfg(**overrides):
    base = OptimConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, schedule="constant")
    return dataclasses.replace(base, **overrides)


def run_steps(cfg, params, grads, n):
    tx = make_optimizer(cfg, total_steps=10)
    state = tx.init(params)
    for _ in range(n):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_two_nesterov_steps_match_hand_computation():
    params = {"kernel": jnp.float32(1.0), "bias": jnp.float32(1.0)}
    grads = {"kernel": jnp.float32(0.5), "bias": jnp.float32(0.5)}
    after_one = run_steps(one_step_cfg(), params, grads, 1)
    # kernel: d = 0.5 + 0.01 * 1 = 0.51, buf = d, update = d + 0.9 buf = 0.969, p = 1 - 0.1 * 0.969
    # bias: no decay, d = 0.5, buf = 0.5, update = 0.95, p = 1 - 0.095
    np.testing.assert_allclose(after_one["kernel"], 0.9031, rtol=1e-6)
    np.testing.assert_allclose(after_one["bias"], 0.905, rtol=1e-6)
    after_two = run_steps(one_step_cfg(), params, grads, 2)
    # kernel: d = 0.5 + 0.01 * 0.9031 = 0.509031, buf = 0.9 * 0.51 + d = 0.968031,
    # update = d + 0.9 buf = 1.3802589, p = 0.9031 - 0.13802589
    np.testing.assert_allclose(after_two["kernel"], 0.76507411, rtol=1e-6)
    # bias: buf = 0.9 * 0.5 + 0.5 = 0.95, update = 0.5 + 0.855 = 1.355, p = 0.905 - 0.1355
    np.testing.assert_allclose(after_two["bias"], 0.7695, rtol=1e-6)


def test_plain_momentum_step_matches_hand_computation():
    params = {"kernel": jnp.float32(1.0)}
    grads = {"kernel": jnp.float32(0.5)}
    # heavy ball, step 1: d = 0.5 + 0.01 * 1 = 0.51, buf = d, p = 1 - 0.1 * 0.51 = 0.949
    # step 2: d = 0.5 + 0.00949 = 0.50949, buf = 0.459 + 0.50949 = 0.96849, p = 0.949 - 0.096849
    after_two = run_steps(one_step_cfg(nesterov=False), params, grads, 2)
    np.testing.assert_allclose(after_two["kernel"], 0.852151, rtol=1e-6)


def test_optimizer_step_is_jittable_and_uses_schedule_count():
    cfg = one_step_cfg(schedule="poly", poly_power=1.0, momentum=0.0, nesterov=False, weight_decay=0.0)
    tx = make_optimizer(cfg, total_steps=4)  # lr 0.1, 0.075, 0.05, 0.025
    params = {"bias": jnp.float32(0.0)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(4):
        updates, state = update({"bias": jnp.float32(1.0)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["bias"], -0.25, rtol=1e-6)


@pytest.mark.parametrize("schedule, multiplier", [
    ("poly", lambda s: math.sqrt(1 - s)),
    ("cosine", lambda s: 0.5 * (1 + math.cos(math.pi * s))),
])
def test_schedule_tail_keeps_float32_accuracy_on_long_runs(schedule, multiplier):
    # optax's stock schedules lose 4e-5 (poly) and 1.5e-2 (cosine) relative here to cancellation
    total = 2000
    steps = [1000, 1990, 1998, 1999]
    values = lr_schedule(OptimConfig(schedule=schedule), total)(jnp.asarray(steps))
    expected = [0.05 * multiplier(t / total) for t in steps]
    np.testing.assert_allclose(values, expected, rtol=1e-6)
