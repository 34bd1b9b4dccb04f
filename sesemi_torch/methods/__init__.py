"""Training methods as plug-ins (docs/DESIGN.md section 7), the PyTorch twin of sesemi_jax/methods.

The registry (`sesemi_common.methods`) says what a method asks of the trainer; the method's
module here holds its maths, as two functions with the same names and meaning as in JAX:

    apply_views(images, params, config) -> (views, targets)
        uint8 NCHW unlabeled images and their drawn view parameters -> {view name: uint8
        images} and {name: targets the loss needs} (SESEMI's proxy labels).
    loss(inputs: LossInputs) -> (total, {term name: value})

`sample_views` draws the parameters the registry declares with a torch generator.

Every loss is a mean over the samples of its batch (cross-entropy, softmax MSE, entropy, and
FixMatch's masked cross-entropy, which divides by all unlabeled images, not by the kept ones).
That is what lets several processes train on equal chunks of a batch: DDP's average of the
chunks' gradients is the gradient of the whole batch's loss. A loss divided by a count that
differs between chunks (the kept pseudo-labels, say) would break that and would have to sum
over the processes first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch

from sesemi_common import methods as registry
from sesemi_common.config import Config
from sesemi_common.sampling import REFERENCE_SIZE, view_shift

from .. import randaugment, transforms

Views = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


class LossInputs(NamedTuple):
    sup_logits: torch.Tensor  # supervised head on the labeled batch
    labels: torch.Tensor
    outputs: dict[str, dict[str, torch.Tensor]]  # branch name -> head name -> logits
    targets: dict[str, torch.Tensor]  # what apply_views returned, plus `true_labels` of the unlabeled images (logging only)
    step: int  # the step being taken (0-based): ramp-ups read it
    knobs: Any  # the method's knobs (config.method.<name>), or None


@dataclass(frozen=True)
class Method:
    spec: registry.MethodSpec
    apply_views: Callable[..., Views]
    loss: Callable[[LossInputs], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def load(config: Config) -> Method:
    """The configured method: its registry entry and its PyTorch module's two functions."""
    spec = registry.get(config.method.name)
    module = importlib.import_module(spec.module_for("torch"))
    return Method(spec, getattr(module, "apply_views", None), module.loss)


def sample_views(generator: torch.Generator | None, params: tuple[registry.ViewParam, ...], n: int,
                 padding: int, image_size: int = REFERENCE_SIZE) -> dict[str, torch.Tensor]:
    """The view parameters the registry declares, for `n` unlabeled images, drawn in order."""
    drawn = {}
    for param in params:
        if param.kind == "crop":
            shift = view_shift(param, padding, image_size)
            drawn[param.name] = transforms.sample_crop_params(generator, n, shift)
        elif param.kind == "flip":
            drawn[param.name] = transforms.sample_flip_params(generator, n)
        else:
            drawn[param.name] = randaugment.SAMPLERS[param.kind](generator, n)
    return drawn
