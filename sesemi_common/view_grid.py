"""The picture of what a method trains on: a few labeled images and every view of a few unlabeled ones.

Both trainers draw the same `BatchSpec` (`picture_spec`, numpy's `HostStream`), build the views
with their own transforms and `apply_views`, and hand the uint8 images to `view_grid`, which lays
them out once for both: one column per image, one labeled row per kind of image

    labeled        the supervised branch's input (crop + flip) of a labeled image
    unlabeled      the unlabeled image itself
    <view> [k]     each view the method makes of it (SESEMI's 6 proxy views are 6 rows,
                   FixMatch's weak and strong views a row each)

so a strong view that is not strong, or a proxy transform that does nothing, shows at a glance.
The same spec gives the same picture in both frameworks (parity_tests/test_view_grid_parity.py).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .config import Config
from .methods import get, unlabeled_batch
from .sampling import BatchSpec, HostStream

LABEL_WIDTH = 96  # pixels left of the images for the row names
MIN_TILE = 64  # images are enlarged (nearest neighbour, whole factors) to at least this many pixels
GAP = 2
BACKGROUND = 255


def picture_spec(config: Config, labeled: np.ndarray, n_train: int, step: int) -> BatchSpec:
    """The images and view parameters of the picture at `step`: `train.view_images` of each kind,
    drawn by numpy from (seed, step) alone, so both frameworks picture the very same ones."""
    n = config.train.view_images
    n_unlabeled = n if unlabeled_batch(config) else 0
    stream = HostStream(labeled, n_train, min(n, len(labeled)), min(n_unlabeled, n_train), config.augment,
                        config.train.seed, get(config.method.name).view_params, config.data.image_size)
    return stream(step)


def view_rows(config: Config, labeled: np.ndarray, unlabeled: np.ndarray,
              views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{row name: (n, H, W, C) images}: the labeled and unlabeled images, then each view split
    into its rows, in the order the method's branches name them (a jitted function returns its
    dict sorted by key); a view of k images per unlabeled image is image-major
    ([img0 v0..vk-1, img1 ...]), as the proxy views are."""
    rows = {"labeled": labeled}
    if len(unlabeled):
        rows["unlabeled"] = unlabeled
    declared = [branch.view for branch in get(config.method.name).branches]
    names = [name for name in dict.fromkeys(declared) if name in views] + sorted(set(views) - set(declared))
    for name in names:
        images = views[name]
        per_image = len(images) // len(unlabeled)
        grouped = np.asarray(images).reshape(len(unlabeled), per_image, *images.shape[1:])
        for k in range(per_image):
            rows[name if per_image == 1 else f"{name} {k}"] = grouped[:, k]
    return rows


def as_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC images with 3 channels; float images are taken as values in [0, 255]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def view_grid(rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8: each row's name, then its images left to right."""
    from PIL import Image, ImageDraw, ImageFont
    rows = {name: as_uint8(images) for name, images in rows.items()}
    height, width = next(iter(rows.values())).shape[1:3]
    scale = max(1, -(-MIN_TILE // max(height, width)))
    tile_h, tile_w = height * scale, width * scale
    columns = max(len(images) for images in rows.values())
    grid = np.full((len(rows) * (tile_h + GAP) + GAP, LABEL_WIDTH + columns * (tile_w + GAP) + GAP, 3),
                   BACKGROUND, np.uint8)
    for r, images in enumerate(rows.values()):
        top = GAP + r * (tile_h + GAP)
        for c, image in enumerate(images):
            left = LABEL_WIDTH + GAP + c * (tile_w + GAP)
            grid[top:top + tile_h, left:left + tile_w] = image.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = Image.fromarray(grid)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for r, name in enumerate(rows):
        draw.text((4, GAP + r * (tile_h + GAP) + tile_h // 2 - 6), name, fill=(0, 0, 0), font=font)
    return np.asarray(picture)
