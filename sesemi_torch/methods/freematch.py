"""FreeMatch: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/freematch.py; the JAX twin: sesemi_jax/methods/freematch.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import losses
from . import LossInputs, batch_mean, batch_sum
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


@torch.no_grad()
def update_state(state: dict, probs: torch.Tensor, momentum: float) -> dict:
    """USB's FreeMatchThresholingHook.update, on the global batch's weak-view probabilities."""
    hist = batch_mean(F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype))

    def ema(old, new):
        return old * momentum + (1 - momentum) * new
    return {"time_p": ema(state["time_p"], batch_mean(probs.max(-1).values)),
            "p_model": ema(state["p_model"], batch_mean(probs)),
            "label_hist": ema(state["label_hist"], hist)}


def _inverse_or_zero(x: torch.Tensor) -> torch.Tensor:
    """1 / x, and 0 where x is 0 (USB's replace_inf_to_zero(1 / x))."""
    return torch.where(x > 0, 1.0 / torch.where(x > 0, x, torch.ones_like(x)), torch.zeros_like(x))


def fairness(mask: torch.Tensor, strong_logits: torch.Tensor, state: dict) -> torch.Tensor:
    """USB's `entropy_loss`: sum(SumNorm(p_model / label_hist) * log(SumNorm(p_s / hist_s) + 1e-12)),
    p_s the mean strong softmax over the kept images and hist_s their predicted-class histogram;
    0 where no image is kept."""
    probs = strong_logits.softmax(-1)
    kept = batch_sum(mask)
    hist = batch_sum(mask[:, None] * F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype))
    hist = (hist / kept.clamp(min=1.0)).detach()
    mean_probs = batch_sum(mask[:, None] * probs) / kept.clamp(min=1.0)
    target = state["p_model"] * _inverse_or_zero(state["label_hist"])
    target = target / target.sum()
    scaled = mean_probs * _inverse_or_zero(hist)
    scaled = scaled / torch.where(kept > 0, scaled.sum(), torch.ones_like(kept))
    return torch.where(kept > 0, (target * torch.log(scaled + 1e-12)).sum(), torch.zeros_like(kept))


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    probs = inputs.outputs["weak"]["sup"].detach().softmax(-1)
    state = update_state(inputs.state, probs, knobs.ema)
    confidence, pseudo = probs.max(-1)
    relative = state["p_model"] / state["p_model"].max()
    mask = (confidence >= state["time_p"] * relative[pseudo]).float()
    strong = inputs.outputs["strong"]["sup"]
    loss_unlabeled = losses.masked_cross_entropy(strong, pseudo, mask)
    loss_fairness = fairness(mask, strong, state)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "loss_fairness": loss_fairness,
             "mask_rate": mask.mean(), "threshold": state["time_p"]}
    total = loss_sup + knobs.lambda_u * loss_unlabeled + knobs.lambda_f * loss_fairness
    return total, terms, state
