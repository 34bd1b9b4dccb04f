"""FixMatch (Sohn et al. 2020): the prediction on a weakly augmented view (flip, translation by
up to 4 px) becomes a hard pseudo-label where its softmax confidence reaches `threshold`, and
the strongly augmented view (its own flip and translation, RandAugment, Cutout) is trained to
predict it: CE_sup + lambda_u * mean(mask * CE(strong, argmax weak)). The trainer runs the
weak branch under stop-gradient (registry: mode `stop_gradient`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import GRAD, PROBABILITY, STOP_GRADIENT, Branch, MethodSpec, ViewParam, register


@dataclass
class FixMatchKnobs:
    threshold: float = 0.95  # keep a pseudo-label where the weak view's softmax confidence is >= this
    lambda_u: float = 1.0  # weight of the unlabeled term: CE_sup + lambda_u * mean(mask * CE(strong, pseudo))
    # mu (7 unlabeled images per labeled one in the paper) is the batch ratio
    # train.batch_unlabeled / train.batch_labeled, set in the config (the fixmatch preset), not here.


# FixMatch (Sohn et al. 2020): the weak view is a flip and a translation by up to 12.5% of 32 px
# (4 px, reflect padding), fixed by the method whatever augment.translate says (SESEMI's 2 px);
# the strong view is its own flip and translation, then RandAugment (2 ops) and Cutout.
FIXMATCH_SHIFT = 4
FIXMATCH_VIEWS = (ViewParam("weak_offsets", "crop", FIXMATCH_SHIFT), ViewParam("weak_flips", "flip"),
                  ViewParam("strong_offsets", "crop", FIXMATCH_SHIFT), ViewParam("strong_flips", "flip"),
                  ViewParam("strong_ops", "randaugment_ops"), ViewParam("strong_magnitudes", "randaugment_magnitudes"),
                  ViewParam("strong_cutout", "cutout"))
# The two branches FixMatch and the methods built on it (FreeMatch, SoftMatch, UDA) run.
WEAK_AND_STRONG = (Branch("weak", "weak", STOP_GRADIENT), Branch("strong", "strong", GRAD))

register(MethodSpec("fixmatch", views_per_image=2, view_params=FIXMATCH_VIEWS, branches=WEAK_AND_STRONG,
                    knobs=FixMatchKnobs, ranges={"threshold": PROBABILITY}))
