"""PyTorch twin of sesemi_jax/methods/entmin.py.

Entropy minimization (Grandvalet and Bengio 2005): CE_sup + w(t) * the mean entropy of the
supervised head's predictions on one augmented view of each unlabeled image."""

from __future__ import annotations

from .. import losses
from .pi_model import apply_views  # view `a` only: the registry declares its parameters alone  # noqa: F401
from . import LossInputs


def loss(inputs: LossInputs):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    loss_entropy = losses.entropy(inputs.outputs["unlabeled"]["sup"])
    return loss_sup + weight * loss_entropy, {"loss_sup": loss_sup, "loss_entropy": loss_entropy}
