"""UDA (Xie et al. 2020, "Unsupervised Data Augmentation for Consistency Training"): the weak
view's prediction, sharpened by `temperature`, is the target of the strongly augmented view,
through a KL divergence kept where the weak view's confidence reaches `threshold`:
CE_sup + lambda_u * mean(mask * KL(softmax(weak / T) || softmax(strong))). FixMatch's views
(USB trains UDA on the same weak and strong augmentations); the weak branch is stop-gradient.

Follows the paper and Google's UDA code (sharpened targets, KL). USB (semilearn/algorithms/uda)
differs in one place: it hands the pseudo-labelling hook probabilities with softmax=False, so
its temperature is never applied and its target is the unsharpened softmax; its cross-entropy
against soft targets has the KL's gradient. Training signal annealing (USB's default: none) is
left out."""

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
