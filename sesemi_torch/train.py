"""One SESEMI optimizer step in PyTorch, the readable twin of sesemi_jax/train.py.

The step augments the batch the loader delivered (uint8 NCHW plus the sampled transform
parameters), builds the method's views, runs the two backbone calls, and updates the model.
The trainer knows nothing about SESEMI: the `Method` plug-in supplies views and loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sesemi_common.config import Config
from sesemi_common.sampling import crop_geometry

from . import losses, transforms
from .methods import Method


def model_inputs(batch: dict[str, torch.Tensor], method: Method, config: Config, mean: torch.Tensor,
                 std: torch.Tensor, generator: torch.Generator | None = None):
    """(x_sup, x_self or None, self targets or None) as normalized float32 NCHW tensors."""
    padding, mode = crop_geometry(config.augment)
    sup = transforms.apply_crop(batch["sup_images"], batch["sup_offsets"], padding, mode)
    x_sup = transforms.normalize(transforms.apply_hflip(sup, batch["sup_flips"]), mean, std)
    if method.num_proxy == 0:
        return x_sup, None, None
    unlabeled = transforms.apply_crop(batch["unlabeled_images"], batch["self_offsets"], padding, mode)
    views, targets = method.make_views(generator, unlabeled)
    return x_sup, transforms.normalize(views, mean, std), targets


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict[str, torch.Tensor],
               step: int, method: Method, config: Config, mean: torch.Tensor, std: torch.Tensor,
               channels_last: bool = False) -> dict[str, torch.Tensor]:
    """One optimizer step; returns detached metrics (the loop fetches them every log_every steps)."""
    model.train()
    x_sup, x_self, self_targets = model_inputs(batch, method, config, mean, std)
    dtype = next(model.parameters()).dtype  # a float64 model (parity tests) computes in float64
    x_sup, x_self = x_sup.to(dtype), None if x_self is None else x_self.to(dtype)
    if channels_last:
        x_sup = x_sup.contiguous(memory_format=torch.channels_last)
        x_self = None if x_self is None else x_self.contiguous(memory_format=torch.channels_last)
    labels = batch["labels"]
    weight = config.method.self_weight * losses.sigmoid_rampup(step, config.method.rampup_steps)
    sup_logits, self_logits = model(x_sup, x_self, joint_forward=config.model.joint_forward)
    total, terms = method.loss(sup_logits, labels, self_logits, self_targets, weight)
    lr = scheduler.get_last_lr()[0]
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    scheduler.step()
    train_accuracy = (sup_logits.argmax(-1) == labels).float().mean()
    return {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()},
            "lr": torch.tensor(lr), "train_accuracy": train_accuracy.detach()}


@torch.no_grad()
def predict_logits(model: nn.Module, images_nhwc: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                   batch_size: int, device: torch.device | str = "cpu") -> np.ndarray:
    """Supervised-head logits of uint8 NHWC images (eval mode: running BatchNorm statistics)."""
    model.eval()
    outputs = []
    for start in range(0, len(images_nhwc), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(images_nhwc[start:start + batch_size])).permute(0, 3, 1, 2)
        sup_logits, _ = model(transforms.normalize(chunk.to(device), mean, std))
        outputs.append(sup_logits.float().cpu().numpy())
    return np.concatenate(outputs)


def accuracy(model: nn.Module, images_nhwc: np.ndarray, labels: np.ndarray, mean, std, batch_size: int,
             device: torch.device | str = "cpu") -> float:
    logits = predict_logits(model, images_nhwc, mean, std, batch_size, device)
    return float(np.mean(logits.argmax(-1) == labels))
