"""One optimizer step in PyTorch, the readable twin of sesemi_jax/train.py.

The step augments the batch the loader delivered (uint8 NCHW plus the sampled transform
parameters), builds the method's views, runs the backbone calls, updates the model and its EMA.
The trainer knows no method: it runs the branches the method's registry entry declares,
on the views its `apply_views` makes, and differentiates its `loss` (docs/DESIGN.md section 7).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from sesemi_common.config import Config
from sesemi_common.distributed import Process
from sesemi_common.ema import ema_decay_at
from sesemi_common.methods import STOP_GRADIENT, TEACHER, ema_decay
from sesemi_common.methods import knobs as method_knobs
from sesemi_common.pool import labels_known
from sesemi_common.sampling import crop_geometry

from . import transforms
from .distributed import global_noise, unwrap
from .methods import LossInputs, Method, loss_with_state


def model_inputs(batch: dict, method: Method, config: Config, mean: torch.Tensor, std: torch.Tensor,
                 zca: tuple[torch.Tensor, torch.Tensor] | None = None, process: Process = Process()):
    """(normalized labeled batch, {view name: normalized views}, the method's targets), float32 NCHW.

    Normalization is per channel, or GCN + ZCA when `zca` (channels-first, `transforms.zca_tensors`)
    is given. With `augment.noise_std` > 0, every normalized input gets its own Gaussian noise
    from torch's global generator (the paper adds it to both branches, after augmentation); in one
    of several processes, `batch` is its chunk and gets its chunk of the global batch's noise."""
    padding, mode = crop_geometry(config)

    def normalized(images: torch.Tensor) -> torch.Tensor:
        x = transforms.normalize_inputs(images, mean, std, zca)
        if not config.augment.noise_std:
            return x
        noise = global_noise(x.shape, process, lambda shape: transforms.sample_noise_params(
            None, shape, config.augment.noise_std, x.device))
        return transforms.apply_noise(x, noise)

    sup = transforms.apply_crop(batch["sup_images"], batch["sup_offsets"], padding, mode)
    x_sup = normalized(transforms.apply_hflip(sup, batch["sup_flips"]))
    if not method.spec.views_per_image:
        return x_sup, {}, {}
    views, targets = method.apply_views(batch["unlabeled_images"], batch["views"], config)
    # The unlabeled images' own labels, for logging only (e.g. a method's pseudo-label accuracy);
    # no loss may train on them. A pool with images of its own has none to give.
    if labels_known(config.data):
        targets = {**targets, "true_labels": batch["unlabeled_labels"]}
    if "unlabeled_index" in batch:  # what a per-image state is indexed by (FlexMatch): this chunk's
        targets = {**targets, "unlabeled_index": batch["unlabeled_index"]}
    return x_sup, {name: normalized(v) for name, v in views.items()}, targets


def make_ema(model: nn.Module, config: Config) -> AveragedModel | None:
    """The EMA of params and BatchNorm buffers (averaged, like the JAX state's), starting as a
    copy of `model`; None when no EMA is kept."""
    decay = ema_decay(config)
    if not decay:
        return None
    averaging = warmup_ema_multi_avg_fn(config) if config.train.ema_warmup else get_ema_multi_avg_fn(decay)
    ema = AveragedModel(model, multi_avg_fn=averaging, use_buffers=True)
    ema.update_parameters(model)  # the first update copies: the EMA starts at the initial weights
    return ema


def warmup_ema_multi_avg_fn(config: Config):
    """AveragedModel's averaging with train.ema_warmup: torch's EMA update at the decay in force
    (`sesemi_common.ema.ema_decay_at`). AveragedModel passes the count of updates so far, which
    includes the copy `make_ema` makes: at the update after the t-th optimizer step it is t, the
    Mean Teacher code's `global_step`, and it is saved in the EMA's state dict, so a resumed run
    goes on counting. (Reading it is a host sync, as AveragedModel's own `n_averaged == 0` test.)"""

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged) -> None:
        get_ema_multi_avg_fn(ema_decay_at(config, int(num_averaged)))(ema_params, current_params, num_averaged)

    return update


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm in train mode that leaves its running statistics as they are: momentum 0
    makes `(1 - m) running + m batch` exactly `running`. The teacher's own forwards must not
    move the EMA's statistics (the JAX step drops those updates)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """train.precision=bf16: bfloat16 convolutions and linear layers on the float32 weights
    (docs/DESIGN.md section 8); BatchNorm keeps float32 statistics and the model returns float32
    logits. bfloat16 has float32's exponent range, so no GradScaler is needed."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def teacher_forward(ema: AveragedModel | None, views: dict, method: Method) -> dict:
    """Teacher branches: the EMA model in train mode (batch statistics, dropout), no gradient."""
    outputs = {}
    for branch in (b for b in method.spec.branches if b.mode == TEACHER):
        ema.module.train()
        with frozen_running_stats(ema.module):
            (outputs[branch.name],) = ema.module(views[branch.view], heads=(branch.heads,))
    return outputs


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict,
               step: int, method: Method, config: Config, mean: torch.Tensor, std: torch.Tensor,
               channels_last: bool = False, ema: AveragedModel | None = None,
               zca: tuple[torch.Tensor, torch.Tensor] | None = None,
               process: Process = Process(), method_state: dict[str, torch.Tensor] | None = None
               ) -> dict[str, torch.Tensor]:
    """One optimizer step; returns detached metrics (the loop fetches them every log_every steps).

    `method_state` (`methods.initial_state`, for a method that declares state) is the method's
    state beside the model: the step hands it to the loss and replaces its entries with the next
    state, in place, as an optimizer updates its own state.

    In one of several processes `model` is the DDP-wrapped model, `batch` this process's chunk of
    the step's batch and the metrics its means: every method's loss is a mean over the chunk's
    samples (so DDP's gradient average is the gradient of the global mean); the loop averages
    the metrics over the processes."""
    model.train()
    x_sup, views, targets = model_inputs(batch, method, config, mean, std, zca, process)
    weight = next(model.parameters())
    dtype = weight.dtype  # a float64 model (parity tests) computes in float64
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x_sup = x_sup.to(dtype).contiguous(memory_format=memory_format)
    views = {name: v.to(dtype).contiguous(memory_format=memory_format) for name, v in views.items()}
    labels = batch["labels"]
    branches = [b for b in method.spec.branches if b.mode != TEACHER]
    with autocast(config.train.precision, weight.device):  # the forwards only: the loss is float32
        outputs = model(x_sup, *(views[b.view] for b in branches), heads=(("sup",), *(b.heads for b in branches)),
                        joint_forward=config.model.joint_forward)
        teacher = teacher_forward(ema, views, method)
    by_branch = {b.name: {h: v.detach() for h, v in out.items()} if b.mode == STOP_GRADIENT else out
                 for b, out in zip(branches, outputs[1:])}
    sup_logits = outputs[0]["sup"]
    current = {} if method_state is None else method_state
    total, terms, next_state = loss_with_state(method, LossInputs(
        sup_logits, labels, {**by_branch, **teacher}, targets, step, method_knobs(config), current))
    lr = scheduler.get_last_lr()[0]
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer.step()
    scheduler.step()
    step_norms = norms(params, before)
    if method_state is not None:
        method_state.update({name: value.detach() for name, value in next_state.items()})
    if ema is not None:  # the same update in every process: their parameters and buffers are equal
        ema.update_parameters(unwrap(model))
    train_accuracy = (sup_logits.argmax(-1) == labels).float().mean()
    return {"loss": total.detach(), **{k: torch.as_tensor(v).detach() for k, v in terms.items()},
            "lr": torch.tensor(lr), "train_accuracy": train_accuracy.detach(), **step_norms}


