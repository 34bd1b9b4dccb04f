"""Rung "one step" of the parity ladder in float64 (docs/DESIGN.md section 5, rtol 1e-5), for
every other method (Pi-model, Mean Teacher, entropy minimization, the FixMatch family):
the loss, every term, the gradients, and the updated parameters, BatchNorm running statistics, EMA
and method state after one step from identical weights on one identical batch. Why the gradients
are compared in float64: one_step.py."""

import pytest

from parity_tests.one_step import METHOD_CASES, check_float64_step


@pytest.mark.slow
@pytest.mark.parametrize("backbone,overrides", METHOD_CASES)
def test_one_step_float64_grads_and_updates(backbone, overrides):
    check_float64_step(backbone, overrides)
