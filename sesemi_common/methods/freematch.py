"""FreeMatch (Wang et al. 2023, "FreeMatch: Self-adaptive Thresholding for Semi-supervised
Learning"): FixMatch's views, branches and hard pseudo-labels, with a self-adaptive threshold.
The state holds running (EMA, momentum `ema`) statistics of the weak view's softmax over the
global batch: `time_p` (mean confidence), `p_model` (mean class distribution) and `label_hist`
(histogram of the predicted classes). After updating them with this batch, an image counts where
its confidence reaches `time_p * p_model[c] / max(p_model)`, c its predicted class; the
self-adaptive fairness term (weight `lambda_f`) is the negative cross-entropy between the
histogram-normalized `p_model` and the kept strong predictions' histogram-normalized mean.

Follows USB (semilearn/algorithms/freematch: FreeMatchThresholingHook, `entropy_loss`) with its
defaults (hard labels, no quantile, no clipping, whose options are left out). One difference:
USB's fairness term is computed on each GPU's share of the batch; here on the global batch,
as the state is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import DECAY, MethodSpec, register
from .fixmatch import FIXMATCH_VIEWS, WEAK_AND_STRONG


@dataclass
class FreeMatchKnobs:
    # FreeMatch (Wang et al. 2023): a self-adaptive threshold, the running mean confidence
    # time_p times the running class distribution p_model / max(p_model); defaults are USB's.
    lambda_u: float = 1.0  # weight of the masked unlabeled cross-entropy
    lambda_f: float = 0.01  # weight of the self-adaptive fairness term (USB's ent_loss_ratio)
    ema: float = 0.999  # momentum of the running statistics (USB's ema_p)


def freematch_initial_state(num_classes: int, knobs) -> dict[str, np.ndarray]:
    """USB's FreeMatchThresholingHook: uniform p_model and label_hist, time_p = 1/C."""
    uniform = np.full(num_classes, 1.0 / num_classes, np.float32)
    return {"time_p": np.float32(1.0 / num_classes), "p_model": uniform, "label_hist": uniform.copy()}


register(MethodSpec("freematch", views_per_image=2, view_params=FIXMATCH_VIEWS, branches=WEAK_AND_STRONG,
                    knobs=FreeMatchKnobs, initial_state=freematch_initial_state, ranges={"ema": DECAY}))
