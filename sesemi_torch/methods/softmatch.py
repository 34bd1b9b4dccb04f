"""SoftMatch: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/softmatch.py; the JAX twin: sesemi_jax/methods/softmatch.py."""

from __future__ import annotations

import torch

from .. import losses
from . import LossInputs, batch_mean, batch_var
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def _ema(old, new, momentum):
    return old * momentum + (1 - momentum) * new


def align(probs: torch.Tensor, state: dict, step: int, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(aligned probabilities, next p_model): USB's DistAlignEMAHook, uniform target."""
    p_model = batch_mean(probs) if step == 0 else _ema(state["p_model"], batch_mean(probs), momentum)
    uniform = 1.0 / probs.shape[-1]
    aligned = probs * (uniform + 1e-6) / (p_model + 1e-6)
    return aligned / aligned.sum(-1, keepdim=True), p_model


def loss(inputs: LossInputs):
    knobs, state = inputs.knobs, inputs.state
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    weak = inputs.outputs["weak"]["sup"].detach()
    aligned, p_model = align(weak.softmax(-1), state, inputs.step, knobs.ema)
    confidence = aligned.max(-1).values
    mu = _ema(state["prob_max_mu"], batch_mean(confidence), knobs.ema)
    var = _ema(state["prob_max_var"], batch_var(confidence), knobs.ema)
    below = (confidence - mu).clamp(max=0.0)
    mask = torch.exp(-(below * below) / (2 * var / (knobs.n_sigma ** 2)))
    pseudo = weak.argmax(-1)
    loss_unlabeled = losses.masked_cross_entropy(inputs.outputs["strong"]["sup"], pseudo, mask)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean(),
             "confidence_mean": mu}
    new_state = {"p_model": p_model, "prob_max_mu": mu, "prob_max_var": var}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms, new_state
