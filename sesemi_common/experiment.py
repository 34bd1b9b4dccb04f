"""What both trainers do before the first step: data, split, statistics, run directory.

Keeping this in one framework-free place is what makes the two frameworks train on the
identical labeled subset with the identical normalization, and gives both the same life of
a run directory (see `sesemi_common.runs`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config, ConfigError, resume_changes
from .datasets import Dataset, load_dataset
from .distributed import Process
from .methods import unlabeled_batch
from .mmap_cache import hash_rows
from .pool import TrainingData, training_data
from . import run_lock
from .runs import RunDir, RunDirError, note
from .sampling import check_batch_sizes
from .splits import labeled_indices
from .stats import channel_stats
from .whitening import WhiteningError, check_zca_size, zca_statistics


@dataclass
class Experiment:
    config: Config
    run: RunDir
    dataset: Dataset
    labeled: np.ndarray  # sorted int64 indices of the labeled training images
    mean: np.ndarray  # (C,) float32, 0..1 scale
    std: np.ndarray
    zca: tuple[np.ndarray, np.ndarray] | None = None  # (mean (D,), matrix (D, D)) with augment.normalize=zca
    # The images the trainers index (training images, then the pool's own) and the unlabeled pool.
    training: TrainingData | None = None
    lock: run_lock.RunLock | None = None  # process 0's hold on the run directory, for as long as the run

    @property
    def num_classes(self) -> int:
        return len(self.dataset.class_names)

    @property
    def steps_per_epoch(self) -> float:
        """Steps per pass over the labeled set; `epoch` in the metrics counts these."""
        return len(self.labeled) / self.config.train.batch_labeled


def prepare(config: Config, run_dir: str | Path, resume: bool = False, dataset: Dataset | None = None,
            process: Process = Process()) -> Experiment:
    """`_prepare`, holding the run directory's lock (sesemi_common/run_lock.py) in process 0 from
    before the directory is read until the Experiment goes; a refused start lets it go at once."""
    if not process.writer:
        return _prepare(config, run_dir, resume, dataset, process)
    RunDir(run_dir).check_folder()
    if resume:  # before the lock, which would create the folder
        RunDir(run_dir).require_run("nothing to resume; train without --resume to start a run there")
    held_before = run_lock.holds(run_dir)  # by the CLI's `train`, which lets it go itself
    lock = run_lock.acquire(run_dir)
    try:
        exp = _prepare(config, run_dir, resume, dataset, process)
    except BaseException:
        if not held_before:
            lock.release()
        raise
    exp.lock = lock
    return exp


def _prepare(config: Config, run_dir: str | Path, resume: bool, dataset: Dataset | None,
             process: Process) -> Experiment:
    """Load the data and fix the split; on resume, the saved config, split and data must match.

    A new run replaces an unfinished start (no checkpoint, no summary) and refuses anything
    else; nothing is written until the data, the split and the batch sizes are known to work.
    With several processes, process 0 alone checks and writes the run directory; the others
    compute the same split and statistics (deterministic functions of config and data), or on
    resume read what process 0 wrote.
    """
    run = RunDir(run_dir)
    changes = {}
    if process.writer:
        changes = check_resumable(run, config) if resume else check_startable(run)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    training = training_data(dataset, config.data)
    if resume:
        return _resumed(config, run, dataset, changes, process, training)
    labeled = check_new_run(config, dataset, training)
    mean, std = channel_stats(dataset.train_images)  # the training images': the pool's own do not count
    zca = whitening_statistics(config, dataset, process)
    if not process.writer:
        return Experiment(config, run, dataset, labeled, mean, std, zca, training)
    if run.state() == "unfinished":
        note(f"note: {run.path} held an unfinished start (no checkpoint, no summary): replacing it")
        run.clear()
    run.write_config(config)
    zca_arrays = {} if zca is None else {"zca_mean": zca[0], "zca_matrix": zca[1]}
    run.write_split(labeled, mean=mean, std=std, **zca_arrays, **data_fingerprint(dataset, labeled, training))
    return Experiment(config, run, dataset, labeled, mean, std, zca, training)


def whitening_statistics(config: Config, dataset: Dataset,
                         process: Process = Process()) -> tuple[np.ndarray, np.ndarray] | None:
    """GCN + ZCA statistics of every training image (as the paper's code), or None for per-channel
    normalization. A ConfigError, before anything is written, for images too large for ZCA."""
    if config.augment.normalize != "zca":
        return None
    try:
        check_zca_size(dataset.train_images.shape[1:])
    except WhiteningError as err:
        raise ConfigError(str(err)) from None
    if process.writer:
        note(f"computing GCN + ZCA statistics of {len(dataset.train_images)} training images (once per run)")
    return zca_statistics(dataset.train_images)


def check_new_run(config: Config, dataset: Dataset, training: TrainingData | None = None) -> np.ndarray:
    """The labeled split of a new run, once its batch sizes are known to fit the data and its pool."""
    training = training or training_data(dataset, config.data)
    labeled = labeled_indices(dataset.train_labels, config.data.n_labels, len(dataset.class_names),
                              config.data.split_seed)
    check_batch_sizes(config.train.batch_labeled, unlabeled_batch(config), len(labeled), len(training.pool))
    return labeled


def check_startable(run: RunDir) -> dict:
    """Refuse to start a new run over one that has something to lose; {} (no changes) otherwise."""
    run.check_folder()
    state = run.state()
    if state == "finished":
        raise RunDirError(f"{run.path} already holds a run (finished, see its summary.json): pass --overwrite "
                          "to replace it, or choose another --run-dir")
    if state == "stopped":
        raise RunDirError(f"{run.path} already holds a run (stopped at its checkpoint of step "
                          f"{run.checkpoint_steps()[-1]}): pass --resume to continue it, --overwrite to replace "
                          "it, or choose another --run-dir")
    return {}


def check_resumable(run: RunDir, config: Config) -> dict:
    """Refuse a resume that cannot continue `run` with `config`; returns the allowed changes."""
    run.require_run("nothing to resume; train without --resume to start a run there")
    state = run.state()
    if state == "finished":
        raise RunDirError(f"{run.path} is finished (see its summary.json): nothing to resume")
    if state == "unfinished":
        raise RunDirError(f"{run.path} has no checkpoint yet (it stopped before its first one): train it again "
                          "without --resume; the unfinished start is replaced")
    return resume_changes(run.read_config(), config)


def _resumed(config: Config, run: RunDir, dataset: Dataset, changes: dict, process: Process,
             training: TrainingData) -> Experiment:
    split = run.read_split()
    if process.writer:
        check_same_data(run, split, dataset, training)
    labeled = split["labeled"]
    if len(labeled) and labeled.max() >= len(dataset.train_labels):  # a run without a fingerprint
        raise ConfigError(f"{run.path}/split.npz names training image {labeled.max()} but the data has only "
                          f"{len(dataset.train_labels)}: put back the data the run started with, or start a new run")
    check_batch_sizes(config.train.batch_labeled, unlabeled_batch(config), len(labeled), len(training.pool))
    if "mean" in split:  # the statistics the run started with, so the resumed steps see the same inputs
        mean, std = split["mean"], split["std"]
    else:
        mean, std = channel_stats(dataset.train_images)
    zca = whitening_statistics(config, dataset, process) if "zca_matrix" not in split else None
    if config.augment.normalize == "zca" and "zca_matrix" in split:  # the statistics the run started with
        zca = split["zca_mean"], split["zca_matrix"]
    if changes:  # only process 0 found (and records) them
        run.write_config(config)
        listed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items())
        note(f"note: resuming {run.path} with {listed} (recorded in its config.json)")
    return Experiment(config, run, dataset, labeled, mean, std, zca, training)


# ---------------------------------------------------------------- the data a run started with


def _sha256(array: np.ndarray) -> str:
    """sha256 of the array's bytes, read a block of rows at a time (the pool may be memory-mapped
    and larger than RAM); the digest is that of the whole array's bytes."""
    digest = hashlib.sha256()
    hash_rows(digest, array)
    return digest.hexdigest()


