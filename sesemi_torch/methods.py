"""Training methods as plug-ins (DESIGN.md section 7), the PyTorch twin of sesemi_jax/methods.py.

The trainer calls only these pieces: the number of self-supervised classes, `make_views`
(unlabeled uint8 images -> views and targets) and `loss` (model outputs -> total and named
terms). A new proxy task is one views function and one `Method` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from sesemi_common.config import Config, proxy_classes

from . import losses, transforms

Views = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Method:
    name: str
    num_proxy: int  # classes of the self-supervised head; 0: no head, no unlabeled batch
    make_views: Callable[[torch.Generator | None, torch.Tensor], Views] | None
    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _proxy_views(proxy: str, generator: torch.Generator | None, images: torch.Tensor) -> Views:
    del generator  # the views are deterministic; the generator is there for methods that sample
    return transforms.proxy_views(images, proxy)


def _self_supervised_loss(sup_logits, labels, self_logits, self_targets, weight):
    return losses.joint_loss(sup_logits, labels, self_logits, self_targets, weight)


def _supervised_loss(sup_logits, labels, self_logits, self_targets, weight):
    del self_logits, self_targets, weight
    loss_sup = losses.cross_entropy(sup_logits, labels)
    return loss_sup, {"loss_sup": loss_sup, "loss_self": torch.zeros_like(loss_sup)}


def make_method(config: Config) -> Method:
    num_proxy = proxy_classes(config)
    if num_proxy == 0:
        return Method("supervised", 0, None, _supervised_loss)
    proxy = "rotation" if num_proxy == 4 else "rotate_flip"
    return Method(config.method.name, num_proxy, partial(_proxy_views, proxy), _self_supervised_loss)
