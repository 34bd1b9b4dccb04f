"""The Pi-model (Laine and Aila 2017): two stochastic views of each unlabeled image, the
mean squared difference of their softmax outputs, both with gradient, weighted by a sigmoid
ramp-up: CE_sup + w(t) * MSE(softmax(a), softmax(b)).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import TWO_VIEWS, Branch, MethodSpec, register


@dataclass
class ConsistencyKnobs:
    weight: float = 10.0  # maximum weight of the consistency term (Laine and Aila 2017 use 100 with sums)
    rampup_steps: int = 500  # sigmoid ramp-up of the weight, as above


register(MethodSpec("pi_model", views_per_image=2, view_params=TWO_VIEWS,
                    branches=(Branch("a", "a"), Branch("b", "b")), knobs=ConsistencyKnobs))
