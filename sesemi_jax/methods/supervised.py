"""The supervised baseline: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/supervised.py; the PyTorch twin: sesemi_torch/methods/supervised.py."""

from __future__ import annotations

import jax.numpy as jnp

from .. import losses
from . import LossInputs


def loss(inputs: LossInputs):
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    return loss_sup, {"loss_sup": loss_sup, "loss_self": jnp.zeros_like(loss_sup)}