def data_fingerprint(dataset: Dataset, labeled: np.ndarray, training: TrainingData) -> dict[str, np.ndarray]:
    """What a resumed run must find unchanged, as extras of split.npz.

    The number of training images, the training labels in order, and the bytes of the labeled
    images: enough to catch images removed, added, moved between classes or edited under the
    labeled split, at the cost of one pass over the labels and the labeled images. The pool: its
    size and the bytes of its own images (an unlabeled folder, a dataset's unlabeled split); the
    config (data.unlabeled, data.unlabeled_root, data.resize) names its sources.
    """
    return {"data_n_train": np.int64(len(dataset.train_labels)),
            "data_labels_sha256": np.asarray(_sha256(np.asarray(dataset.train_labels, np.int64))),
            "data_labeled_sha256": np.asarray(_sha256(dataset.train_images[labeled])),
            "data_pool_n": np.int64(len(training.pool)),
            "data_pool_sha256": np.asarray(_sha256(training.pool_images))}


def check_same_data(run: RunDir, split: dict[str, np.ndarray], dataset: Dataset,
                    training: TrainingData | None = None) -> None:
    """Refuse to resume on data other than the run started with; warn for runs without a fingerprint."""
    if "data_n_train" not in split:
        note(f"warning: {run.path} was started before sesemi saved a fingerprint of its data: resuming without "
             "checking that the training data is unchanged")
        return
    fix = "put back the data the run started with, or start a new run (--overwrite or another --run-dir)"
    saved_n, n_train = int(split["data_n_train"]), len(dataset.train_labels)
    if n_train != saved_n:
        raise ConfigError(f"the training data changed since {run.path} started: it has {n_train} images, the run "
                          f"started with {saved_n}; {fix}")
    if _sha256(np.asarray(dataset.train_labels, np.int64)) != str(split["data_labels_sha256"]):
        raise ConfigError(f"the training labels changed since {run.path} started (same {n_train} images, but "
                          f"some moved to another class or were replaced); {fix}")
    if _sha256(dataset.train_images[split["labeled"]]) != str(split["data_labeled_sha256"]):
        raise ConfigError(f"the labeled training images changed since {run.path} started (same count and "
                          f"labels, other pixels); {fix}")
    if training is None or "data_pool_n" not in split:  # runs started before the pool had a fingerprint
        return
    if len(training.pool) != int(split["data_pool_n"]):
        raise ConfigError(f"the unlabeled pool changed since {run.path} started: it has {len(training.pool)} images, "
                          f"the run started with {int(split['data_pool_n'])}; {fix}")
    if _sha256(training.pool_images) != str(split["data_pool_sha256"]):
        raise ConfigError(f"the unlabeled pool's images changed since {run.path} started (same count, other "
                          f"pixels); {fix}")
