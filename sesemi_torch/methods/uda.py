"""UDA: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/uda.py; the JAX twin: sesemi_jax/methods/uda.py."""

from __future__ import annotations

from .. import losses
from . import LossInputs
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    weak = inputs.outputs["weak"]["sup"].detach()
    mask = (weak.softmax(-1).max(-1).values >= knobs.threshold).float()
    target = losses.sharpened_log_probs(weak, knobs.temperature)
    loss_unlabeled = (mask * losses.kl_divergence(target, inputs.outputs["strong"]["sup"])).mean()
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean()}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms
