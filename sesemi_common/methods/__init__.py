"""The method registry (docs/DESIGN.md section 7): what each training method asks of the trainer.

This package's `__init__` is the machinery (the entry's shape, `register`, the lookups the
trainers use); each shipped method is one file beside it, `sesemi_common/methods/<name>.py`,
holding its description, knobs and registry entry, with its maths in the two same-named twins
`sesemi_jax/methods/<name>.py` and `sesemi_torch/methods/<name>.py`. A plug-in has the same
shape (docs/ADDING_A_METHOD.md).

Framework-free. An entry says which extra heads the network needs, which random view
parameters each unlabeled image gets (drawn by the trainers' samplers, or with numpy by
`HostStream` for lockstep parity), which branches the trainer runs on which views (with
gradient, under stop-gradient, or through the EMA teacher), and the method's own knobs with
their defaults (`method.<name>.<knob>` in the config). The maths lives in one file per
framework, `sesemi_jax.methods.<name>` and `sesemi_torch.methods.<name>`, each with
`apply_views` and `loss`; the trainers only read this entry and call those two functions.
A new method is those two files and one `register(MethodSpec(...))`.

A method may carry state from step to step (docs/DESIGN.md section 10: FreeMatch's running
confidence, SoftMatch's running mean and variance): its entry's `initial_state` builds the
state at step 0 as numpy arrays, each framework holds it in its train state (the JAX
`TrainState.method_state`, a tensor dict beside the PyTorch model), checkpoints it, and hands
it to the method's `loss`, which returns the next state beside its terms. A state per unlabeled
image (FlexMatch's selected labels, `state_per_image`) is sized by the pool and indexed by the
batch's pool positions, `targets["unlabeled_index"]`. docs/methods_state.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

GRAD, STOP_GRADIENT, TEACHER = "grad", "stop_gradient", "teacher"


@dataclass(frozen=True)
class Branch:
    """One forward the trainer runs: the network's `heads` on the unlabeled views named `view`.

    `mode`: `grad` (the loss differentiates through it), `stop_gradient` (its logits are
    targets: in the same backbone call, but no gradient flows back), or `teacher` (the EMA
    variables, in train mode, under stop-gradient, running statistics left unchanged).
    The loss receives every head's logits of every branch under the branch's name.
    """

    name: str
    view: str
    mode: str = GRAD
    heads: tuple[str, ...] = ("sup",)


@dataclass(frozen=True)
class ViewParam:
    """A random parameter drawn per unlabeled image. `kind`: `crop` (int32 (n, 2) offsets in
    [0, 2 * padding], padding = `padding` or else the configured crop's), `flip` (bool (n,)),
    or RandAugment's three (`sesemi_common.randaugment`): `randaugment_ops` (int32 (n, 2)),
    `randaugment_magnitudes` (float32 (n, 2) in [0, 1)) and `cutout` (float32 (n, 3) in [0, 1))."""

    name: str
    kind: str
    padding: int | None = None  # crop only: a method's own shift (FixMatch's 4 px), not augment.translate


@dataclass(frozen=True)
class Range:
    """The values a knob can mean something with: [low, high], open at an end with `open_low` /
    `open_high`."""

    low: float = 0.0
    high: float = math.inf
    open_high: bool = False
    open_low: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low < value if self.open_low else self.low <= value
        return above and (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        if self.high == math.inf:
            if not self.low:
                return "positive" if self.open_low else "zero or positive"
            return f"{'above' if self.open_low else 'at least'} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


# The ranges a knob declares in `MethodSpec.ranges`; a knob it leaves out must be NON_NEGATIVE
# (weights, ramp-up lengths).
NON_NEGATIVE = Range()
PROBABILITY = Range(0.0, 1.0)  # a confidence threshold, a mixing fraction
DECAY = Range(0.0, 1.0, open_high=True)  # an EMA decay or momentum: 1 would never forget
POSITIVE = Range(0.0, open_low=True)  # a temperature: logits / 0 is not a distribution


VIEW_KINDS = ("crop", "flip", "randaugment_ops", "randaugment_magnitudes", "cutout")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    heads: dict[str, int] = field(default_factory=dict)  # extra heads beside "sup": name -> classes
    views_per_image: int = 0  # images the backbone sees per unlabeled image; 0: no unlabeled batch
    view_params: tuple[ViewParam, ...] = ()
    branches: tuple[Branch, ...] = ()
    knobs: type | None = None  # a dataclass of the method's knobs with their defaults
    default_ema_decay: float = 0.0  # used when train.ema_decay is 0 (a teacher needs an EMA)
    module: str = ""  # "{framework}" is replaced by jax or torch; default sesemi_{framework}.methods.<name>
    # (num_classes, knobs) -> {name: float32/int32 numpy array}: the state at step 0. None: no state
    # (the method's loss returns (total, terms); with state it returns (total, terms, new state)).
    initial_state: Callable[..., dict[str, np.ndarray]] | None = None
    # The state holds entries per unlabeled image (FlexMatch's selected labels): initial_state is
    # called as (num_classes, knobs, pool_size), and the loss indexes the entries by the pool
    # positions of the batch's unlabeled images, `targets["unlabeled_index"]`.
    state_per_image: bool = False
    # knob name -> Range of the values it can mean something with (config.validate refuses the
    # rest by name); a knob not listed must be zero or positive (NON_NEGATIVE).
    ranges: dict[str, Range] = field(default_factory=dict)
    # view name -> images per unlabeled image in that view, for views of different sizes (a clean
    # view of n images beside 6n proxy forms); {}: views_per_image shared equally by the views.
    view_images: dict[str, int] = field(default_factory=dict)
    parts: tuple[str, ...] = ()  # a stacked method's parts (`sesemi+entmin`, methods/stacking.py); () otherwise

    def module_for(self, framework: str) -> str:
        return (self.module or f"sesemi_{{framework}}.methods.{self.name}").format(framework=framework)

    @property
    def uses_teacher(self) -> bool:
        return any(branch.mode == TEACHER for branch in self.branches)


# Building blocks the shipped methods share. One translated copy of each unlabeled image (the
# proxy methods show it in all its forms):
TRANSLATED = (ViewParam("offsets", "crop"),)
# Two independently augmented views of each unlabeled image: translation and horizontal flip.
TWO_VIEWS = (ViewParam("offsets_a", "crop"), ViewParam("flips_a", "flip"),
             ViewParam("offsets_b", "crop"), ViewParam("flips_b", "flip"))



_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method; configs made afterwards accept `method.name=<spec.name>`."""
    if stacking.is_stacked(spec.name) and not spec.parts:
        raise ValueError(f"{spec.name!r}: '{stacking.PART_SEPARATOR}' joins the parts of a stacked method; "
                         "name a registered method without it")
    for branch in spec.branches:
        if branch.mode not in (GRAD, STOP_GRADIENT, TEACHER):
            raise ValueError(f"branch {branch.name!r} of {spec.name!r}: mode must be grad, stop_gradient or teacher")
    for param in spec.view_params:
        if param.kind not in VIEW_KINDS:
            raise ValueError(f"view parameter {param.name!r} of {spec.name!r}: kind must be one of {', '.join(VIEW_KINDS)}")
    for branch in spec.branches:
        if set(branch.heads) - {"sup", *spec.heads}:
            raise ValueError(f"branch {branch.name!r} of {spec.name!r} asks for a head the method does not declare")
    _check_view_images(spec)
    if "sup" in spec.heads:
        raise ValueError(f"{spec.name!r}: 'sup' is the supervised head every network has")
    knob_names = {f.name for f in dataclasses.fields(spec.knobs)} if spec.knobs is not None else set()
    if set(spec.ranges) - knob_names:
        raise ValueError(f"{spec.name!r} declares ranges of knobs it does not have: "
                         f"{', '.join(sorted(set(spec.ranges) - knob_names))}")
    _REGISTRY[spec.name] = spec
    return spec


def _check_view_images(spec: MethodSpec) -> None:
    views = {branch.view for branch in spec.branches}
    if spec.view_images:
        if set(spec.view_images) != views or sum(spec.view_images.values()) != spec.views_per_image \
                or min(spec.view_images.values()) < 1:
            raise ValueError(f"{spec.name!r}: view_images {spec.view_images} must give each of its views "
                             f"{sorted(views)} a positive count, summing to views_per_image {spec.views_per_image}")
    elif views and spec.views_per_image % len(views):
        raise ValueError(f"{spec.name!r}: views_per_image {spec.views_per_image} is not a multiple of its "
                         f"{len(views)} views: give each view's images per unlabeled image in view_images")


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> MethodSpec:
    """The registered method `name`, or the stack of registered parts `a+b` composed from them."""
    if name not in _REGISTRY and stacking.is_stacked(name):
        return stacking.compose(name, _REGISTRY)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}: one of {', '.join(_REGISTRY)}") from None


