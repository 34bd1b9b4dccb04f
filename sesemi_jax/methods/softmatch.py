"""SoftMatch: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/softmatch.py; the PyTorch twin: sesemi_torch/methods/softmatch.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import losses
from . import LossInputs, batch_mean, batch_var
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def _ema(old, new, momentum):
    return old * momentum + (1 - momentum) * new


def align(probs: jax.Array, state: dict, step, momentum) -> tuple[jax.Array, jax.Array]:
    """(aligned probabilities, next p_model): USB's DistAlignEMAHook, uniform target."""
    p_model = jnp.where(step == 0, batch_mean(probs), _ema(state["p_model"], batch_mean(probs), momentum))
    uniform = 1.0 / probs.shape[-1]
    aligned = probs * (uniform + 1e-6) / (p_model + 1e-6)
    return aligned / aligned.sum(-1, keepdims=True), p_model


def loss(inputs: LossInputs):
    knobs, state = inputs.knobs, inputs.state
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    weak = jax.lax.stop_gradient(inputs.outputs["weak"]["sup"])
    aligned, p_model = align(jax.nn.softmax(weak), state, inputs.step, knobs.ema)
    confidence = aligned.max(-1)
    mu = _ema(state["prob_max_mu"], batch_mean(confidence), knobs.ema)
    var = _ema(state["prob_max_var"], batch_var(confidence), knobs.ema)
    below = jnp.minimum(confidence - mu, 0.0)
    mask = jnp.exp(-(below * below) / (2 * var / (knobs.n_sigma ** 2)))
    pseudo = weak.argmax(-1)
    loss_unlabeled = losses.masked_cross_entropy(inputs.outputs["strong"]["sup"], pseudo, mask)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean(),
             "confidence_mean": mu}
    new_state = {"p_model": p_model, "prob_max_mu": mu, "prob_max_var": var}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms, new_state
