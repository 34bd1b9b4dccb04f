"""FlexMatch: the PyTorch maths (apply_views and loss). What the method is, its knobs and
its registry entry: sesemi_common/methods/flexmatch.py; the JAX twin: sesemi_jax/methods/flexmatch.py."""

from __future__ import annotations

import torch

from .. import losses
from . import LossInputs, batch_gather
from .fixmatch import apply_views  # noqa: F401  (FixMatch's weak and strong views)


def _last_selected_copies(index: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Which selected images write their class: all but those whose pool position a later
    selected image of the batch also holds (the last copy wins, deterministically)."""
    order = torch.arange(len(index), device=index.device)
    overwritten = (index[:, None] == index[None, :]) & selected[None, :] & (order[None, :] > order[:, None])
    return selected & ~overwritten.any(dim=1)


@torch.no_grad()
def update_state(state: dict, confidence: torch.Tensor, pseudo: torch.Tensor, index: torch.Tensor,
                 threshold: float, thresh_warmup: bool) -> dict:
    """USB's FlexMatchThresholdingHook, after the mask: the images at or over `threshold` write
    their class into `selected_label`, then `classwise_acc` is recomputed from its counts. With
    several processes every one gathers the global batch's images first, so all scatter alike."""
    confidence, pseudo, index = batch_gather(confidence), batch_gather(pseudo), batch_gather(index)
    writes = _last_selected_copies(index, confidence >= threshold)
    selected_label = state["selected_label"].clone()
    selected_label[index[writes]] = pseudo[writes].to(selected_label.dtype)
    num_classes = len(state["classwise_acc"])
    counts = torch.bincount(selected_label.long() + 1, minlength=num_classes + 1)  # counts[0]: unused (-1)
    largest = counts.max()
    denominator = largest if thresh_warmup else counts[1:].max()
    acc = counts[1:].float() / denominator.clamp(min=1).float()
    # While every image holds one value (all -1 at the start), USB leaves the status as it was.
    return {"selected_label": selected_label,
            "classwise_acc": torch.where(largest < len(selected_label), acc, state["classwise_acc"])}


def loss(inputs: LossInputs):
    knobs = inputs.knobs
    if "unlabeled_index" not in inputs.targets:
        raise ValueError("flexmatch needs the unlabeled images' pool positions (targets['unlabeled_index'])")
    loss_sup = losses.cross_entropy(inputs.sup_logits, inputs.labels)
    probs = inputs.outputs["weak"]["sup"].detach().softmax(-1)
    confidence, pseudo = probs.max(-1)
    acc = inputs.state["classwise_acc"][pseudo]  # the status before this step's update, as in USB
    mask = (confidence >= knobs.threshold * (acc / (2.0 - acc))).float()
    loss_unlabeled = losses.masked_cross_entropy(inputs.outputs["strong"]["sup"], pseudo, mask)
    state = update_state(inputs.state, confidence, pseudo, inputs.targets["unlabeled_index"], knobs.threshold,
                         knobs.thresh_warmup)
    terms = {"loss_sup": loss_sup, "loss_unlabeled": loss_unlabeled, "mask_rate": mask.mean(),
             "selected_fraction": (state["selected_label"] >= 0).float().mean()}
    return loss_sup + knobs.lambda_u * loss_unlabeled, terms, state
