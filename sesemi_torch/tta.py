"""Test-time augmentation in PyTorch: the pure half of `sesemi_common.tta` (which draws the views'
parameters and averages their softmax), twin of sesemi_jax/tta.py."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sesemi_common import tta
from sesemi_common.config import Config

from . import transforms
from .train import predict_logits


def tta_views(images: torch.Tensor, offsets) -> torch.Tensor:
    """uint8 (n * 8, C, H, W): the 8 views of each image (`tta.VIEWS`, image-major), the shifted
    ones cropped at `offsets` (`TTAParams.crop_offsets`) from the reflect-padded image."""
    shifted = transforms.apply_crop(images, offsets, tta.MAX_SHIFT, "reflect")
    views = []
    for view in tta.VIEWS:
        image = shifted if view.shifted else images
        views.append(image.flip(3) if view.flipped else image)
    return torch.stack(views, dim=1).reshape(-1, *images.shape[1:])


def view_inputs(images: torch.Tensor, offsets, noise_nhwc: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                zca: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """float32 (n * 8, C, H, W): the views normalized as in training, plus their noise (drawn NHWC)."""
    x = transforms.normalize_inputs(tta_views(images, offsets), mean, std, zca)
    return transforms.apply_noise(x, noise_nhwc.permute(0, 3, 1, 2))


@torch.no_grad()
def predict_probs(model: nn.Module, images_nhwc: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                  batch_size: int, noise_std: float, device: torch.device | str = "cpu",
                  zca: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """float32 (N, K): each image's softmax averaged over its 8 views (eval mode); `batch_size`
    counts views (`tta.images_per_batch`)."""
    model.eval()
    per_batch = tta.images_per_batch(batch_size)
    outputs = []
    for start in range(0, len(images_nhwc), per_batch):
        chunk = images_nhwc[start:start + per_batch]
        params = tta.sample_params(chunk, noise_std)
        images = transforms.nchw(chunk).to(device)
        x = view_inputs(images, torch.from_numpy(params.crop_offsets()), torch.from_numpy(params.noise).to(device),
                        mean, std, zca)
        (logits,) = model(x)
        outputs.append(tta.average_probs(logits["sup"].float().cpu().numpy()))
    return np.concatenate(outputs)


@torch.no_grad()
def predict_scores(model: nn.Module, images_nhwc: np.ndarray, config: Config, mean: torch.Tensor, std: torch.Tensor,
                   device: torch.device | str = "cpu", zca: tuple[torch.Tensor, torch.Tensor] | None = None
                   ) -> np.ndarray:
    """Scores whose argmax is the prediction: the supervised logits with eval.tta=1 (exactly as
    without test-time augmentation), the 8 views' averaged softmax with 8."""
    batch_size = config.train.eval_batch_size
    if config.eval.tta == 1:
        return predict_logits(model, images_nhwc, mean, std, batch_size, device, zca)
    return predict_probs(model, images_nhwc, mean, std, batch_size, tta.noise_std(config), device, zca)
