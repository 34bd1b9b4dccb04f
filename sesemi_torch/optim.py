"""SGD with Nesterov momentum, weight decay on conv/linear weights only, and the LR schedules.

Step convention, shared with `sesemi_jax.optim`: the k-th `optimizer.step()` (k = 0, 1, ...)
uses lr * `lr_multiplier(cfg, T)(k)`; `LambdaLR` sets multiplier(0) at construction and
multiplier(k) after k `scheduler.step()` calls.

Schedule with W = warmup_steps:
  t < W:  t / W                          (linear warm-up from 0; the first update has lr 0 when W > 0)
  t >= W: decay((t - W) / (T - W))       (the decay spans the T - W steps after warm-up)
  poly: (1 - s)^poly_power, cosine: (1 + cos(pi s)) / 2, constant: 1; s is clipped to [0, 1].
  fixmatch_cosine: cos(7 pi s / 16), FixMatch's lr cos(7 pi k / (16 K)): it ends at 0.195 lr, not 0.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from sesemi_common.config import OptimConfig, check_momentum, check_optim


def _decay(schedule: str, fraction: float, power: float) -> float:
    if schedule == "poly":
        return (1.0 - fraction) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * fraction))
    if schedule == "fixmatch_cosine":
        return math.cos(7 * math.pi * fraction / 16)
    return 1.0


def lr_multiplier(optim_cfg: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Factor on optim_cfg.lr for update t (t = 0 for the first update)."""
    check_optim(optim_cfg, total_steps)
    warmup = optim_cfg.warmup_steps

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / warmup
        fraction = min(max((step - warmup) / (total_steps - warmup), 0.0), 1.0)
        return _decay(optim_cfg.schedule, fraction, optim_cfg.poly_power)

    return multiplier


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups: weights of Conv2d/Linear ("decay") and everything else ("no_decay", wd 0)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # a shared parameter belongs to the first module that holds it
                continue
            seen.add(id(param))
            is_kernel = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            (decay if is_kernel else no_decay).append(param)
    return [{"params": decay, "name": "decay"},
            {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]


def make_optimizer(model_or_groups: nn.Module | list[dict], optim_cfg: OptimConfig) -> torch.optim.SGD:
    """torch SGD, weight decay coupled into the gradient of the "decay" group only."""
    groups = param_groups(model_or_groups) if isinstance(model_or_groups, nn.Module) else model_or_groups
    check_momentum(optim_cfg)
    return torch.optim.SGD(groups, lr=optim_cfg.lr, momentum=optim_cfg.momentum,
                           nesterov=optim_cfg.nesterov, weight_decay=optim_cfg.weight_decay)


class ConfiguredLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """A `LambdaLR` whose peak lr is always this run's `optim.lr`, also after loading a saved state.

    `--resume optim.lr=...` (the way out of a NaN) must train with the new lr, but the saved
    optimizer and scheduler states both hold the old one. Loading the scheduler's state last
    (after the optimizer's), this class puts the configured lr back; with an unchanged lr it
    computes the very value the saved state held, so a plain resume stays exact.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        configured = list(self.base_lrs)
        super().load_state_dict(state_dict)
        self.base_lrs = configured
        for group, base, multiplier in zip(self.optimizer.param_groups, configured, self.lr_lambdas):
            group["initial_lr"] = base
            group["lr"] = base * multiplier(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def make_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: OptimConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: call `scheduler.step()` once after each `optimizer.step()`."""
    return ConfiguredLambdaLR(optimizer, lr_multiplier(optim_cfg, total_steps))
