"""Rung "one step" of the parity ladder in float32 (docs/DESIGN.md section 5, rtol 1e-5): the loss,
its terms, the BatchNorm running variances and the method's state after one step from identical
weights on one identical batch. The problem, both steps and the module's findings: one_step.py.

float32 runs a representative set of cases, not all of them: the float64 files run every case
and compare all of this too, plus the gradients and the updates. What float32 adds is the float32
arithmetic of the same code, which a method's own loss hardly changes; it keeps both backbones,
the joint forward, a masked method with strong views (FixMatch) and the two kinds of method state
(FreeMatch's running statistics, FlexMatch's status per pool image)."""

import jax
import numpy as np
import pytest
import torch

from sesemi_common.stats import channel_stats
from parity_tests.one_step import (BACKBONE_CASES, METHOD_CASES, assert_close, assert_same_terms, jax_step, problem,
                                   running_var_keys, torch_step)

FLOAT32_METHODS = ("method.name=fixmatch", "method.name=freematch", "method.name=flexmatch")
FLOAT32_CASES = [case for case in BACKBONE_CASES if not any("method.name" in o for o in case[1])] + [
    case for case in METHOD_CASES if case[1][0] in FLOAT32_METHODS]


def test_the_float32_cases_are_the_ones_named():
    assert [(b, o[0] if o else "sesemi") for b, o in FLOAT32_CASES] == [
        ("resnet20", "sesemi"), ("resnet20", "model.joint_forward=true"), ("wrn28_2", "sesemi"),
        ("resnet20", "method.name=fixmatch"), ("resnet20", "method.name=freematch"),
        ("resnet20", "method.name=flexmatch")]


@pytest.mark.slow
@pytest.mark.parametrize("backbone,overrides", FLOAT32_CASES)
def test_one_step_float32_loss_and_running_stats(backbone, overrides):
    config, images, labels, labeled, spec = problem(backbone, overrides)
    mean, std = channel_stats(images)
    initial, t_metrics, _, t_after = torch_step(config, images, labels, spec, mean, std, torch.float32)
    j_metrics, _, j_after = jax_step(config, initial, images, labels, labeled, spec, mean, std)
    assert_same_terms(j_metrics, t_metrics)
    # Running means are left to the float64 test: a channel mean of +-1 values that nearly cancel
    # (|mean| ~ 6e-4 over 6,144 values) is ill-conditioned, and float32 summation order alone moved
    # one by 1.6e-5 relative (1.6e-8 absolute). Variances are sums of squares: well-conditioned.
    assert_close(j_after, t_after, "BatchNorm running variances", running_var_keys(t_after))
    state_keys = [k for k in t_after if k.startswith("method_state.")]
    if state_keys:  # (an empty list would mean every key to assert_close)
        assert_close(j_after, t_after, "the method's state", state_keys)


@pytest.mark.slow
def test_one_step_with_the_ema_warmup_averages_the_initial_and_new_weights_equally():
    """train.ema_warmup through both trainers' real steps (JAX: the decay traced in the jitted
    step; PyTorch: AveragedModel's count): the first update's decay is 1 - 1/(1 + 1) = 1/2, not
    the configured 0.9, so each framework's EMA is the mean of its initial and updated params and
    BatchNorm statistics (float64, where that is exact to rounding), and the two agree."""
    config, images, labels, labeled, spec = problem("resnet20", [
        "method.name=mean_teacher", "method.mean_teacher.rampup_steps=0", "train.ema_decay=0.9",
        "train.ema_warmup=true"])
    mean, std = channel_stats(images)
    with jax.enable_x64(True):
        initial, _, _, t_after = torch_step(config, images, labels, spec, mean, std, torch.float64)
        _, _, j_after = jax_step(config, initial, images, labels, labeled, spec, mean, std)
    keys = [k for k in t_after if not k.startswith(("ema.", "method_state."))]
    ema_keys = [f"ema.{k}" for k in keys]
    assert len(keys) > 100
    for key in keys:
        assert t_after[f"ema.{key}"].dtype == np.float64
        np.testing.assert_allclose(t_after[f"ema.{key}"], (initial[key] + t_after[key]) / 2, rtol=1e-12, atol=1e-15,
                                   err_msg=key)
    # The JAX side comes back through the converter, which stores float32: the rung's rtol.
    before = {f"ema.{k}": initial[k] for k in keys}
    assert_close(j_after, {f"ema.{k}": (initial[k] + j_after[k]) / 2 for k in keys}, "the JAX EMA", ema_keys, before)
    assert_close(j_after, t_after, "the EMA", ema_keys, before=before)
