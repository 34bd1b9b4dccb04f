"""The picture of the views in JAX: the method's own `apply_views` on the spec both frameworks
draw (sesemi_common/view_grid.py lays the picture out)."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from sesemi_common.config import Config
from sesemi_common.sampling import crop_geometry
from sesemi_common.view_grid import picture_spec, view_rows

from . import transforms
from .methods import Method


def make_pictures(method: Method, config: Config, images: np.ndarray, labeled: np.ndarray) -> Callable[[int], dict]:
    """`pictures(step)`: {row name: uint8 NHWC images} of the picture at `step` (host arrays)."""
    padding, mode = crop_geometry(config)

    @jax.jit  # compiled once per run: RandAugment op by op outside jit would take longer than the step
    def views_of(sup_images, sup_offsets, sup_flips, unlabeled_images, view_params):
        sup = transforms.apply_hflip(transforms.apply_crop(sup_images, sup_offsets, padding, mode), sup_flips)
        if not method.spec.views_per_image:
            return sup, {}
        views, _ = method.apply_views(unlabeled_images, view_params, config)
        return sup, views

    def pictures(step: int) -> dict:
        spec = picture_spec(config, labeled, len(images), step)
        sup, views = jax.device_get(views_of(images[spec.labeled], spec.sup_offsets, spec.sup_flips,
                                             images[spec.unlabeled], spec.views))
        return view_rows(config, np.asarray(sup), images[spec.unlabeled], {k: np.asarray(v) for k, v in views.items()})

    return pictures
