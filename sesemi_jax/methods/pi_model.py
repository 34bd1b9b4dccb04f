"""The Pi-model: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/pi_model.py; the PyTorch twin: sesemi_torch/methods/pi_model.py."""

from __future__ import annotations

from sesemi_common.sampling import crop_geometry

from .. import losses, transforms
from . import LossInputs, Views


def apply_views(images, params, config) -> Views:
    """Views `a` and `b`: each a translation and a horizontal flip of its own."""
    padding, mode = crop_geometry(config)
    views = {name: transforms.apply_hflip(transforms.apply_crop(images, params[f"offsets_{name}"], padding, mode),
                                          params[f"flips_{name}"])
             for name in ("a", "b") if f"offsets_{name}" in params}
    return views, {}


def consistency_loss(inputs: LossInputs, student: str, target: str):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    consistency = losses.softmax_mse(inputs.outputs[student]["sup"], inputs.outputs[target]["sup"])
    return loss_sup + weight * consistency, {"loss_sup": loss_sup, "loss_consistency": consistency,
                                             "consistency_weight": weight}


def loss(inputs: LossInputs):
    return consistency_loss(inputs, "a", "b")
