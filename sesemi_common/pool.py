"""The unlabeled pool (docs/DESIGN.md section 9): the images the unlabeled batches are drawn from.

The data of a run has three parts: the labeled set (indices into the training images), the
unlabeled pool, and the test set, which never joins the pool. `data.unlabeled` names the pool's
sources, '+'-joined: `train` (every training image, labels ignored: the benchmark protocol and
the default), `folder` (the images below `data.unlabeled_root`) and `split` (the dataset's own
unlabeled split, `Dataset.unlabeled_images`).

Both trainers index one array, `TrainingData.images`: the training images first (so the labeled
indices and, with the default pool, the unlabeled indices are those of today), then the pool's own
images. `pool` holds the indices of the pool in that array; the samplers walk positions in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import resize
from .config import unlabeled_sources
from .datasets import Dataset, DatasetError, cache_dir, load_unlabeled_folder, reads_mapped
from .mmap_cache import concatenated

NO_LABEL = -1  # the label of an image outside the training set (the pool's own images)


@dataclass(frozen=True)
class TrainingData:
    images: np.ndarray  # uint8 (N + M, H, W, 3): the N training images, then the pool's M own images
    labels: np.ndarray  # int64 (N + M,): the training labels, then NO_LABEL
    pool: np.ndarray  # int64 indices into `images` of the unlabeled pool
    n_train: int

    @property
    def pool_images(self) -> np.ndarray:
        """The pool's own images (not training images), for the run's data fingerprint."""
        return self.images[self.n_train:]


def labels_known(data_cfg) -> bool:
    """Whether every pool image has a (hidden) training label, so a method may log how often its
    pseudo-labels are right: only for the pool of training images."""
    return unlabeled_sources(data_cfg) == ("train",)


def training_data(dataset: Dataset, data_cfg) -> TrainingData:
    """The training images and the unlabeled pool `data_cfg.unlabeled` names, in the order written."""
    n_train = len(dataset.train_images)
    own, pool, start = [], [], n_train
    for source in unlabeled_sources(data_cfg):
        if source == "train":
            pool.append(np.arange(n_train, dtype=np.int64))
            continue
        images = _folder_images(dataset, data_cfg) if source == "folder" else _split_images(dataset, data_cfg)
        own.append(images)
        pool.append(np.arange(start, start + len(images), dtype=np.int64))
        start += len(images)
    if not own:  # today's protocol: no copy of the training images
        return TrainingData(dataset.train_images, np.asarray(dataset.train_labels, np.int64), np.concatenate(pool),
                            n_train)
    images = _joined([dataset.train_images, *own], data_cfg)
    labels = np.concatenate([np.asarray(dataset.train_labels, np.int64), np.full(start - n_train, NO_LABEL)])
    return TrainingData(images, labels, np.concatenate(pool), n_train)


def _joined(parts: list[np.ndarray], data_cfg) -> np.ndarray:
    """The training images, then the pool's own: in RAM for `device` placement, else one
    memory-mapped file written block by block (never the whole set in RAM)."""
    if not reads_mapped(data_cfg):
        return np.concatenate(parts)
    return concatenated(parts, cache_dir() / "placement")


def _folder_images(dataset: Dataset, data_cfg) -> np.ndarray:
    if not data_cfg.unlabeled_root:  # checked here, not in the config, so a preset may leave it to the command line
        raise DatasetError(f"data.unlabeled={data_cfg.unlabeled} includes folder but data.unlabeled_root is empty: "
                           "set data.unlabeled_root to a folder of images without classes")
    _refuse_test_images(data_cfg)
    images = load_unlabeled_folder(data_cfg.unlabeled_root, data_cfg.image_size, resize.policy_for(data_cfg, True),
                                   mapped=reads_mapped(data_cfg))
    _check_same_shape(images, dataset, f"unlabeled folder {data_cfg.unlabeled_root}")
    return images


def _split_images(dataset: Dataset, data_cfg) -> np.ndarray:
    if dataset.unlabeled_images is None:
        raise DatasetError(f"data.unlabeled={data_cfg.unlabeled} includes split, but {dataset.name} has no unlabeled "
                           "split of its own (STL-10 and SVHN have one): leave split out of data.unlabeled")
    _check_same_shape(dataset.unlabeled_images, dataset, f"the unlabeled split of {dataset.name}")
    return dataset.unlabeled_images


def _check_same_shape(images: np.ndarray, dataset: Dataset, what: str) -> None:
    if images.shape[1:] != dataset.train_images.shape[1:]:
        raise DatasetError(f"{what} holds images of shape {images.shape[1:]} but the training images are "
                           f"{dataset.train_images.shape[1:]}: set data.resize=center_crop (or squash)")


def _refuse_test_images(data_cfg) -> None:
    """The test set never joins the pool: an unlabeled folder inside an ImageFolder tree's test/
    (or holding it) would put test images in it."""
    if data_cfg.dataset != "imagefolder" or not data_cfg.root:
        return
    folder, test = Path(data_cfg.unlabeled_root).resolve(), (Path(data_cfg.root) / "test").resolve()
    if folder == test or test in folder.parents or folder in test.parents:
        raise DatasetError(f"data.unlabeled_root {data_cfg.unlabeled_root} holds or lies in the test images "
                           f"({test}): test images never join the unlabeled pool; point it at other images")
