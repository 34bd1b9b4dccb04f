"""Entropy minimization: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/entmin.py; the JAX twin: sesemi_jax/methods/entmin.py."""

from __future__ import annotations

from .. import losses
from .pi_model import apply_views  # view `a` only: the registry declares its parameters alone  # noqa: F401
from . import LossInputs


def loss(inputs: LossInputs):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    loss_entropy = losses.entropy(inputs.outputs["unlabeled"]["sup"])
    return loss_sup + weight * loss_entropy, {"loss_sup": loss_sup, "loss_entropy": loss_entropy}
