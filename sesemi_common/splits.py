"""The labeled subset: exactly n_labels / num_classes images of each class, fixed by a seed.

Both frameworks call this one function and save its result in the run directory, so they
train on the identical subset.
"""

from __future__ import annotations

import numpy as np


class SplitError(ValueError):
    """A labeled split that cannot be drawn; the message says which value to change."""


def labeled_indices(labels: np.ndarray, n_labels: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted int64 indices into `labels` of `n_labels // num_classes` images per class.

    Draw: `rng = numpy.random.default_rng(seed)`, then for each class c = 0, 1, ... in
    order, `rng.choice(indices of class c, per_class, replace=False)`. `n_labels=0`: every
    image, whatever the classes' sizes (a user's class folders that are all the labels there are).
    """
    labels = np.asarray(labels)
    if n_labels == 0:
        _check_label_range(labels, num_classes)
        return np.arange(len(labels), dtype=np.int64)
    if n_labels < 0 or n_labels % num_classes:
        raise SplitError(f"data.n_labels={n_labels} is not a positive multiple of the {num_classes} classes: "
                         f"use e.g. data.n_labels={num_classes * max(1, round(n_labels / num_classes))}")
    _check_label_range(labels, num_classes)
    per_class = n_labels // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise SplitError(f"class {label} has {len(members)} training images but data.n_labels={n_labels} "
                             f"needs {per_class} per class: lower data.n_labels to at most "
                             f"{num_classes * _smallest_class(labels, num_classes)}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _check_label_range(labels: np.ndarray, num_classes: int) -> None:
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if outside.size:
        raise SplitError(f"label {outside[0]} is outside 0..{num_classes - 1}: the labels do not match "
                         f"the {num_classes} classes")


def _smallest_class(labels: np.ndarray, num_classes: int) -> int:
    return int(np.bincount(labels, minlength=num_classes).min())
