"""Loss terms of SESEMI (docs/DESIGN.md section 2): batch-mean cross-entropies and the self-term weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of (N, K) logits against (N,) integer labels."""
    return F.cross_entropy(logits, labels)


def sigmoid_rampup(step: int, rampup_steps: int) -> float:
    """`exp(-5 (1 - min(t, T)/T)^2)`: 1.0 from step T on, and always 1.0 when T == 0 (no ramp-up)."""
    if rampup_steps < 0:
        raise ValueError(f"rampup_steps must be zero or positive, got {rampup_steps}")
    if rampup_steps == 0:
        return 1.0
    remaining = (rampup_steps - min(step, rampup_steps)) / rampup_steps
    return math.exp(-5.0 * remaining * remaining)


def joint_loss(sup_logits: torch.Tensor, labels: torch.Tensor, self_logits: torch.Tensor | None,
               self_targets: torch.Tensor | None, weight) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`CE(sup_logits, labels) + weight * CE(self_logits, self_targets)` and its named terms.

    `self_logits=None` (no self-supervised batch) makes the self term 0.
    """
    loss_sup = cross_entropy(sup_logits, labels)
    if self_logits is None:
        loss_self = torch.zeros_like(loss_sup)
    else:
        loss_self = cross_entropy(self_logits, self_targets)
    return loss_sup + weight * loss_self, {"loss_sup": loss_sup, "loss_self": loss_self}


def softmax_mse(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Mean over batch and classes of (softmax(logits) - softmax(target_logits))^2: the
    consistency of the Pi-model and Mean Teacher (Tarvainen and Valpola's `softmax_mse_loss`
    divided by the batch size)."""
    return F.mse_loss(logits.softmax(-1), target_logits.softmax(-1))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the entropy -sum p log p of softmax(logits), in nats."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1).mean()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the whole batch of `mask * CE(logits, labels)`: masked-out examples count as 0
    in the mean (FixMatch's unlabeled term divides by all mu*B images, not by the kept ones)."""
    return (mask * F.cross_entropy(logits, labels, reduction="none")).mean()


def sharpened_log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / T): the temperature-sharpened target distribution (UDA's T = 0.4,
    MixMatch's sharpening p^(1/T) / sum p^(1/T) in the log domain), as log-probabilities."""
    return (logits / temperature).log_softmax(-1)


def kl_divergence(target_log_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per example, KL(p || softmax(logits)) = sum p (log p - log q) with log p = `target_log_probs`:
    (N,), so a method can mask and average it (UDA's consistency). F.kl_div(log q, log p,
    log_target=True, reduction="none") summed over classes."""
    return F.kl_div(logits.log_softmax(-1), target_log_probs, reduction="none", log_target=True).sum(-1)
