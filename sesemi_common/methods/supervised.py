"""The supervised baseline: CE on the labeled batch, no unlabeled batch. `loss_self` is
logged as 0 so its records line up with SESEMI's.
"""

from __future__ import annotations

from . import MethodSpec, register


register(MethodSpec("supervised"))
