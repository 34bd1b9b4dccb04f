"""FreeMatch: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/freematch.py; the PyTorch twin: sesemi_torch/methods/freematch.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import losses
from . import LossInputs, batch_mean, batch_sum
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def update_state(state: dict, probs: jax.Array, momentum) -> dict:
    """USB's FreeMatchThresholingHook.update, on the global batch's weak-view probabilities."""
    num_classes = probs.shape[-1]
    hist = batch_mean(jax.nn.one_hot(probs.argmax(-1), num_classes, dtype=probs.dtype))

    def ema(old, new):
        return old * momentum + (1 - momentum) * new
    return {"time_p": ema(state["time_p"], batch_mean(probs.max(-1))),
            "p_model": ema(state["p_model"], batch_mean(probs)),
            "label_hist": ema(state["label_hist"], hist)}


def _inverse_or_zero(x: jax.Array) -> jax.Array:
    """1 / x, and 0 where x is 0 (USB's replace_inf_to_zero(1 / x))."""
    return jnp.where(x > 0, 1.0 / jnp.where(x > 0, x, 1.0), 0.0)


def fairness(mask: jax.Array, strong_logits: jax.Array, state: dict) -> jax.Array:
    """USB's `entropy_loss`: sum(SumNorm(p_model / label_hist) * log(SumNorm(p_s / hist_s) + 1e-12)),
    p_s the mean strong softmax over the kept images and hist_s their predicted-class histogram;
    0 where no image is kept."""
    probs = jax.nn.softmax(strong_logits)
    kept = batch_sum(mask)
    hist = batch_sum(mask[:, None] * jax.nn.one_hot(probs.argmax(-1), probs.shape[-1], dtype=probs.dtype))
    hist = jax.lax.stop_gradient(hist / jnp.maximum(kept, 1.0))
    mean_probs = batch_sum(mask[:, None] * probs) / jnp.maximum(kept, 1.0)
    target = state["p_model"] * _inverse_or_zero(state["label_hist"])
    target = target / target.sum()
    scaled = mean_probs * _inverse_or_zero(hist)
    scaled = scaled / jnp.where(kept > 0, scaled.sum(), 1.0)
    return jnp.where(kept > 0, jnp.sum(target * jnp.log(scaled + 1e-12)), 0.0)


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    probs = jax.nn.softmax(jax.lax.stop_gradient(inputs.outputs["weak"]["sup"]))
    state = update_state(inputs.state, probs, knobs.ema)
    confidence, pseudo = probs.max(-1), probs.argmax(-1)
    relative = state["p_model"] / state["p_model"].max()
    mask = (confidence >= state["time_p"] * relative[pseudo]).astype(jnp.float32)
    strong = inputs.outputs["strong"]["sup"]
    loss_unlabeled = losses.masked_cross_entropy(strong, pseudo, mask)
    loss_fairness = fairness(mask, strong, state)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "loss_fairness": loss_fairness,
             "mask_rate": mask.mean(), "threshold": state["time_p"]}
    total = loss_sup + knobs.lambda_u * loss_unlabeled + knobs.lambda_f * loss_fairness
    return total, terms, state
