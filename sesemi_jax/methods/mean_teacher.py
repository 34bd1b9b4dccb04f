"""Mean Teacher: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/mean_teacher.py; the PyTorch twin: sesemi_torch/methods/mean_teacher.py."""

from __future__ import annotations

from .pi_model import apply_views, consistency_loss  # the same two views  # noqa: F401
from . import LossInputs


def loss(inputs: LossInputs):
    return consistency_loss(inputs, "student", "teacher")
