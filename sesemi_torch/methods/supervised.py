"""PyTorch twin of sesemi_jax/methods/supervised.py.

The supervised baseline: CE on the labeled batch, no unlabeled batch. `loss_self` is logged as
0 so its records line up with SESEMI's."""

from __future__ import annotations

import torch

from .. import losses
from . import LossInputs


def loss(inputs: LossInputs):
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    return loss_sup, {"loss_sup": loss_sup, "loss_self": torch.zeros_like(loss_sup)}
