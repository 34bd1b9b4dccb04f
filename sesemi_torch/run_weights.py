"""A PyTorch run's framework-free weights files (sesemi_common/run_weights.py), from its model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sesemi_common import run_weights
from sesemi_common.config import Config
from sesemi_common.runs import RunDir


def state_dict_arrays(model: nn.Module) -> dict:
    return {key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}


def save(run: RunDir, step: int, model: nn.Module, config: Config) -> Path:
    """`model`: what evaluation uses (the EMA's module with train.eval_ema)."""
    return run_weights.save(run, step, state_dict_arrays(model), "torch", config)
