"""Feeding the PyTorch trainer through `torch.utils.data`.

A sampler yields one `BatchSpec` per step (which images, and the parameters of their random
transforms); the dataset turns a spec into uint8 tensors. Both are pure functions of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would, and the
lockstep parity test swaps the sampler for numpy-drawn specs shared with JAX.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sesemi_common.config import Config
from sesemi_common.distributed import Process, local_slice
from sesemi_common.methods import get, unlabeled_batch
from sesemi_common.sampling import BatchSpec, check_batch_sizes, crop_geometry, epoch_positions, pool_indices

from . import transforms
from .methods import sample_views


def _generator(*seed_parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(seed_parts)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _epoch_batch(seed: int, stream: int, step: int, batch: int, pool: int) -> torch.Tensor:
    epochs, positions = epoch_positions(step, batch, pool)
    perms = {e: torch.randperm(pool, generator=_generator(seed, stream, e)) for e in set(epochs.tolist())}
    picks = [perms[e][p] for e, p in zip(epochs.tolist(), positions.tolist())]
    return torch.stack(picks) if picks else torch.zeros(0, dtype=torch.int64)  # batch 0: the supervised baseline


class SpecSampler(Sampler):
    """Batch specs for steps `start_step ... total_steps - 1`, drawn with torch generators. `pool`:
    the indices of the unlabeled pool, or a count n for the first n images (the training set)."""

    def __init__(self, labeled: np.ndarray, pool: int | np.ndarray, config: Config, start_step: int = 0):
        self.pool = torch.as_tensor(pool_indices(pool))
        check_batch_sizes(config.train.batch_labeled, unlabeled_batch(config), len(labeled), len(self.pool))
        self.labeled = torch.as_tensor(labeled, dtype=torch.int64)
        self.config = config
        self.start_step = start_step

    def spec(self, step: int) -> BatchSpec:
        config, seed = self.config, self.config.train.seed
        batch_labeled, batch_unlabeled = config.train.batch_labeled, unlabeled_batch(config)
        padding, _ = crop_geometry(config)
        generator = _generator(seed, 2, step)
        sup_offsets = transforms.sample_crop_params(generator, batch_labeled, padding)
        flips = transforms.sample_flip_params(generator, batch_labeled) & config.augment.hflip
        views = sample_views(generator, get(config.method.name).view_params, batch_unlabeled, padding,
                             config.data.image_size)
        positions = _epoch_batch(seed, 1, step, batch_unlabeled, len(self.pool))
        return BatchSpec(
            labeled=self.labeled[_epoch_batch(seed, 0, step, batch_labeled, len(self.labeled))].numpy(),
            unlabeled=self.pool[positions].numpy(),
            sup_offsets=np.asarray(sup_offsets), sup_flips=np.asarray(flips),
            views={name: np.asarray(v) for name, v in views.items()}, unlabeled_positions=positions.numpy())

    def __iter__(self) -> Iterator[BatchSpec]:
        return (self.spec(step) for step in range(self.start_step, self.config.train.steps))

    def __len__(self) -> int:
        return self.config.train.steps - self.start_step


def local_spec(spec: BatchSpec, process: Process) -> BatchSpec:
    """This process's contiguous chunk of the step's labeled images and of its unlabeled images
    (with their transform parameters); a view batch made from the chunk is the same chunk of the
    global view batch, which is image-major."""
    if process.count == 1:
        return spec
    sup, unlabeled = local_slice(len(spec.labeled), process), local_slice(len(spec.unlabeled), process)
    return BatchSpec(labeled=spec.labeled[sup], unlabeled=spec.unlabeled[unlabeled],
                     sup_offsets=spec.sup_offsets[sup], sup_flips=spec.sup_flips[sup],
                     views={name: v[unlabeled] for name, v in spec.views.items()},
                     unlabeled_positions=None if spec.unlabeled_positions is None
                     else spec.unlabeled_positions[unlabeled])


class SpecBatches(Dataset):
    """Maps a `BatchSpec` to the step's uint8 NCHW images, labels and transform parameters: the
    whole step's, or in one of several processes its chunk."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, process: Process = Process()):
        self.images = transforms.nchw(images_nhwc)  # in RAM (a memory-mapped set is read in)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.process = process

    def __getitem__(self, spec: BatchSpec) -> dict[str, torch.Tensor]:
        spec = local_spec(spec, self.process)
        labeled = torch.as_tensor(spec.labeled, dtype=torch.int64)
        unlabeled = torch.as_tensor(spec.unlabeled, dtype=torch.int64)
        return {"sup_images": self.images[labeled], "labels": self.labels[labeled],
                "unlabeled_images": self.images[unlabeled],
                "unlabeled_labels": self.labels[unlabeled],  # for logging only (pseudo-label accuracy)
                "sup_offsets": torch.as_tensor(spec.sup_offsets), "sup_flips": torch.as_tensor(spec.sup_flips),
                "views": {name: torch.as_tensor(v) for name, v in spec.views.items()}, **unlabeled_index(spec)}

    def __len__(self) -> int:
        return len(self.images)


def unlabeled_index(spec: BatchSpec) -> dict[str, torch.Tensor]:
    """{"unlabeled_index": the unlabeled images' pool positions}, what a method's per-image state is
    indexed by (FlexMatch); {} for a spec without them."""
    if spec.unlabeled_positions is None:
        return {}
    return {"unlabeled_index": torch.as_tensor(spec.unlabeled_positions, dtype=torch.int64)}


def to_device(batch: dict, device: torch.device | str) -> dict:
    """The step's tensors (nested dicts of them too) on `device`."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
            for k, v in batch.items()}


def batch_loader(images_nhwc: np.ndarray, labels: np.ndarray, specs: Sampler | Sequence[BatchSpec],
                 process: Process = Process()) -> DataLoader:
    # batch_size=None: each spec already describes a whole step's batch. A generator of its own:
    # by default each new iterator draws a seed from torch's global generator, which would shift
    # the dropout and input noise of a resumed run by one draw against an uninterrupted one.
    return DataLoader(SpecBatches(images_nhwc, labels, process), sampler=specs, batch_size=None, num_workers=0,
                      generator=torch.Generator())
