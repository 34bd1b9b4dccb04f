"""Stacked methods (docs/DESIGN.md section 10): `method.name=sesemi+entmin` trains both parts at once.

A stacked name is composed on demand by `methods.get` from registered parts; it is never
registered, so the CLI's list of methods and the config's knob sections stay those of the parts
(`method.sesemi.*`, `method.entmin.*` configure each part, as they do alone).

The composed entry unites the parts': the extra heads (a head named by two parts is refused:
each part trains its own), and the view parameters, views, branches and state, each renamed
`<part>.<name>` so two parts' `a` views or `offsets` never meet. Each view keeps its own size
(`view_images`: SESEMI's 6n proxy images beside entmin's n), so the parts' views need not
share one. The loss is CE_sup once plus every part's own unlabeled terms, the parts' terms
logged as `<part>/<term>` (TensorBoard groups a tag by what precedes its `/`).

The twin modules `sesemi_{jax,torch}.methods.stacked` only load the parts' modules; the renaming
and the sum live here, once, since they are plain dict work and `+`/`-` on either framework's
arrays.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

import numpy as np

PART_SEPARATOR = "+"  # sesemi+entmin
NAME_SEPARATOR = "."  # sesemi.proxy: a part's view, view parameter, branch, target or state
TERM_SEPARATOR = "/"  # sesemi/loss_self: a part's logged term
SUP_TERM = "loss_sup"  # every part's loss includes CE_sup and logs it under this name


def is_stacked(name: str) -> bool:
    return PART_SEPARATOR in name


def part_names(name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in name.split(PART_SEPARATOR))


def compose(name: str, registry: Mapping[str, Any]):
    """The `MethodSpec` of the stacked `name` from the parts in `registry`; ValueError (one line)
    for an unknown part, a part named twice, a part without unlabeled views or heads that clash."""
    from . import Branch, MethodSpec, ViewParam, view_images  # the package imports this module lazily

    parts = part_names(name)
    known = ", ".join(n for n in registry)
    for part in parts:
        if part not in registry:
            raise ValueError(f"unknown method {name!r}: part {part!r} is not a registered method (one of {known})")
    if len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r} names a part twice: stack different methods, e.g. sesemi+entmin")
    specs = [registry[part] for part in parts]
    for spec in specs:
        if not spec.views_per_image:
            raise ValueError(f"method {name!r}: part {spec.name!r} trains on no unlabeled images, so it adds nothing "
                             "to stack (every part's loss already holds CE_sup)")
    heads: dict[str, int] = {}
    for spec in specs:
        for head, classes in spec.heads.items():
            if head in heads:
                raise ValueError(f"method {name!r}: parts {_owner(specs, head)!r} and {spec.name!r} both declare the "
                                 f"head {head!r}: each part needs heads of its own")
            heads[head] = classes
    return MethodSpec(
        name=name,
        heads=heads,
        views_per_image=sum(spec.views_per_image for spec in specs),
        view_params=tuple(ViewParam(prefixed(spec.name, p.name), p.kind, p.padding)
                          for spec in specs for p in spec.view_params),
        branches=tuple(Branch(prefixed(spec.name, b.name), prefixed(spec.name, b.view), b.mode, b.heads)
                       for spec in specs for b in spec.branches),
        view_images={prefixed(spec.name, view): k for spec in specs for view, k in view_images(spec).items()},
        default_ema_decay=max(spec.default_ema_decay for spec in specs),
        module="sesemi_{framework}.methods.stacked",
        initial_state=_initial_state(specs) if any(spec.initial_state for spec in specs) else None,
        state_per_image=any(spec.state_per_image for spec in specs),
        parts=parts,
    )


def _owner(specs, head: str) -> str:
    return next(spec.name for spec in specs if head in spec.heads)


def _initial_state(specs):
    def initial_state(num_classes: int, knobs: Mapping[str, Any], pool_size: int | None = None
                      ) -> dict[str, np.ndarray]:
        def part_state(spec):  # a part with state per image (FlexMatch) is sized by the pool
            extra = (pool_size,) if spec.state_per_image else ()
            return spec.initial_state(num_classes, knobs[spec.name], *extra)
        return {prefixed(spec.name, key): value for spec in specs if spec.initial_state
                for key, value in part_state(spec).items()}
    return initial_state


def prefixed(part: str, name: str) -> str:
    return f"{part}{NAME_SEPARATOR}{name}"


def with_prefix(part: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` renamed `<part>.<name>`: what a part's apply_views or loss returns, in the stack's names."""
    return {prefixed(part, key): value for key, value in values.items()}


