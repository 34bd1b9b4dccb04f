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
from sesemi_common.sampling import BatchSpec, check_batch_sizes, crop_geometry, epoch_positions

from . import transforms


def _generator(*seed_parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(seed_parts)).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _epoch_batch(seed: int, stream: int, step: int, batch: int, pool: int) -> torch.Tensor:
    epochs, positions = epoch_positions(step, batch, pool)
    perms = {e: torch.randperm(pool, generator=_generator(seed, stream, e)) for e in set(epochs.tolist())}
    picks = [perms[e][p] for e, p in zip(epochs.tolist(), positions.tolist())]
    return torch.stack(picks) if picks else torch.zeros(0, dtype=torch.int64)  # batch 0: the supervised baseline


class SpecSampler(Sampler):
    """Batch specs for steps `start_step ... total_steps - 1`, drawn with torch generators."""

    def __init__(self, labeled: np.ndarray, n_train: int, config: Config, start_step: int = 0):
        train = config.train
        check_batch_sizes(train.batch_labeled, train.batch_unlabeled, len(labeled), n_train)
        self.labeled = torch.as_tensor(labeled, dtype=torch.int64)
        self.n_train = n_train
        self.config = config
        self.start_step = start_step

    def spec(self, step: int) -> BatchSpec:
        train, seed = self.config.train, self.config.train.seed
        padding, _ = crop_geometry(self.config.augment)
        generator = _generator(seed, 2, step)
        sup_offsets = transforms.sample_crop_params(generator, train.batch_labeled, padding)
        flips = transforms.sample_flip_params(generator, train.batch_labeled) & self.config.augment.hflip
        self_offsets = transforms.sample_crop_params(generator, train.batch_unlabeled, padding)
        return BatchSpec(
            labeled=self.labeled[_epoch_batch(seed, 0, step, train.batch_labeled, len(self.labeled))].numpy(),
            unlabeled=_epoch_batch(seed, 1, step, train.batch_unlabeled, self.n_train).numpy(),
            sup_offsets=np.asarray(sup_offsets), sup_flips=np.asarray(flips),
            self_offsets=np.asarray(self_offsets))

    def __iter__(self) -> Iterator[BatchSpec]:
        return (self.spec(step) for step in range(self.start_step, self.config.train.steps))

    def __len__(self) -> int:
        return self.config.train.steps - self.start_step


class SpecBatches(Dataset):
    """Maps a `BatchSpec` to the step's uint8 NCHW images, labels and transform parameters."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)

    def __getitem__(self, spec: BatchSpec) -> dict[str, torch.Tensor]:
        labeled = torch.as_tensor(spec.labeled, dtype=torch.int64)
        unlabeled = torch.as_tensor(spec.unlabeled, dtype=torch.int64)
        return {"sup_images": self.images[labeled], "labels": self.labels[labeled],
                "unlabeled_images": self.images[unlabeled],
                "sup_offsets": torch.as_tensor(spec.sup_offsets), "sup_flips": torch.as_tensor(spec.sup_flips),
                "self_offsets": torch.as_tensor(spec.self_offsets)}

    def __len__(self) -> int:
        return len(self.images)


def batch_loader(images_nhwc: np.ndarray, labels: np.ndarray, specs: Sampler | Sequence[BatchSpec]) -> DataLoader:
    # batch_size=None: each spec already describes a whole step's batch.
    return DataLoader(SpecBatches(images_nhwc, labels), sampler=specs, batch_size=None, num_workers=0)
