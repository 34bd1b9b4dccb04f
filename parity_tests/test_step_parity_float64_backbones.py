"""Rung "one step" of the parity ladder in float64 (docs/DESIGN.md section 5, rtol 1e-5), for
SESEMI on both backbones and its variants (joint forward, the supervised baseline, rotation):
the loss, every term, the gradients, and the updated parameters, BatchNorm running statistics, EMA
and method state after one step from identical weights on one identical batch. Why the gradients
are compared in float64: one_step.py."""

import jax
import pytest
import torch

from sesemi_common.stats import channel_stats
from parity_tests.one_step import (BACKBONE_CASES, assert_close, assert_same_terms, jax_step, problem, starting_state,
                                   torch_step)


@pytest.mark.slow
@pytest.mark.parametrize("backbone,overrides", BACKBONE_CASES)
def test_one_step_float64_grads_and_updates(backbone, overrides):
    config, images, labels, labeled, spec = problem(backbone, overrides)
    mean, std = channel_stats(images)
    with jax.enable_x64(True):
        initial, t_metrics, t_grads, t_after = torch_step(config, images, labels, spec, mean, std, torch.float64)
        j_metrics, j_grads, j_after = jax_step(config, initial, images, labels, labeled, spec, mean, std)
    assert_same_terms(j_metrics, t_metrics, norms=True)
    assert_close(j_grads, t_grads, "gradients")
    before = {**initial, **{f"ema.{k}": v for k, v in initial.items()},
              **{f"method_state.{k}": v for k, v in starting_state(config).items()}}
    assert_close(j_after, t_after, "updated params, BatchNorm running statistics and EMA", before=before)
