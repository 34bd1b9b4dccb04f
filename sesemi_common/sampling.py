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

from dataclasses import dataclass, field

import numpy as np

from . import randaugment
from .config import AugmentConfig, Config, ConfigError
from .methods import TRANSLATED, ViewParam, get, unlabeled_batch


@dataclass(frozen=True)
class BatchSpec:
    labeled: np.ndarray  # (batch_labeled,) indices into the training images
    unlabeled: np.ndarray  # (batch_unlabeled,) indices into the training images
    sup_offsets: np.ndarray  # (batch_labeled, 2) crop offsets (dy, dx) of the supervised branch
    sup_flips: np.ndarray  # (batch_labeled,) horizontal flips of the supervised branch
    views: dict[str, np.ndarray] = field(default_factory=dict)  # the method's view parameters, per unlabeled image


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
                 augment: AugmentConfig, seed: int, view_params: tuple[ViewParam, ...] = TRANSLATED):
        check_batch_sizes(batch_labeled, batch_unlabeled, len(labeled), n_train)
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.n_train = n_train
        self.batch_labeled = batch_labeled
        self.batch_unlabeled = batch_unlabeled
        self.padding, _ = crop_geometry(augment)
        self.hflip = augment.hflip
        self.seed = seed
        self.view_params = view_params

    @classmethod
    def for_config(cls, labeled: np.ndarray, n_train: int, config: Config, seed: int | None = None) -> "HostStream":
        """The stream of `config`'s batch sizes, augmentation and method views."""
        return cls(labeled, n_train, config.train.batch_labeled, unlabeled_batch(config), config.augment,
                   config.train.seed if seed is None else seed, get(config.method.name).view_params)

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
        sup_offsets = rng.integers(0, span, (self.batch_labeled, 2)).astype(np.int32)
        return BatchSpec(labeled=labeled, unlabeled=unlabeled, sup_offsets=sup_offsets, sup_flips=flips & self.hflip,
                         views=sample_view_params_numpy(rng, self.view_params, self.batch_unlabeled, self.padding))


def sample_view_params_numpy(rng: np.random.Generator, params: tuple[ViewParam, ...], n: int,
                             padding: int) -> dict[str, np.ndarray]:
    """The numpy twin of the trainers' `sample_views`: one draw per parameter, in declared order."""
    drawn = {}
    for param in params:
        if param.kind == "crop":
            shift = padding if param.padding is None else param.padding
            drawn[param.name] = rng.integers(0, 2 * shift + 1, (n, 2)).astype(np.int32)
        elif param.kind == "flip":
            drawn[param.name] = rng.random(n) < 0.5
        elif param.kind == "randaugment_ops":
            drawn[param.name] = rng.integers(0, len(randaugment.OPS), (n, randaugment.NUM_LAYERS)).astype(np.int32)
        elif param.kind == "randaugment_magnitudes":
            drawn[param.name] = rng.random((n, randaugment.NUM_LAYERS), dtype=np.float32)
        else:  # cutout
            drawn[param.name] = rng.random((n, 3), dtype=np.float32)
    return drawn
