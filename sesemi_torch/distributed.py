"""Several training processes under `torchrun`: process group, global BatchNorm and dropout, DDP.

`torchrun --nproc-per-node N -m sesemi_torch.cli train ...` starts N copies of the trainer. Each
draws the same global batch spec and trains on its contiguous chunk of it
(`sesemi_common.distributed.local_slice`); DistributedDataParallel averages the gradients, so,
with every loss a mean over equal chunks, the step is the 1-process step (docs/DESIGN.md section 8).
What couples the samples of a batch is made global too: BatchNorm statistics (SyncBatchNorm) and
the random dropout masks and input noise (drawn for the global batch, then sliced).
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sesemi_common.config import Config, ConfigError
from sesemi_common.distributed import Process, local_slice
from sesemi_common.methods import unlabeled_batch

# How long a collective waits for the other processes before it fails: a process that hangs
# then ends the run with an error instead of holding the others forever (one that dies closes
# its connections, which fails the others at once). Long enough for process 0's evaluation
# and checkpoint, which the others wait for at their next step.
TIMEOUT = timedelta(minutes=10)


class PeerStopped(RuntimeError):
    """Another training process failed (its own error says why); this one stops too."""


def start() -> Process:
    """This process among torchrun's: RANK of WORLD_SIZE. With WORLD_SIZE > 1 the process group is
    set up from torchrun's environment (MASTER_ADDR, MASTER_PORT): gloo for CPU tensors, NCCL for
    CUDA ones."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    return current()


def current() -> Process:
    if not dist.is_initialized():
        return Process()
    return Process(dist.get_rank(), dist.get_world_size())


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def synchronize() -> None:
    """Wait until every process gets here (an all-reduce of a CPU tensor, which gloo carries)."""
    if dist.is_initialized():
        dist.all_reduce(torch.zeros(1))


def _all_succeeded(succeeded: bool) -> bool:
    flag = torch.tensor([int(succeeded)])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


@contextlib.contextmanager
def together(process: Process, what: str) -> Iterator[None]:
    """Run a block in every process; when it fails in any, all stop: the failing ones with their
    own error, the others with PeerStopped (instead of waiting at their next collective)."""
    if process.count == 1:
        yield
        return
    try:
        yield
    except Exception:
        _all_succeeded(False)
        raise
    if not _all_succeeded(True):
        raise PeerStopped(f"another training process failed while {what} (its error is above); "
                          f"process {process.index} stops too")


@contextlib.contextmanager
def peer_failures(process: Process) -> Iterator[None]:
    """A collective that fails because another process died or hung (its connection reset, or
    TIMEOUT passed) ends this one with a one-line PeerStopped instead of gloo's traceback."""
    try:
        yield
    except RuntimeError as err:
        if process.count == 1 or not (isinstance(err, dist.DistError) or "gloo" in str(err)):
            raise
        reason = str(err).splitlines()[0].split("] ", 1)[-1].split(". ")[0]  # gloo's: "[file:line] what. advice"
        raise PeerStopped(f"process {process.index} lost contact with another training process ({reason}); the "
                          "run stops at its last checkpoint: continue it with `--resume`") from None


def local_device(name: str, process: Process) -> str:
    """`--device cuda` in one of several processes: the GPU of its LOCAL_RANK."""
    if process.count == 1 or not name.startswith("cuda"):
        return name
    if name != "cuda":
        raise ConfigError(f"--device {name} with {process.count} processes: pass --device cuda, and each process "
                          "uses the GPU of its LOCAL_RANK")
    local_rank = int(os.environ.get("LOCAL_RANK", process.index))
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():  # else resolve_device refuses it
        torch.cuda.set_device(local_rank)  # NCCL's communicators use the current device
    return f"cuda:{local_rank}"


def check_divisible(config: Config, process: Process) -> None:
    local_slice(config.train.batch_labeled, process, "train.batch_labeled")
    local_slice(unlabeled_batch(config), process, "train.batch_unlabeled")


def global_model(model: nn.Module, device: torch.device, process: Process) -> nn.Module:
    """`model` with global BatchNorm statistics and global dropout masks over the processes;
    unchanged in a single process. Parameter and buffer names stay the same, so its state dict
    is a 1-process model's."""
    if process.count == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        _replace(model, nn.BatchNorm2d, CpuSyncBatchNorm.like)
    _replace(model, nn.Dropout, lambda dropout: GlobalDropout(dropout.p, process))
    return model


def _replace(model: nn.Module, kind: type, make) -> None:
    for name, module in list(model.named_modules()):
        if type(module) is kind and name:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, make(module))


def wrap(model: nn.Module, device: torch.device, process: Process) -> nn.Module:
    """The module the training step calls: DDP (gradients averaged over the processes) or `model`."""
    if process.count == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP: its state dict is a 1-process model's (no `module.` prefix)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean over the processes of a tensor of per-process means (equal chunks: the global mean)."""
    if not dist.is_initialized():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over the processes, differentiable (its gradient is summed likewise, which
    DDP's average turns into the gradient of the global quantity); `x` itself in one process."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return _SumOverProcesses.apply(x)


def gather_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The processes' `x` (one shape in all) concatenated along axis 0 in process order, which is
    the global batch's order (each holds its contiguous chunk); `x` itself in one process. No gradient."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    chunks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(chunks, x.contiguous())
    return torch.cat(chunks)


def global_noise(shape: tuple[int, ...], process: Process, draw) -> torch.Tensor:
    """This process's chunk of `draw(global shape)`, the global batch being `count` times the local
    one: every process draws the same (its generator is seeded as the others'), so the noise is the
    1-process run's and the generators stay equal, which a checkpoint of process 0's relies on."""
    if process.count == 1:
        return draw(shape)
    n = shape[0] * process.count
    return draw((n, *shape[1:]))[local_slice(n, process)]


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) with a gradient: the gradient of a sum over processes, summed likewise."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with the statistics of the global batch, for CPU tensors (gloo): torch's
    SyncBatchNorm runs only on GPUs (its statistics kernels are CUDA ops, and DDP refuses it on
    a CPU module). The statistics come from differentiable all-reduces: the sum (so the mean),
    then the sum of squared deviations from that mean (two passes, like `F.batch_norm`, rather
    than E[x^2] - E[x]^2, which cancels). Their backward all-reduces the gradients, so with
    DDP's averaging the gradient is that of the global mean loss."""

    @classmethod
    def like(cls, norm: nn.BatchNorm2d) -> "CpuSyncBatchNorm":
        """A global twin of `norm` holding its very parameters and buffers (as
        `SyncBatchNorm.convert_sync_batchnorm` does)."""
        twin = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        twin.weight, twin.bias = norm.weight, norm.bias
        twin.running_mean, twin.running_var = norm.running_mean, norm.running_var
        twin.num_batches_tracked = norm.num_batches_tracked
        return twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = x - mean.view(shape)
        var = _SumOverProcesses.apply((centered * centered).sum(dims)) / count
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1))
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased_var)


class GlobalDropout(nn.Dropout):
    """Dropout whose mask is this process's chunk of a mask drawn for the global batch (see
    `global_noise`). On CPU the draw is `F.dropout`'s own (`bernoulli_(1 - p)`, scaled by
    1 / (1 - p)), so the masks are the 1-process run's."""

    def __init__(self, p: float, process: Process):
        super().__init__(p)
        self.process = process

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.dropout(x, self.p, training=False)
        keep = global_noise(x.shape, self.process, lambda shape: x.new_empty(shape).bernoulli_(1 - self.p))
        return x * keep.div_(1 - self.p)
