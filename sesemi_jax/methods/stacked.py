"""Stacked methods (`method.name=sesemi+entmin`): the JAX side, which only runs each part's own
two functions. The walk over the parts, the renaming and the sum (CE_sup once, each part's terms as
`<part>/<term>`) are plain dict work, written once in sesemi_common/methods/stacking.py; the
PyTorch twin: sesemi_torch/methods/stacked.py."""

from __future__ import annotations

from sesemi_common.methods import stacking

from . import LossInputs, Views


def apply_views(images, params, config) -> Views:
    return stacking.apply_views("jax", images, params, config)


def loss(inputs: LossInputs):
    return stacking.loss("jax", inputs)
