"""SoftMatch (Chen et al. 2023, "SoftMatch: Addressing the Quantity-Quality Trade-off in
Semi-supervised Learning"): FixMatch's views, branches and hard pseudo-labels, but every
pseudo-label counts, weighted by a Gaussian of its confidence truncated at the running mean:
weight 1 at or above `prob_max_mu`, exp(-(conf - mu)^2 / (2 var / n_sigma^2)) below it. The
confidence is that of the weak view's softmax after uniform distribution alignment
(probs * (1/C) / p_model, renormalized). The state holds the running (EMA, momentum `ema`)
`p_model` (mean weak softmax), `prob_max_mu` and `prob_max_var` (mean and unbiased variance of
the aligned confidence), all over the global batch and updated before they are used.

Follows USB (semilearn/algorithms/softmatch, SoftMatchWeightingHook, DistAlignEMAHook with a
uniform target) with its defaults (hard labels, one mean and variance for all classes: the
per-class option is left out). USB's p_model starts as None and becomes the first batch's mean:
here it is replaced by that mean at step 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import DECAY, MethodSpec, register
from .fixmatch import FIXMATCH_VIEWS, WEAK_AND_STRONG


@dataclass
class SoftMatchKnobs:
    # SoftMatch (Chen et al. 2023): every pseudo-label counts, weighted by a truncated Gaussian of
    # its confidence around the running mean, with distribution alignment; defaults are USB's.
    lambda_u: float = 1.0
    ema: float = 0.999  # momentum of the running mean and variance and of the alignment's p_model (USB's ema_p)
    n_sigma: float = 2.0  # the Gaussian's width: variance / n_sigma^2
    # Distribution alignment to a uniform class distribution is always on, as in USB (whose
    # dist_align flag the algorithm never reads).


def softmatch_initial_state(num_classes: int, knobs) -> dict[str, np.ndarray]:
    """USB's SoftMatchWeightingHook (mu = 1/C, var = 1) and DistAlignEMAHook (p_model, which USB
    starts as None and sets to the first batch's mean: here its value is replaced at step 0)."""
    return {"prob_max_mu": np.float32(1.0 / num_classes), "prob_max_var": np.float32(1.0),
            "p_model": np.full(num_classes, 1.0 / num_classes, np.float32)}


register(MethodSpec("softmatch", views_per_image=2, view_params=FIXMATCH_VIEWS, branches=WEAK_AND_STRONG,
                    knobs=SoftMatchKnobs, initial_state=softmatch_initial_state, ranges={"ema": DECAY}))
