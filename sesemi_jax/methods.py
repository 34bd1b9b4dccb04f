"""Training methods as plug-ins (DESIGN.md section 7): the trainer only calls these pieces.

A method says how many self-supervised classes its extra head has, how it turns a batch of
unlabeled images into views and targets, and how it combines the model outputs into a loss
(the total and a dict of named terms for logging). All pieces are pure functions of arrays
and keys, so they run inside the jitted step. A new proxy task (say jigsaw) is one
`make_views` function and one `Method` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp

from sesemi_common.config import Config, proxy_classes

from . import losses, transforms

Views = tuple[jax.Array, jax.Array]


@dataclass(frozen=True)
class Method:
    name: str
    num_proxy: int  # classes of the self-supervised head; 0: no head, no unlabeled batch
    make_views: Callable[[jax.Array, jax.Array], Views] | None  # (key, uint8 NHWC) -> (views, targets)
    loss: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _proxy_views(proxy: str, key: jax.Array, images: jax.Array) -> Views:
    del key  # the views are deterministic; the key is there for methods that sample
    return transforms.proxy_views(images, proxy)


def _self_supervised_loss(sup_logits, labels, self_logits, self_targets, weight):
    return losses.joint_loss(sup_logits, labels, self_logits, self_targets, weight)


def _supervised_loss(sup_logits, labels, self_logits, self_targets, weight):
    del self_logits, self_targets, weight
    loss_sup = losses.cross_entropy(sup_logits, labels)
    return loss_sup, {"loss_sup": loss_sup, "loss_self": jnp.zeros_like(loss_sup)}


def make_method(config: Config) -> Method:
    num_proxy = proxy_classes(config)
    if num_proxy == 0:
        return Method("supervised", 0, None, _supervised_loss)
    proxy = "rotation" if num_proxy == 4 else "rotate_flip"
    return Method(config.method.name, num_proxy, partial(_proxy_views, proxy), _self_supervised_loss)
