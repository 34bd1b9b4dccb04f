"""Test-time augmentation in JAX: the pure half of `sesemi_common.tta` (which draws the views'
parameters and averages their softmax), twin of sesemi_torch/tta.py."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sesemi_common import tta
from sesemi_common.config import Config
from sesemi_common.stats import normalization_table

from . import transforms
from . import distributed
from .train import _replicated_outputs, make_eval_logits, predict_logits

Scores = Callable[[dict, np.ndarray], np.ndarray]  # (variables, uint8 NHWC images) -> (N, K) scores


def tta_views(images: jax.Array, offsets: jax.Array) -> jax.Array:
    """uint8 (n * 8, H, W, C): the 8 views of each image (`tta.VIEWS`, image-major), the shifted
    ones cropped at `offsets` (`TTAParams.crop_offsets`) from the reflect-padded image."""
    shifted = transforms.apply_crop(images, offsets, tta.MAX_SHIFT, "reflect")
    views = []
    for view in tta.VIEWS:
        image = shifted if view.shifted else images
        views.append(image[:, :, ::-1] if view.flipped else image)
    return jnp.stack(views, axis=1).reshape((-1, *images.shape[1:]))


def view_inputs(images: jax.Array, offsets: jax.Array, noise: jax.Array, norm_table: jax.Array,
                zca: tuple[jax.Array, jax.Array] | None) -> jax.Array:
    """float32 (n * 8, H, W, C): the views normalized as in training, plus their noise."""
    return transforms.apply_noise(transforms.normalize_inputs(tta_views(images, offsets), norm_table, zca), noise)


def make_view_logits(model, mesh=None) -> Callable:
    def view_logits(variables, images, offsets, noise, norm_table, zca=None):
        (outputs,) = model.apply(variables, view_inputs(images, offsets, noise, norm_table, zca), train=False)
        return outputs["sup"]
    return jax.jit(view_logits, **_replicated_outputs(mesh))


def predict_probs(view_logits: Callable, variables: dict, images: np.ndarray, mean, std, batch_size: int,
                  noise_std: float, zca: tuple[np.ndarray, np.ndarray] | None = None, mesh=None) -> np.ndarray:
    """float32 (N, K): each image's softmax averaged over its 8 views. `batch_size` counts views
    (`tta.images_per_batch`); the last batch is padded so one shape compiles."""
    norm_table = jnp.asarray(normalization_table(mean, std))
    zca = None if zca is None else tuple(jnp.asarray(a, jnp.float32) for a in zca)
    norm_table, zca = distributed.replicated((norm_table, zca), mesh)
    per_batch = tta.images_per_batch(batch_size)
    outputs = []
    for start in range(0, len(images), per_batch):
        chunk = images[start:start + per_batch]
        params = tta.sample_params(chunk, noise_std)
        pad = per_batch - len(chunk)
        # Kept on the device until the end: the host draws the next batch's noise while this one runs.
        outputs.append(view_logits(variables, _pad(chunk, pad), _pad(params.crop_offsets(), pad),
                                   _pad(params.noise, pad * len(tta.VIEWS)), norm_table, zca))
    logits = np.concatenate([np.asarray(batch) for batch in outputs])
    return tta.average_probs(logits[:len(images) * len(tta.VIEWS)])


def _pad(rows: np.ndarray, count: int) -> np.ndarray:
    return np.concatenate([rows, np.zeros((count, *rows.shape[1:]), rows.dtype)])


def make_predict_scores(model, config: Config, mean, std, zca: tuple[np.ndarray, np.ndarray] | None,
                        mesh=None) -> Scores:
    """(variables, images) -> scores whose argmax is the prediction: the supervised logits with
    eval.tta=1 (exactly as without test-time augmentation), the 8 views' averaged softmax with 8.
    `mesh` (the trainer's): with one, every device ends with the whole output, so each process of
    several can read it."""
    batch_size = config.train.eval_batch_size
    if config.eval.tta == 1:
        eval_logits = make_eval_logits(model, mesh)
        return lambda variables, images: predict_logits(eval_logits, variables, images, mean, std, batch_size, zca,
                                                        mesh)
    view_logits = make_view_logits(model, mesh)
    noise_std = tta.noise_std(config)
    return lambda variables, images: predict_probs(view_logits, variables, images, mean, std, batch_size,
                                                   noise_std, zca, mesh)
