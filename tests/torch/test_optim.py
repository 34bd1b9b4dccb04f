"""LR schedules, parameter groups and single SGD steps of sesemi_torch.optim, against hand values."""

import dataclasses
import math
import re

import pytest
import torch
from torch import nn

from sesemi_common.config import OptimConfig
from sesemi_torch.optim import make_optimizer, make_scheduler, param_groups

T = 100


def schedule_values(steps, **overrides):
    """lr seen by the optimizer after t scheduler.step() calls, for each t in steps."""
    cfg = dataclasses.replace(OptimConfig(), **overrides)
    optimizer = make_optimizer([{"params": [nn.Parameter(torch.zeros(1))]}], cfg)
    scheduler = make_scheduler(optimizer, cfg, T)
    values = []
    for t in range(max(steps) + 1):
        if t in steps:
            values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


@pytest.mark.parametrize("overrides, expected", [
    ({}, [0.05, 0.05 * math.sqrt(0.5), 0.05 * 0.1, 0.0]),
    ({"schedule": "cosine"}, [0.05, 0.025, 0.025 * (1 + math.cos(math.pi * 0.99)), 0.0]),
    ({"schedule": "constant"}, [0.05, 0.05, 0.05, 0.05]),
    ({"poly_power": 1.0, "lr": 0.1}, [0.1, 0.05, 0.001, 0.0]),
])
def test_schedule_without_warmup(overrides, expected):
    assert schedule_values([0, 50, 99, 100], **overrides) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("schedule, expected_after_warmup", [
    # after warm-up W = 10 the decay spans T - W = 90 steps: t = 50 is s = 40/90, t = 99 is s = 89/90
    ("poly", [0.05, 0.05 * math.sqrt(5 / 9), 0.05 * math.sqrt(1 / 90)]),
    ("cosine", [0.05, 0.025 * (1 + math.cos(math.pi * 4 / 9)), 0.025 * (1 + math.cos(math.pi * 89 / 90))]),
    ("constant", [0.05, 0.05, 0.05]),
])
def test_schedule_with_warmup(schedule, expected_after_warmup):
    values = schedule_values([0, 1, 5, 10, 50, 99], schedule=schedule, warmup_steps=10)
    assert values == pytest.approx([0.0, 0.005, 0.025] + expected_after_warmup, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("overrides, total, message", [
    ({"schedule": "step"}, T, "optim.schedule must be one of poly, cosine, constant, fixmatch_cosine, got 'step'"),
    ({"warmup_steps": 100}, T, "optim.warmup_steps (100) must be in [0, total steps 100)"),
    ({}, 0, "total steps must be positive, got 0"),
    ({"momentum": 0.0}, T, "optim.nesterov needs optim.momentum > 0, got 0.0"),
])
def test_bad_optim_config_is_a_one_line_error(overrides, total, message):
    cfg = dataclasses.replace(OptimConfig(), **overrides)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="^" + re.escape(message)) as err:
        make_scheduler(optimizer, cfg, total)
    assert "\n" not in str(err.value)


def test_nesterov_without_momentum_is_rejected_by_make_optimizer():
    with pytest.raises(ValueError, match=r"^optim.nesterov needs optim.momentum > 0, got 0.0"):
        make_optimizer(nn.Linear(2, 2), OptimConfig(momentum=0.0))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


def test_param_groups_decay_conv_and_linear_weights_only():
    model = TinyNet()
    decay, no_decay = param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in decay["params"]] == ["conv.weight", "fc.weight"]
    assert [names[id(p)] for p in no_decay["params"]] == ["conv.bias", "bn.weight", "bn.bias", "fc.bias"]
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay


def test_make_optimizer_sets_decay_per_group():
    optimizer = make_optimizer(TinyNet(), OptimConfig())
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["lr"] == 0.05 for g in optimizer.param_groups)


def test_shared_parameter_is_in_one_group_only():
    linear = nn.Linear(2, 2)
    model = nn.Sequential(linear, nn.ReLU(), linear)
    decay, no_decay = param_groups(model)
    assert len(decay["params"]) == 1 and len(no_decay["params"]) == 1


def one_step_cfg(**overrides):
    base = OptimConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, schedule="constant")
    return dataclasses.replace(base, **overrides)


def run_steps(cfg, n):
    """A Linear(1, 1) whose weight (decayed) and bias (not decayed) start at 1 with gradient 0.5."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(1.0)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=10)
    for _ in range(n):
        model.weight.grad = torch.full_like(model.weight, 0.5)
        model.bias.grad = torch.full_like(model.bias, 0.5)
        optimizer.step()
        scheduler.step()
    return model.weight.item(), model.bias.item()


def test_two_nesterov_steps_match_hand_computation():
    # weight: d = 0.5 + 0.01 * 1 = 0.51, buf = d, update = d + 0.9 buf = 0.969, p = 1 - 0.1 * 0.969
    # bias: no decay, d = 0.5, buf = 0.5, update = 0.95, p = 1 - 0.095
    assert run_steps(one_step_cfg(), 1) == pytest.approx((0.9031, 0.905), rel=1e-6)
    # weight: d = 0.5 + 0.01 * 0.9031 = 0.509031, buf = 0.9 * 0.51 + d = 0.968031,
    # update = d + 0.9 buf = 1.3802589, p = 0.9031 - 0.13802589
    # bias: buf = 0.9 * 0.5 + 0.5 = 0.95, update = 0.5 + 0.855 = 1.355, p = 0.905 - 0.1355
    assert run_steps(one_step_cfg(), 2) == pytest.approx((0.76507411, 0.7695), rel=1e-6)


def test_plain_momentum_step_matches_hand_computation():
    # heavy ball, step 1: d = 0.51, buf = d, p = 1 - 0.051 = 0.949
    # step 2: d = 0.5 + 0.00949 = 0.50949, buf = 0.459 + 0.50949 = 0.96849, p = 0.949 - 0.096849
    weight, _ = run_steps(one_step_cfg(nesterov=False), 2)
    assert weight == pytest.approx(0.852151, rel=1e-6)
