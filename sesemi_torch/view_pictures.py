"""The picture of the views in PyTorch: the method's own `apply_views` on the spec both frameworks
draw (sesemi_common/view_grid.py lays the picture out). Twin of sesemi_jax/view_pictures.py."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from sesemi_common.config import Config
from sesemi_common.sampling import crop_geometry
from sesemi_common.view_grid import picture_spec, view_rows

from . import transforms
from .methods import Method


def _nchw(images_nhwc: np.ndarray) -> torch.Tensor:
    return transforms.nchw(images_nhwc)


def _nhwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).cpu().numpy()


def make_pictures(method: Method, config: Config, images: np.ndarray, labeled: np.ndarray) -> Callable[[int], dict]:
    """`pictures(step)`: {row name: uint8 NHWC images} of the picture at `step`. Draws nothing from
    torch's generators: the parameters come with the spec, so the training run is unchanged."""
    padding, mode = crop_geometry(config)

    @torch.no_grad()
    def pictures(step: int) -> dict:
        spec = picture_spec(config, labeled, len(images), step)
        sup = transforms.apply_crop(_nchw(images[spec.labeled]), torch.as_tensor(spec.sup_offsets), padding, mode)
        sup = transforms.apply_hflip(sup, torch.as_tensor(spec.sup_flips))
        views = {}
        if method.spec.views_per_image:
            params = {name: torch.as_tensor(v) for name, v in spec.views.items()}
            views, _ = method.apply_views(_nchw(images[spec.unlabeled]), params, config)
        return view_rows(config, _nhwc(sup), images[spec.unlabeled], {k: _nhwc(v) for k, v in views.items()})

    return pictures
