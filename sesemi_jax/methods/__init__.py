"""Training methods as plug-ins (docs/DESIGN.md section 7), the JAX side.

The registry (`sesemi_common.methods`) says what a method asks of the trainer; the method's
module here holds its maths, as two pure functions that run inside the jitted step:

    apply_views(images, params, config) -> (views, targets)
        uint8 NHWC unlabeled images and their drawn view parameters -> {view name: uint8
        images} and {name: targets the loss needs} (SESEMI's proxy labels).
    loss(inputs: LossInputs) -> (total, {term name: value})
        or, for a method whose registry entry declares `initial_state`,
        (total, {term name: value}, next state): `inputs.state` is the state before the step.

`sample_views` draws the parameters the registry declares; `sesemi_common.sampling` draws
the very same ones with numpy for lockstep parity, and `sesemi_torch.methods` holds the twins.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sesemi_common import methods as registry
from sesemi_common.config import Config
from sesemi_common.sampling import REFERENCE_SIZE, view_shift

from .. import randaugment, transforms

Views = tuple[dict[str, jax.Array], dict[str, jax.Array]]


class LossInputs(NamedTuple):
    sup_logits: jax.Array  # supervised head on the labeled batch
    labels: jax.Array
    outputs: dict[str, dict[str, jax.Array]]  # branch name -> head name -> logits
    targets: dict[str, jax.Array]  # what apply_views returned, plus `true_labels` of the unlabeled images (logging only)
    step: jax.Array  # the step being taken (0-based): ramp-ups read it
    knobs: Any  # the method's knobs (config.method.<name>), or None
    state: Any = None  # the method's state before this step ({} for a method without state)


@dataclass(frozen=True)
class Method:
    spec: registry.MethodSpec
    apply_views: Callable[..., Views]
    loss: Callable[[LossInputs], tuple[jax.Array, dict[str, jax.Array]]]


def loss_with_state(method: Method, inputs: LossInputs):
    """(total, terms, next state) of any method: one without state keeps `inputs.state`. The next
    state keeps each entry's dtype (float32), so the state's structure is the same at every step."""
    out = method.loss(inputs)
    if len(out) == 2:
        return (*out, inputs.state)
    total, terms, state = out
    return total, terms, {name: jnp.asarray(new, old.dtype) for name, new, old in
                          ((name, state[name], inputs.state[name]) for name in inputs.state)}


def initial_state(config: Config, num_classes: int, pool_size: int | None = None) -> dict[str, jax.Array]:
    """The method's state at step 0 (the registry's numpy arrays), {} for a method without state.
    `pool_size`: the unlabeled pool's images, for a method with per-image state (FlexMatch)."""
    return {name: jnp.asarray(value)
            for name, value in registry.initial_method_state(config, num_classes, pool_size).items()}


def batch_sum(x: jax.Array) -> jax.Array:
    """Sum over the batch axis. Under jit sharding the batch is the global one, so state updates
    built from these are global across devices and processes (sesemi_torch's twin all-reduces)."""
    return x.sum(0)


def batch_gather(x: jax.Array) -> jax.Array:
    """The global batch's `x`: under jit it already is (sesemi_torch's twin all-gathers)."""
    return x


def batch_mean(x: jax.Array) -> jax.Array:
    return batch_sum(x) / x.shape[0]


def batch_var(x: jax.Array) -> jax.Array:
    """Unbiased variance over the batch axis (torch.var's default), in two passes."""
    centered = x - batch_mean(x)
    return batch_sum(centered * centered) / (x.shape[0] - 1)


def load(config: Config) -> Method:
    """The configured method: its registry entry and its JAX module's two functions."""
    spec = registry.get(config.method.name)
    module = importlib.import_module(spec.module_for("jax"))
    return Method(spec, getattr(module, "apply_views", None), module.loss)


def sample_views(key: jax.Array, params: tuple[registry.ViewParam, ...], n: int,
                 padding: int, image_size: int = REFERENCE_SIZE) -> dict[str, jax.Array]:
    """The view parameters the registry declares, for `n` unlabeled images. The first uses
    `key` itself and the others `fold_in(key, i)`, so SESEMI's translation is drawn as
    before methods were plug-ins."""
    drawn = {}
    for i, param in enumerate(params):
        param_key = key if i == 0 else jax.random.fold_in(key, i)
        if param.kind == "crop":
            shift = view_shift(param, padding, image_size)
            drawn[param.name] = transforms.sample_crop_params(param_key, n, shift)
        elif param.kind == "flip":
            drawn[param.name] = transforms.sample_flip_params(param_key, n)
        else:
            drawn[param.name] = randaugment.SAMPLERS[param.kind](param_key, n)
    return drawn
