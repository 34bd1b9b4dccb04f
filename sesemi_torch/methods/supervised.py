"""The supervised baseline: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/supervised.py; the JAX twin: sesemi_jax/methods/supervised.py."""

from __future__ import annotations

import torch

from .. import losses
from . import LossInputs


def loss(inputs: LossInputs):
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    return loss_sup, {"loss_sup": loss_sup, "loss_self": torch.zeros_like(loss_sup)}