@torch.no_grad()
def norms(params: list[torch.Tensor], before: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The L2 norms big_vision logs, after `optimizer.step()`: of the gradient, of the parameters,
    and of the update the step made (new - old parameters, whatever the optimizer did to the
    gradient). A parameter without a gradient (None) counts as a zero gradient, as in JAX."""
    grads = [p.grad for p in params if p.grad is not None]
    zero = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    return {"grad_norm": torch.nn.utils.get_total_norm(grads) if grads else zero,
            "param_norm": torch.nn.utils.get_total_norm(params),
            "update_norm": torch.nn.utils.get_total_norm([p - b for p, b in zip(params, before)])}


@torch.no_grad()
def predict_logits(model: nn.Module, images_nhwc: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                   batch_size: int, device: torch.device | str = "cpu",
                   zca: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """Supervised-head logits of uint8 NHWC images (eval mode: running BatchNorm statistics)."""
    model.eval()
    dtype = next(model.parameters()).dtype  # a float64 model (tests) computes in float64
    outputs = []
    for start in range(0, len(images_nhwc), batch_size):
        chunk = transforms.nchw(images_nhwc[start:start + batch_size])
        (logits,) = model(transforms.normalize_inputs(chunk.to(device), mean, std, zca).to(dtype))
        outputs.append(logits["sup"].float().cpu().numpy())
    return np.concatenate(outputs)

