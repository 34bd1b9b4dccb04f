"""Shared setup of the JAX-vs-PyTorch parity ladder (docs/DESIGN.md section 5).

Every parity test runs with torch in float32 with deterministic algorithms and TF32 off, and
with jax in float32 (x64 off). Each setting is restored after the test, so unit tests that
share the process see the defaults. Matmul precision is opt-in (`highest_matmul_precision`):
only tests that run matmuls or convolutions need it.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

SEED = 0


@pytest.fixture(autouse=True)
def parity_numerics():
    saved = (torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             jax.config.jax_enable_x64)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_enable_x64", False)
    yield
    dtype, deterministic, matmul_tf32, cudnn_tf32, x64 = saved
    torch.set_default_dtype(dtype)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    torch.backends.cudnn.allow_tf32 = cudnn_tf32
    jax.config.update("jax_enable_x64", x64)


@pytest.fixture
def highest_matmul_precision():
    """XLA may run float32 matmuls and convolutions in bfloat16 passes or TF32 on accelerators."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def np_rng() -> np.random.Generator:
    """A fixed numpy generator: parity inputs and transform parameters come from it, never from a framework."""
    return np.random.default_rng(SEED)