def knob_defaults() -> dict[str, Any]:
    """{method name: knob dataclass instance with defaults} for every method that has knobs."""
    return {name: spec.knobs() for name, spec in _REGISTRY.items() if spec.knobs is not None}


def knob_range(method: str, knob: str) -> Range:
    """The range `method` declares for `knob` (NON_NEGATIVE unless it declares another)."""
    return get(method).ranges.get(knob, NON_NEGATIVE)


def knobs(config) -> Any:
    """The chosen method's knobs (`config.method.<name>`), or None for a method without any; for
    a stacked method, {part: its knobs} (each part keeps its own section, `method.<part>`)."""
    parts = get(config.method.name).parts
    if parts:
        return {part: getattr(config.method, part, None) for part in parts}
    return getattr(config.method, config.method.name, None)


def initial_method_state(config, num_classes: int, pool_size: int | None = None) -> dict[str, np.ndarray]:
    """The configured method's state at step 0 (numpy, so both frameworks start from the same
    numbers); {} for a method without state. `pool_size`: the unlabeled pool's images, which a
    method with per-image state (`state_per_image`) must be given."""
    spec = get(config.method.name)
    if spec.initial_state is None:
        return {}
    if spec.state_per_image:
        if pool_size is None:
            raise ValueError(f"{spec.name!r} keeps state per unlabeled image: its initial state needs the pool size")
        state = spec.initial_state(num_classes, knobs(config), int(pool_size))
    else:
        state = spec.initial_state(num_classes, knobs(config))
    return {name: np.asarray(value) for name, value in state.items()}


