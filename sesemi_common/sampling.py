"""What one training step sees: which images, and the parameters of their random transforms.

Both trainers consume a `BatchSpec` per step. Each draws its own on the device (JAX) or with
torch generators (PyTorch) in normal runs; `HostStream` draws them with numpy so both
frameworks can be fed the very same stream (lockstep parity).

Labeled and unlabeled batches walk through epochs: each epoch is a fresh permutation of the
pool, and a batch that crosses an epoch boundary takes the tail of one permutation and the
head of the next. Within an epoch no image repeats, so a batch larger than its pool is
impossible (checked by `check_batch_sizes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import AugmentConfig, ConfigError


@dataclass(frozen=True)
class BatchSpec:
    labeled: np.ndarray  # (batch_labeled,) indices into the training images
    unlabeled: np.ndarray  # (batch_unlabeled,) indices into the training images
    sup_offsets: np.ndarray  # (batch_labeled, 2) crop offsets (dy, dx) of the supervised branch
    sup_flips: np.ndarray  # (batch_labeled,) horizontal flips of the supervised branch
    self_offsets: np.ndarray  # (batch_unlabeled, 2) crop offsets of the self-supervised branch


def crop_geometry(augment: AugmentConfig) -> tuple[int, str]:
    """(padding, pad mode) of the configured crop; offsets are drawn in [0, 2 * padding]."""
    if augment.crop == "translate":
        return augment.translate, "reflect"
    return augment.crop_padding, "constant"


def check_batch_sizes(batch_labeled: int, batch_unlabeled: int, n_labeled: int, n_train: int) -> None:
    if batch_labeled > n_labeled:
        raise ConfigError(f"train.batch_labeled ({batch_labeled}) is larger than the labeled set "
                          f"({n_labeled} images) and batches are drawn without replacement within an "
                          "epoch: lower train.batch_labeled or raise data.n_labels")
    if batch_unlabeled > n_train:
        raise ConfigError(f"train.batch_unlabeled ({batch_unlabeled}) is larger than the training set "
                          f"({n_train} images): lower train.batch_unlabeled")


def epoch_positions(step: int, batch: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch number and position in that epoch's permutation of each item of batch `step`."""
    flat = step * batch + np.arange(batch, dtype=np.int64)
    return flat // pool, flat % pool


class HostStream:
    """Numpy-drawn batch specs, a pure function of (seed, step)."""

    def __init__(self, labeled: np.ndarray, n_train: int, batch_labeled: int, batch_unlabeled: int,
                 augment: AugmentConfig, seed: int):
        check_batch_sizes(batch_labeled, batch_unlabeled, len(labeled), n_train)
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.n_train = n_train
        self.batch_labeled = batch_labeled
        self.batch_unlabeled = batch_unlabeled
        self.padding, _ = crop_geometry(augment)
        self.hflip = augment.hflip
        self.seed = seed

    def _epoch_batch(self, stream: int, step: int, batch: int, pool: int) -> np.ndarray:
        epochs, positions = epoch_positions(step, batch, pool)
        perms = {e: np.random.default_rng([self.seed, stream, e]).permutation(pool) for e in set(epochs.tolist())}
        return np.array([perms[e][p] for e, p in zip(epochs.tolist(), positions.tolist())], dtype=np.int64)

    def __call__(self, step: int) -> BatchSpec:
        rng = np.random.default_rng([self.seed, 2, step])
        span = 2 * self.padding + 1
        labeled = self.labeled[self._epoch_batch(0, step, self.batch_labeled, len(self.labeled))]
        unlabeled = self._epoch_batch(1, step, self.batch_unlabeled, self.n_train)
        flips = rng.random(self.batch_labeled) < 0.5
        return BatchSpec(
            labeled=labeled,
            unlabeled=unlabeled,
            sup_offsets=rng.integers(0, span, (self.batch_labeled, 2)).astype(np.int32),
            sup_flips=flips & self.hflip,
            self_offsets=rng.integers(0, span, (self.batch_unlabeled, 2)).astype(np.int32),
        )
