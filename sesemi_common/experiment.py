"""What both trainers do before the first step: data, split, statistics, run directory.

Keeping this in one framework-free place is what makes the two frameworks train on the
identical labeled subset with the identical normalization.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config, ConfigError
from .datasets import Dataset, load_dataset
from .runs import RunDir
from .sampling import check_batch_sizes
from .splits import labeled_indices
from .stats import channel_stats


@dataclass
class Experiment:
    config: Config
    run: RunDir
    dataset: Dataset
    labeled: np.ndarray  # sorted int64 indices of the labeled training images
    mean: np.ndarray  # (C,) float32, 0..1 scale
    std: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.dataset.class_names)

    @property
    def steps_per_epoch(self) -> float:
        """Steps per pass over the labeled set; `epoch` in the metrics counts these."""
        return len(self.labeled) / self.config.train.batch_labeled


def prepare(config: Config, run_dir: str | Path, resume: bool = False, dataset: Dataset | None = None) -> Experiment:
    """Load the data and fix the split; on resume, the saved config and split must match."""
    run = RunDir(run_dir)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    mean, std = channel_stats(dataset.train_images)
    if resume:
        saved = run.read_config()
        if saved.to_dict() != config.to_dict():
            changed = [k for k in config.to_dict() if config.to_dict()[k] != saved.to_dict()[k]]
            raise ConfigError(f"--resume with a config that differs from {run.path}/config.json in "
                              f"section(s) {', '.join(changed)}: resume with the saved config")
        labeled = run.read_split()["labeled"]
    else:
        if run.has_run():
            raise ConfigError(f"{run.path} already holds a run: pass --resume to continue it, "
                              "or choose another --run-dir")
        labeled = labeled_indices(dataset.train_labels, config.data.n_labels,
                                  len(dataset.class_names), config.data.split_seed)
        run.write_config(config)
        run.write_split(labeled, mean=mean, std=std)
    check_batch_sizes(config.train.batch_labeled, config.train.batch_unlabeled, len(labeled),
                      len(dataset.train_images))
    return Experiment(config, run, dataset, labeled, mean, std)
