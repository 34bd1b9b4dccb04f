"""PyTorch twin of sesemi_jax/methods/uda.py.

UDA (Xie et al. 2020, "Unsupervised Data Augmentation for Consistency Training"): the weak
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