def of_part(part: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that belong to `part`, in the part's own names."""
    start = prefixed(part, "")
    return {key[len(start):]: value for key, value in values.items() if key.startswith(start)}


def part_config(config, part: str):
    """`config` as the part alone sees it: `method.name=<part>` (its apply_views may read its own
    registry entry, e.g. the proxy forms from the `self` head's classes)."""
    return dataclasses.replace(config, method=dataclasses.replace(config.method, name=part))


def part_inputs(inputs, part: str):
    """A stacked loss's `LossInputs` (either framework's) as the part's own loss expects them: its
    branches' outputs, its targets (with the unlabeled images' `true_labels` and pool positions), its knobs, its state."""
    targets = of_part(part, inputs.targets)
    for shared in ("true_labels", "unlabeled_index"):  # what the trainer adds for every method, unprefixed
        if shared in inputs.targets:
            targets[shared] = inputs.targets[shared]
    return inputs._replace(outputs=of_part(part, inputs.outputs), targets=targets, knobs=inputs.knobs[part],
                           state=of_part(part, inputs.state or {}))


def sum_losses(results: Mapping[str, tuple]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(total, terms, next state) of the stack from each part's (total, terms, next state).

    Each part's total is CE_sup plus its unlabeled terms; CE_sup is counted once: total = CE_sup +
    sum over parts of (part total - part CE_sup). Every part computes CE_sup from the same logits,
    so the parts' values are equal; the first part's is the one logged, as `loss_sup`."""
    for part, (_, terms, _) in results.items():
        if SUP_TERM not in terms:
            raise ValueError(f"part {part!r} of a stacked method logs no {SUP_TERM!r} term: a part's loss must "
                             f"be CE_sup plus its own terms and log CE_sup as {SUP_TERM!r} (docs/ADDING_A_METHOD.md)")
    loss_sup = next(iter(results.values()))[1][SUP_TERM]
    total = loss_sup
    terms = {SUP_TERM: loss_sup}
    state = {}
    for part, (part_total, part_terms, part_state) in results.items():
        total = total + (part_total - part_terms[SUP_TERM])
        terms.update({f"{part}{TERM_SEPARATOR}{key}": value for key, value in part_terms.items() if key != SUP_TERM})
        state.update(with_prefix(part, part_state or {}))
    return total, terms, state


def part_module(framework: str, part: str):
    """The part's maths in `framework` (jax or torch): its `apply_views` and `loss`."""
    from . import get  # the package imports this module lazily
    return importlib.import_module(get(part).module_for(framework))


def apply_views(framework: str, images, params, config):
    """Each part's views and targets from its own view parameters, renamed `<part>.<name>`: the
    body of both twins' `apply_views` (plain dict work over either framework's arrays)."""
    from . import get
    views, targets = {}, {}
    for part in get(config.method.name).parts:
        part_views, part_targets = part_module(framework, part).apply_views(
            images, of_part(part, params), part_config(config, part))
        views.update(with_prefix(part, part_views))
        targets.update(with_prefix(part, part_targets))
    return views, targets


def loss(framework: str, inputs):
    """CE_sup + each part's unlabeled terms; `inputs.knobs` is {part: its knobs} (methods.knobs):
    the body of both twins' `loss`."""
    results = {}
    for part in inputs.knobs:
        out = part_module(framework, part).loss(part_inputs(inputs, part))
        results[part] = out if len(out) == 3 else (*out, {})
    return sum_losses(results)
