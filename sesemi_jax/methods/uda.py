"""UDA: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/uda.py; the PyTorch twin: sesemi_torch/methods/uda.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import losses
from . import LossInputs
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    weak = jax.lax.stop_gradient(inputs.outputs["weak"]["sup"])
    mask = (jax.nn.softmax(weak).max(-1) >= knobs.threshold).astype(jnp.float32)
    target = losses.sharpened_log_probs(weak, knobs.temperature)
    loss_unlabeled = jnp.mean(mask * losses.kl_divergence(target, inputs.outputs["strong"]["sup"]))
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean()}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms
