"""FlexMatch: the JAX maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/flexmatch.py; the PyTorch twin: sesemi_torch/methods/flexmatch.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import losses
from . import LossInputs, batch_gather
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def _last_selected_copies(index: jax.Array, selected: jax.Array) -> jax.Array:
    """Which selected images write their class: all but those whose pool position a later
    selected image of the batch also holds (the last copy wins, deterministically)."""
    order = jnp.arange(index.shape[0])
    overwritten = (index[:, None] == index[None, :]) & selected[None, :] & (order[None, :] > order[:, None])
    return selected & ~overwritten.any(axis=1)


def update_state(state: dict, confidence: jax.Array, pseudo: jax.Array, index: jax.Array, threshold: float,
                 thresh_warmup: bool) -> dict:
    """USB's FlexMatchThresholdingHook, after the mask: the images at or over `threshold` write
    their class into `selected_label`, then `classwise_acc` is recomputed from its counts."""
    confidence, pseudo, index = batch_gather(confidence), batch_gather(pseudo), batch_gather(index)
    writes = _last_selected_copies(index, confidence >= threshold)
    pool_size, num_classes = state["selected_label"].shape[0], state["classwise_acc"].shape[0]
    # Positions that do not write point past the pool, and a "drop" scatter ignores them.
    selected_label = state["selected_label"].at[jnp.where(writes, index, pool_size)].set(
        pseudo.astype(jnp.int32), mode="drop")
    counts = jnp.bincount(selected_label + 1, length=num_classes + 1)  # counts[0]: the unused images (-1)
    largest = counts.max()
    denominator = largest if thresh_warmup else counts[1:].max()
    acc = counts[1:].astype(jnp.float32) / jnp.maximum(denominator, 1).astype(jnp.float32)
    # While every image holds one value (all -1 at the start), USB leaves the status as it was.
    return {"selected_label": selected_label,
            "classwise_acc": jnp.where(largest < pool_size, acc, state["classwise_acc"])}


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    if "unlabeled_index" not in inputs.targets:
        raise ValueError("flexmatch needs the unlabeled images' pool positions (targets['unlabeled_index'])")
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    probs = jax.nn.softmax(jax.lax.stop_gradient(inputs.outputs["weak"]["sup"]))
    confidence, pseudo = probs.max(-1), probs.argmax(-1)
    acc = inputs.state["classwise_acc"][pseudo]  # the status before this step's update, as in USB
    mask = (confidence >= knobs.threshold * (acc / (2.0 - acc))).astype(jnp.float32)
    loss_unlabeled = losses.masked_cross_entropy(inputs.outputs["strong"]["sup"], pseudo, mask)
    state = update_state(inputs.state, confidence, pseudo, inputs.targets["unlabeled_index"], knobs.threshold,
                         knobs.thresh_warmup)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean(),
             "selected_fraction": (state["selected_label"] >= 0).mean(dtype=jnp.float32)}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms, state
