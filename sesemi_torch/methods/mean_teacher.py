"""PyTorch twin of sesemi_jax/methods/mean_teacher.py.

Mean Teacher (Tarvainen and Valpola 2017): the EMA teacher's softmax on view `b` is the target
of the student's softmax on view `a` (MSE, sigmoid ramp-up). The trainer runs the teacher
branch through the EMA variables under stop-gradient (registry: mode `teacher`)."""

from __future__ import annotations

from .pi_model import apply_views, consistency_loss  # the same two views  # noqa: F401
from . import LossInputs


def loss(inputs: LossInputs):
    return consistency_loss(inputs, "student", "teacher")
