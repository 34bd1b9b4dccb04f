"""The PyTorch trainer reading a memory-mapped image cache (`data.placement=host`, docs/placement.md).

`MappedSpecBatches` is `data.SpecBatches` over `sesemi_common.mmap_cache`: a step's spec in, the
same tensors out, but only the step's rows are read from the file (under torchrun, only this
rank's slice of them). The map is opened lazily in the process that reads it, so DataLoader
workers (`num_workers` > 0) each open their own and nothing memory-mapped is pickled into them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sesemi_common import placement
from sesemi_common.distributed import Process
from sesemi_common.mmap_cache import MappedImages
from sesemi_common.sampling import BatchSpec

from .data import local_spec, unlabeled_index


class MappedSpecBatches(Dataset):
    def __init__(self, path: str | Path, labels: np.ndarray, process: Process = Process()):
        self.path = Path(path)
        self.length = len(MappedImages(self.path).images)  # checked here, so a bad cache stops the run before step 0
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.process = process
        self._cache: MappedImages | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": None}  # a worker opens the map itself

    @property
    def cache(self) -> MappedImages:
        if self._cache is None:
            self._cache = MappedImages(self.path)
        return self._cache

    def __getitem__(self, spec: BatchSpec) -> dict[str, torch.Tensor]:
        spec = local_spec(spec, self.process)
        labeled = torch.as_tensor(spec.labeled, dtype=torch.int64)
        unlabeled = torch.as_tensor(spec.unlabeled, dtype=torch.int64)
        rows = np.concatenate([spec.labeled, spec.unlabeled]).astype(np.int64)
        images = torch.from_numpy(self.cache.gather(rows)).permute(0, 3, 1, 2)  # NCHW, as SpecBatches
        n_labeled = len(labeled)
        return {"sup_images": images[:n_labeled], "labels": self.labels[labeled],
                "unlabeled_images": images[n_labeled:],
                "unlabeled_labels": self.labels[unlabeled],  # for logging only (pseudo-label accuracy)
                "sup_offsets": torch.as_tensor(spec.sup_offsets), "sup_flips": torch.as_tensor(spec.sup_flips),
                "views": {name: torch.as_tensor(v) for name, v in spec.views.items()}, **unlabeled_index(spec)}

    def __len__(self) -> int:
        return self.length


def mapped_batch_loader(path: str | Path, labels: np.ndarray, specs: Sampler | Sequence[BatchSpec],
                        process: Process = Process(), workers: int = 0) -> DataLoader:
    """`data.batch_loader` over the memory-mapped cache at `path`; with `workers` > 0, that many
    processes gather steps ahead (the DataLoader keeps the sampler's order, so the stream, and a
    resumed run, are unchanged). Workers are spawned, never forked: fork could deadlock on the threads
    of a process that runs JAX. (A forked worker also inherited the run directory's lock and held it
    after a kill -9 of the trainer, refusing `--resume`; run_lock now drops it in every forked child.)"""
    return DataLoader(MappedSpecBatches(path, labels, process), sampler=specs, batch_size=None,
                      num_workers=workers, generator=torch.Generator(),
                      prefetch_factor=2 if workers else None, multiprocessing_context="spawn" if workers else None)


def training_loader(exp, config, specs: Sampler | Sequence[BatchSpec], process: Process = Process()) -> DataLoader:
    """The run's loader for `data.placement`. PyTorch holds no set on the device: `device` keeps
    today's in-RAM tensor (refused, with the numbers, when it exceeds the host's RAM), `host` reads
    the memory-mapped cache with `data.loader_workers` workers, `auto` picks by the share of RAM the
    set takes."""
    from sesemi_common.datasets import cache_dir
    from sesemi_common.mmap_cache import host_images

    from .data import batch_loader

    training = exp.training
    where = placement.choose(config.data.placement, training.images.nbytes, placement.host_memory_bytes(),
                             "host RAM (where PyTorch keeps the set)", process.writer)
    if where == "device":
        return batch_loader(training.images, training.labels, specs, process)
    cache = host_images(training.images, cache_dir() / "placement")
    return mapped_batch_loader(cache.path, training.labels, specs, process, config.data.loader_workers)
