"""The flip-only proxy task in JAX: pure functions that run inside the jitted step."""

import jax.numpy as jnp

from sesemi_common.sampling import crop_geometry
from sesemi_jax import losses, transforms
from sesemi_jax.methods import LossInputs


def apply_views(images, params, config):
    """uint8 NHWC -> the view `flips` ([img0 id, lr, ud, img1 id, ...]) and its targets 0, 1, 2."""
    padding, mode = crop_geometry(config)
    x = transforms.apply_crop(images, params["offsets"], padding, mode)
    forms = jnp.stack([x, x[:, :, ::-1], x[:, ::-1]], axis=1)  # NHWC: axis 2 is width, 1 is height
    targets = jnp.tile(jnp.arange(3, dtype=jnp.int32), x.shape[0])
    return {"flips": forms.reshape(-1, *x.shape[1:])}, {"flip": targets}


def loss(inputs: LossInputs):
    weight = inputs.knobs.weight * losses.sigmoid_rampup(inputs.step, inputs.knobs.rampup_steps)
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    loss_flip = losses.cross_entropy(inputs.outputs["flip"]["flip"], inputs.targets["flip"])
    return loss_sup + weight * loss_flip, {"loss_sup": loss_sup, "loss_flip": loss_flip}
