"""Entropy minimization (Grandvalet and Bengio 2005): CE_sup + w(t) * the mean entropy of
the supervised head's predictions on one augmented view of each unlabeled image.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import TWO_VIEWS, Branch, MethodSpec, register


@dataclass
class EntminKnobs:
    weight: float = 0.1  # weight of the mean prediction entropy on unlabeled images
    rampup_steps: int = 0


register(MethodSpec("entmin", views_per_image=1, view_params=TWO_VIEWS[:2],
                    branches=(Branch("unlabeled", "a"),), knobs=EntminKnobs))
