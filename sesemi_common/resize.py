"""How images of any size reach `data.image_size` (docs/DESIGN.md section 9): `data.resize`.

- `none`: images must already be `image_size` square; a mismatch is an error (the benchmark
  protocol, where resizing would silently change the data).
- `center_crop`: the shorter side to `image_size` (bilinear, antialiased), then the centre
  square: exactly torchvision's `Resize(image_size)` + `CenterCrop(image_size)` on a PIL image,
  so a network pretrained with that pipeline sees what it was trained on.
- `squash`: both sides to `image_size` (bilinear), aspect ratio not kept.
- `auto` (the default): `center_crop` for folders of a user's images (`imagefolder` and the
  unlabeled folder `data.unlabeled_root`), `none` for the benchmark archives.

It is applied once, at decode time, to the uint8 RGB array; the decoded cache stores the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

POLICIES = ("auto", "none", "center_crop", "squash")
# An image whose shorter side is below image_size / MAX_UPSCALE is refused by the resizing
# policies: upscaled more than 8x, it holds almost nothing of what the class looks like (CIFAR's
# 32 px upscaled to 224 for a pretrained network, 7x, is still allowed).
MAX_UPSCALE = 8


class ResizeError(ValueError):
    """An image that the policy cannot bring to the size; the message names the file."""


def policy_for(data_cfg, folder: bool) -> str:
    """The policy in force for a source: `folder` for imagefolder trees and unlabeled folders."""
    if data_cfg.resize != "auto":
        return data_cfg.resize
    return "center_crop" if folder else "none"


def labeled_policy(data_cfg) -> str:
    """The policy of the run's labeled and test images (and of `predict` on a user's images)."""
    return policy_for(data_cfg, folder=data_cfg.dataset == "imagefolder")


def center_crop_box(height: int, width: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized height, width), (top, left)) of torchvision's Resize(size) then CenterCrop(size):
    the long side is truncated (`int(size * long / short)`), the offsets rounded half to even."""
    if width <= height:
        resized = (int(size * height / width), size)
    else:
        resized = (size, int(size * width / height))
    top = int(round((resized[0] - size) / 2.0))
    left = int(round((resized[1] - size) / 2.0))
    return resized, (top, left)


def fit(image: np.ndarray, size: int, policy: str, path: str | Path = "image") -> np.ndarray:
    """uint8 (size, size, 3) of a uint8 (H, W, 3) `image` under `policy` (not `auto`).

    An image already `size` square comes back unchanged whatever the policy."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    if policy == "none":
        raise ResizeError(f"{path} is {width}x{height} but data.image_size is {size}: resize the images, or set "
                          "data.resize=center_crop (or squash) to let sesemi do it")
    if min(height, width) * MAX_UPSCALE < size:
        raise ResizeError(f"{path} is {width}x{height}: its shorter side is under 1/{MAX_UPSCALE} of data.image_size "
                          f"({size}), too small to {policy.replace('_', ' ')} meaningfully; remove it or lower "
                          "data.image_size")
    pil = Image.fromarray(image)
    if policy == "squash":
        return np.asarray(pil.resize((size, size), Image.BILINEAR))
    (new_height, new_width), (top, left) = center_crop_box(height, width, size)
    resized = pil.resize((new_width, new_height), Image.BILINEAR)
    return np.asarray(resized)[top:top + size, left:left + size]
