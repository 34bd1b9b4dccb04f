"""SESEMI and rotation prediction: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/proxy.py; the PyTorch twin: sesemi_torch/methods/proxy.py."""

from __future__ import annotations

from sesemi_common.proxy_forms import proxy_forms
from sesemi_common.sampling import crop_geometry

from .. import losses, transforms
from . import LossInputs, Views, registry


def apply_views(images, params, config) -> Views:
    padding, mode = crop_geometry(config)
    translated = transforms.apply_crop(images, params["offsets"], padding, mode)
    views, targets = transforms.proxy_views(translated, proxy_forms(registry.get(config.method.name)))
    return {"proxy": views}, {"self": targets}


def loss(inputs: LossInputs):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    return losses.joint_loss(inputs.sup_logits, inputs.labels, inputs.outputs["self"]["self"],
                             inputs.targets["self"], weight)
