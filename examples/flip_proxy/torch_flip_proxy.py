"""The flip-only proxy task in PyTorch, the twin of jax_flip_proxy.py."""

import torch

from sesemi_common.sampling import crop_geometry
from sesemi_torch import losses, transforms
from sesemi_torch.methods import LossInputs


def apply_views(images, params, config):
    """uint8 NCHW -> the view `flips` ([img0 id, lr, ud, img1 id, ...]) and its targets 0, 1, 2."""
    padding, mode = crop_geometry(config)
    x = transforms.apply_crop(images, params["offsets"], padding, mode)
    forms = torch.stack([x, x.flip(3), x.flip(2)], dim=1)  # NCHW: dim 3 is width, 2 is height
    targets = torch.arange(3).repeat(x.shape[0])
    return {"flips": forms.reshape(-1, *x.shape[1:])}, {"flip": targets}


def loss(inputs: LossInputs):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    loss_flip = losses.cross_entropy(inputs.outputs["flip"]["flip"], inputs.targets["flip"])
    return loss_sup + weight * loss_flip, {"loss_sup": loss_sup, "loss_flip": loss_flip}
