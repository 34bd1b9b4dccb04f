"""Mean Teacher (Tarvainen and Valpola 2017): the EMA teacher's softmax on view `b` is the
target of the student's softmax on view `a` (MSE, sigmoid ramp-up). The trainer runs the
teacher branch through the EMA variables under stop-gradient (registry: mode `teacher`).
"""

from __future__ import annotations

from . import TEACHER, TWO_VIEWS, Branch, MethodSpec, register
from .pi_model import ConsistencyKnobs


register(MethodSpec("mean_teacher", views_per_image=2, view_params=TWO_VIEWS,
                    branches=(Branch("student", "a"), Branch("teacher", "b", TEACHER)),
                    knobs=ConsistencyKnobs, default_ema_decay=0.999))
