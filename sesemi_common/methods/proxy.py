"""SESEMI (6 proxy classes, Tran 2019) and rotation prediction (4, Gidaris 2018): every
unlabeled image, translated, in all its proxy forms; CE_sup + w(t) * CE_self.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import TRANSLATED, Branch, MethodSpec, register


@dataclass
class ProxyKnobs:
    weight: float = 1.0  # w in CE_sup + w * CE_self
    rampup_steps: int = 0  # 0: constant w; T > 0: w * exp(-5 (1 - min(t, T)/T)^2)


register(MethodSpec("sesemi", heads={"self": 6}, views_per_image=6, view_params=TRANSLATED,
                    branches=(Branch("self", "proxy", heads=("self",)),), knobs=ProxyKnobs,
                    module="sesemi_{framework}.methods.proxy"))
register(MethodSpec("rotation", heads={"self": 4}, views_per_image=4, view_params=TRANSLATED,
                    branches=(Branch("self", "proxy", heads=("self",)),), knobs=ProxyKnobs,
                    module="sesemi_{framework}.methods.proxy"))
