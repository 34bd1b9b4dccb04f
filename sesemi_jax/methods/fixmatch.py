"""FixMatch: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/fixmatch.py; the PyTorch twin: sesemi_torch/methods/fixmatch.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sesemi_common.methods import FIXMATCH_SHIFT
from sesemi_common.sampling import scaled_shift

from .. import losses, randaugment, transforms
from . import LossInputs, Views


def _flip_translate(images, offsets, flips, shift):
    return transforms.apply_hflip(transforms.apply_crop(images, offsets, shift, "reflect"), flips)


def apply_views(images, params, config) -> Views:
    """View `weak`: flip + translate; view `strong`: another flip + translate, then RandAugment and Cutout."""
    shift = scaled_shift(FIXMATCH_SHIFT, config.data.image_size)  # 4 px at 32: 1/8 of the side
    weak = _flip_translate(images, params["weak_offsets"], params["weak_flips"], shift)
    strong = randaugment.apply(_flip_translate(images, params["strong_offsets"], params["strong_flips"], shift),
                               params["strong_ops"], params["strong_magnitudes"], params["strong_cutout"])
    return {"weak": weak, "strong": strong}, {}


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    probs = jax.nn.softmax(jax.lax.stop_gradient(inputs.outputs["weak"]["sup"]))
    confidence, pseudo = probs.max(-1), probs.argmax(-1)
    mask = (confidence >= knobs.threshold).astype(jnp.float32)
    loss_unlabeled = losses.masked_cross_entropy(inputs.outputs["strong"]["sup"], pseudo, mask)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean()}
    if "true_labels" in inputs.targets:  # logging only: how often the pseudo-labels are right
        correct = (pseudo == inputs.targets["true_labels"]).astype(jnp.float32)
        terms["pseudo_label_accuracy"] = correct.mean()
        terms["kept_pseudo_label_accuracy"] = (mask * correct).sum() / jnp.maximum(mask.sum(), 1.0)
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms
