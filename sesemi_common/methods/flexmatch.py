"""FlexMatch (Zhang et al. 2021, "FlexMatch: Boosting Semi-Supervised Learning with Curriculum
Pseudo Labeling"): FixMatch's views, branches and hard pseudo-labels, with a threshold per class
that follows how far the network has learned that class (curriculum pseudo-labeling).

The state is per unlabeled image (`state_per_image`): `selected_label` (int32, one per pool image,
-1 until the image's weak-view confidence first reaches the fixed `threshold`, then the class it
was last predicted as when it did) and `classwise_acc` (float32 (C,), each class's learning
status). A step, in USB's order (semilearn/algorithms/flexmatch: FlexMatchThresholdingHook):
1. the mask reads the state from before this step: an image counts where its confidence reaches
   `threshold * acc[c] / (2 - acc[c])`, c its predicted class (the paper's convex mapping);
2. the images whose confidence reaches `threshold` itself write their predicted class into
   `selected_label` at their pool positions (`targets["unlabeled_index"]`);
3. `classwise_acc` is recomputed from the counts of `selected_label` for the next step: each
   class's count over the largest count, the -1s (unused images) taking part in that largest
   count with `thresh_warmup`, not without; left as it was while every image holds one value
   (at the start, all -1: the first steps keep every image, as in USB).
The loss: CE_sup + lambda_u * mean(mask * CE(strong, argmax weak)), as FixMatch's.

Follows USB with its CIFAR defaults (hard labels, so its temperature `T` plays no part and is
left out). Differences from USB:
- The counts and the scatter are over the global batch (JAX under jit; PyTorch all-gathers the
  indices and predictions), so the state is the same in every process. USB scatters each GPU's
  own share into its own copy, so its copies drift apart under DDP.
- An image that appears twice in one batch (a batch that straddles two epochs of the walk)
  writes the class of its last selected copy; USB leaves that to the scatter, which does not
  define which write wins.
- USB divides the counts as Python integers (float64), then stores float32; here the division is
  float32 (exact integers, so at most one rounding apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PROBABILITY, MethodSpec, register
from .fixmatch import FIXMATCH_VIEWS, WEAK_AND_STRONG


@dataclass
class FlexMatchKnobs:
    # FlexMatch (Zhang et al. 2021): FixMatch's fixed threshold scaled per class by its learning
    # status acc[c] (convex mapping acc / (2 - acc)); defaults are USB's CIFAR ones.
    threshold: float = 0.95  # the fixed threshold (USB's p_cutoff): the scale, and what marks an image selected
    lambda_u: float = 1.0  # weight of the masked unlabeled cross-entropy
    thresh_warmup: bool = True  # count the unused images (-1) in the largest count, so acc rises from 0


def flexmatch_initial_state(num_classes: int, knobs, pool_size: int) -> dict[str, np.ndarray]:
    """USB's FlexMatchThresholdingHook: no image selected yet (-1), every class's status 0."""
    return {"selected_label": np.full(pool_size, -1, np.int32), "classwise_acc": np.zeros(num_classes, np.float32)}


register(MethodSpec("flexmatch", views_per_image=2, view_params=FIXMATCH_VIEWS, branches=WEAK_AND_STRONG,
                    knobs=FlexMatchKnobs, initial_state=flexmatch_initial_state, state_per_image=True,
                    ranges={"threshold": PROBABILITY}))
