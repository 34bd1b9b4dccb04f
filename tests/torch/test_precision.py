"""train.precision in PyTorch (docs/DESIGN.md section 8): what the train step computes in bfloat16 and
what stays float32. One ResNet-20 step on 24 random 16x16 images per precision."""

import numpy as np
import pytest
import torch

from sesemi_common.config import Config, apply_overrides
from sesemi_common.sampling import HostStream
from sesemi_common.stats import channel_stats
from sesemi_torch import methods, optim
from sesemi_torch.data import SpecBatches
from sesemi_torch.models import make_model
from sesemi_torch.train import train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_step(precision: str) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict, dict]:
    """(model, optimizer, metrics, {layer kind: dtypes its outputs had}) after one step."""
    config = apply_overrides(Config(), ["train.batch_labeled=6", "train.batch_unlabeled=3", "train.steps=10",
                                        f"train.precision={precision}"])
    method = methods.load(config)
    images = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    spec = HostStream.for_config(np.arange(12), 24, config, seed=5)(1)
    torch.manual_seed(0)
    model = make_model("resnet20", 10, method.spec.heads)
    seen = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)):
            module.register_forward_hook(lambda m, _, out: seen.setdefault(type(m).__name__, set()).add(out.dtype))
    optimizer = optim.make_optimizer(model, config.optim)
    scheduler = optim.make_scheduler(optimizer, config.optim, config.train.steps)
    mean, std = (torch.from_numpy(a) for a in channel_stats(images))
    metrics = train_step(model, optimizer, scheduler, SpecBatches(images, np.arange(24) % 10)[spec], 0,
                         method, config, mean, std)
    return model, optimizer, metrics, seen


def float_dtypes(tensors) -> set[torch.dtype]:
    return {t.dtype for t in tensors if t.is_floating_point()}


@pytest.mark.parametrize("precision, compute", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_layers_compute_in_the_precision_and_the_rest_stays_float32(precision, compute):
    """fp32 runs no autocast (the default path is untouched); bf16 runs convolutions, linear
    layers and BatchNorm outputs in bfloat16 while weights, gradients, momentum, running
    statistics and the loss stay float32."""
    model, optimizer, metrics, seen = one_step(precision)
    assert seen == {"Conv2d": {compute}, "BatchNorm2d": {compute}, "Linear": {compute}}
    assert float_dtypes(model.state_dict().values()) == {torch.float32}  # weights and running statistics
    assert float_dtypes(p.grad for p in model.parameters()) == {torch.float32}
    assert float_dtypes(s["momentum_buffer"] for s in optimizer.state.values()) == {torch.float32}
    assert {k: v.dtype for k, v in metrics.items()} == {k: torch.float32 for k in metrics}
    assert torch.isfinite(metrics["loss"])