def ema_decay(config) -> float:
    """The EMA decay in force: `train.ema_decay`, or the method's default when that is 0
    (a teacher needs an EMA); 0 means no EMA is kept."""
    return config.train.ema_decay or get(config.method.name).default_ema_decay


def unlabeled_batch(config) -> int:
    """Unlabeled images per step: `train.batch_unlabeled`, or 0 for a method that uses none."""
    return config.train.batch_unlabeled if get(config.method.name).views_per_image else 0


def view_images(spec: MethodSpec) -> dict[str, int]:
    """{view name: images per unlabeled image in it}, in the order the branches name the views:
    the entry's `view_images`, or else views_per_image shared equally (SESEMI's one proxy view 6,
    each of the Pi-model's two 1)."""
    views = list(dict.fromkeys(branch.view for branch in spec.branches))
    if spec.view_images:
        return {view: spec.view_images[view] for view in views}
    return {view: spec.views_per_image // len(views) for view in views}  # {} without views


def view_sizes(config) -> dict[str, int]:
    """{view name: images in that view batch per step}: the unlabeled images per step times the
    view's images per unlabeled image (6n for SESEMI's proxy view, n for entmin's; in
    sesemi+entmin both, side by side). {} for a method without unlabeled images."""
    n = unlabeled_batch(config)
    return {view: n * k for view, k in view_images(get(config.method.name)).items()} if n else {}


def images_per_step(config) -> int:
    """Images the backbone sees per step (teacher forwards not counted): labeled plus every view."""
    return config.train.batch_labeled + unlabeled_batch(config) * get(config.method.name).views_per_image


from . import stacking  # noqa: E402  (stacked names, composed by `get`)

# The shipped methods register themselves on import, in this order (the order the CLI lists).
from . import supervised, proxy, pi_model, mean_teacher, entmin, fixmatch, freematch, softmatch, uda, flexmatch  # noqa: E402,F401
# Their knobs and building blocks, by the names code has long imported from here.
from .entmin import EntminKnobs  # noqa: E402,F401
from .fixmatch import FIXMATCH_SHIFT, FIXMATCH_VIEWS, FixMatchKnobs  # noqa: E402,F401
from .flexmatch import FlexMatchKnobs  # noqa: E402,F401
from .freematch import FreeMatchKnobs  # noqa: E402,F401
from .pi_model import ConsistencyKnobs  # noqa: E402,F401
from .proxy import ProxyKnobs  # noqa: E402,F401
from .softmatch import SoftMatchKnobs  # noqa: E402,F401
from .uda import UDAKnobs  # noqa: E402,F401
