"""UDA (Xie et al. 2020, "Unsupervised Data Augmentation for Consistency Training"): the weak
view's prediction, sharpened by `temperature`, is the target of the strongly augmented view,
through a KL divergence kept where the weak view's confidence reaches `threshold`:
CE_sup + lambda_u * mean(mask * KL(softmax(weak / T) || softmax(strong))). FixMatch's views
(USB trains UDA on the same weak and strong augmentations); the weak branch is stop-gradient.

Follows the paper and Google's UDA code (sharpened targets, KL). USB (semilearn/algorithms/uda)
differs in one place: it hands the pseudo-labelling hook probabilities with softmax=False, so
its temperature is never applied and its target is the unsharpened softmax; its cross-entropy
against soft targets has the KL's gradient. Training signal annealing (USB's default: none) is
left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import POSITIVE, PROBABILITY, MethodSpec, register
from .fixmatch import FIXMATCH_VIEWS, WEAK_AND_STRONG


@dataclass
class UDAKnobs:
    # UDA (Xie et al. 2020): defaults of the paper's and USB's CIFAR-10 runs. Training signal
    # annealing (TSA, off by default in USB) is left out.
    lambda_u: float = 1.0
    temperature: float = 0.4  # the weak view's prediction, sharpened: softmax(logits / T)
    threshold: float = 0.8  # keep an image where the weak view's (unsharpened) confidence is >= this


register(MethodSpec("uda", views_per_image=2, view_params=FIXMATCH_VIEWS, branches=WEAK_AND_STRONG,
                    knobs=UDAKnobs, ranges={"threshold": PROBABILITY, "temperature": POSITIVE}))
