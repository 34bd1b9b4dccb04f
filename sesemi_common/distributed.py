"""Which of several training processes this is, and which part of a step's batch it takes.

Framework-free, shared by the PyTorch (DistributedDataParallel under `torchrun`) and JAX
(`jax.distributed`) multi-process trainers (docs/DESIGN.md section 8): every process draws the same
global batch and takes one contiguous chunk of it, and only process 0 writes the run directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError


@dataclass(frozen=True)
class Process:
    index: int = 0
    count: int = 1

    @property
    def writer(self) -> bool:
        """Process 0 alone writes the run directory, metrics, checkpoints and summary."""
        return self.index == 0


def local_slice(global_size: int, process: Process, key: str = "the batch size") -> slice:
    """This process's chunk `[index * n, (index + 1) * n)` of a global batch, `n = global_size // count`.

    Contiguous because a JAX global mesh shards the batch axis in contiguous chunks in device
    order: both frameworks then give process i the same images. `key` names the config entry
    in the error for a batch that does not split evenly."""
    if global_size % process.count:
        raise ConfigError(f"{key} ({global_size}) must be divisible by the {process.count} processes the batch "
                          "is split over")
    n = global_size // process.count
    return slice(process.index * n, (process.index + 1) * n)
