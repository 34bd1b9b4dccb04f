"""Stacked methods (`method.name=sesemi+entmin`): the JAX side, which only runs each part's own
two functions. The renaming and the sum (CE_sup once, each part's terms as `<part>/<term>`):
sesemi_common/methods/stacking.py; the PyTorch twin: sesemi_torch/methods/stacked.py."""

from __future__ import annotations

import importlib

from sesemi_common.methods import stacking

from . import LossInputs, Views, registry


def _part_module(part: str):
    return importlib.import_module(registry.get(part).module_for("jax"))


def apply_views(images, params, config) -> Views:
    """Each part's views and targets from its own view parameters, renamed `<part>.<name>`."""
    views, targets = {}, {}
    for part in registry.get(config.method.name).parts:
        part_views, part_targets = _part_module(part).apply_views(
            images, stacking.of_part(part, params), stacking.part_config(config, part))
        views.update(stacking.with_prefix(part, part_views))
        targets.update(stacking.with_prefix(part, part_targets))
    return views, targets


def loss(inputs: LossInputs):
    """CE_sup + each part's unlabeled terms; `inputs.knobs` is {part: its knobs} (methods.knobs)."""
    results = {}
    for part in inputs.knobs:
        out = _part_module(part).loss(stacking.part_inputs(inputs, part))
        results[part] = out if len(out) == 3 else (*out, {})
    return stacking.sum_losses(results)
