"""What one training step sees: which images, and the parameters of their random transforms.

Both trainers consume a `BatchSpec` per step. Each draws its own on the device (JAX) or with
torch generators (PyTorch) in normal runs; `HostStream` draws them with numpy so both
frameworks can be fed the very same stream (lockstep parity).

Labeled and unlabeled batches walk through epochs: each epoch is a fresh permutation of
positions in their set (the labeled indices; the unlabeled pool's indices, docs/DESIGN.md section 9),
and a batch that crosses an epoch boundary takes the tail of one permutation and the head of the
next. Within an epoch no image repeats, so a batch larger than its set is impossible (checked by
`check_batch_sizes`). The pool is given as an array of indices into the run's images, or as a
count n meaning the first n (the training images: today's protocol, where the walk's positions
are the indices themselves).

Translations are pixels at 32 px and scale with the image side (`scaled_shift`), so 32 px runs
keep their 2 px (and FixMatch's 4 px) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import randaugment
from .config import AugmentConfig, Config, ConfigError
from .methods import TRANSLATED, ViewParam, get, unlabeled_batch


@dataclass(frozen=True)
class BatchSpec:
    labeled: np.ndarray  # (batch_labeled,) indices into the run's images (the training images first)
    unlabeled: np.ndarray  # (batch_unlabeled,) indices into the run's images, drawn from the pool
    sup_offsets: np.ndarray  # (batch_labeled, 2) crop offsets (dy, dx) of the supervised branch
    sup_flips: np.ndarray  # (batch_labeled,) horizontal flips of the supervised branch
    views: dict[str, np.ndarray] = field(default_factory=dict)  # the method's view parameters, per unlabeled image
    # (batch_unlabeled,) the unlabeled images' positions in the pool (`unlabeled` is pool[positions]):
    # what a method's per-image state is indexed by (FlexMatch), unchanged when a host batch renumbers
    # `unlabeled`. None where a spec is built by hand without them.
    unlabeled_positions: np.ndarray | None = None


REFERENCE_SIZE = 32  # the side at which augment.translate, augment.crop_padding and FixMatch's shift are given


def scaled_shift(pixels_at_32: int, image_size: int) -> int:
    """A shift of `pixels_at_32` px at 32 px as the same fraction of `image_size`, rounded half up:
    2 -> 2 at 32, 6 at 96, 14 at 224; 1 at 16."""
    return int(math.floor(pixels_at_32 * image_size / REFERENCE_SIZE + 0.5))


def crop_geometry(config: Config) -> tuple[int, str]:
    """(padding, pad mode) of `config`'s crop at its data.image_size; offsets are drawn in
    [0, 2 * padding]. It takes the whole config so no caller can forget the image size (a 32 px
    padding at 96 px is a silently weaker augmentation)."""
    return _crop_geometry(config.augment, config.data.image_size)


def _crop_geometry(augment: AugmentConfig, image_size: int) -> tuple[int, str]:
    if augment.crop == "translate":
        return scaled_shift(augment.translate, image_size), "reflect"
    return scaled_shift(augment.crop_padding, image_size), "constant"


def pool_indices(pool: int | np.ndarray) -> np.ndarray:
    """int64 indices of the unlabeled pool: `pool` itself, or for a count n the first n images."""
    return np.arange(pool, dtype=np.int64) if np.ndim(pool) == 0 else np.asarray(pool, dtype=np.int64)


def check_batch_sizes(batch_labeled: int, batch_unlabeled: int, n_labeled: int, n_pool: int) -> None:
    if batch_labeled > n_labeled:
        raise ConfigError(f"train.batch_labeled ({batch_labeled}) is larger than the labeled set "
                          f"({n_labeled} images) and batches are drawn without replacement within an "
                          "epoch: lower train.batch_labeled or raise data.n_labels")
    if batch_unlabeled > n_pool:
        raise ConfigError(f"train.batch_unlabeled ({batch_unlabeled}) is larger than the unlabeled pool "
                          f"({n_pool} images, data.unlabeled): lower train.batch_unlabeled or add images "
                          "to the pool")


def epoch_positions(step: int, batch: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch number and position in that epoch's permutation of each item of batch `step`."""
    flat = step * batch + np.arange(batch, dtype=np.int64)
    return flat // pool, flat % pool


class HostStream:
    """Numpy-drawn batch specs, a pure function of (seed, step)."""

    def __init__(self, labeled: np.ndarray, pool: int | np.ndarray, batch_labeled: int, batch_unlabeled: int,
                 augment: AugmentConfig, seed: int, view_params: tuple[ViewParam, ...] = TRANSLATED,
                 image_size: int = REFERENCE_SIZE):
        self.pool = pool_indices(pool)
        check_batch_sizes(batch_labeled, batch_unlabeled, len(labeled), len(self.pool))
        self.labeled = np.asarray(labeled, dtype=np.int64)
        self.batch_labeled = batch_labeled
        self.batch_unlabeled = batch_unlabeled
        self.padding, _ = _crop_geometry(augment, image_size)
        self.hflip = augment.hflip
        self.seed = seed
        self.view_params = view_params
        self.image_size = image_size

    @classmethod
    def for_config(cls, labeled: np.ndarray, pool: int | np.ndarray, config: Config,
                   seed: int | None = None) -> "HostStream":
        """The stream of `config`'s batch sizes, augmentation and method views."""
        return cls(labeled, pool, config.train.batch_labeled, unlabeled_batch(config), config.augment,
                   config.train.seed if seed is None else seed, get(config.method.name).view_params,
                   config.data.image_size)

    def _epoch_batch(self, stream: int, step: int, batch: int, pool: int) -> np.ndarray:
        epochs, positions = epoch_positions(step, batch, pool)
        perms = {e: np.random.default_rng([self.seed, stream, e]).permutation(pool) for e in set(epochs.tolist())}
        return np.array([perms[e][p] for e, p in zip(epochs.tolist(), positions.tolist())], dtype=np.int64)

    def __call__(self, step: int) -> BatchSpec:
        rng = np.random.default_rng([self.seed, 2, step])
        span = 2 * self.padding + 1
        labeled = self.labeled[self._epoch_batch(0, step, self.batch_labeled, len(self.labeled))]
        positions = self._epoch_batch(1, step, self.batch_unlabeled, len(self.pool))
        unlabeled = self.pool[positions]
        flips = rng.random(self.batch_labeled) < 0.5
        sup_offsets = rng.integers(0, span, (self.batch_labeled, 2)).astype(np.int32)
        views = sample_view_params_numpy(rng, self.view_params, self.batch_unlabeled, self.padding, self.image_size)
        return BatchSpec(labeled=labeled, unlabeled=unlabeled, sup_offsets=sup_offsets, sup_flips=flips & self.hflip,
                         views=views, unlabeled_positions=positions)


def view_shift(param: ViewParam, padding: int, image_size: int) -> int:
    """The shift of a crop view parameter: the configured crop's `padding`, or the method's own
    (pixels at 32 px) scaled to `image_size`."""
    return padding if param.padding is None else scaled_shift(param.padding, image_size)


def sample_view_params_numpy(rng: np.random.Generator, params: tuple[ViewParam, ...], n: int,
                             padding: int, image_size: int = REFERENCE_SIZE) -> dict[str, np.ndarray]:
    """The numpy twin of the trainers' `sample_views`: one draw per parameter, in declared order."""
    drawn = {}
    for param in params:
        if param.kind == "crop":
            shift = view_shift(param, padding, image_size)
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
