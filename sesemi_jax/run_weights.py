"""A JAX run's framework-free weights files (sesemi_common/run_weights.py), from its variables."""

from __future__ import annotations

from pathlib import Path

from sesemi_common import run_weights
from sesemi_common.config import Config
from sesemi_common.runs import RunDir

from .convert import state_dict_from_variables


def save(run: RunDir, step: int, variables: dict, config: Config) -> Path:
    """`variables`: what evaluation uses (`loop.eval_variables`: the EMA's with train.eval_ema)."""
    return run_weights.save(run, step, state_dict_from_variables(variables, config.model.backbone), "jax", config)
