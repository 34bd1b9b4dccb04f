import numpy as np
import pytest

from sesemi_common.splits import SplitError, labeled_indices


def _labels():
    # 3 classes of unequal size, interleaved: class 0 has 12, class 1 has 9, class 2 has 6 images.
    return np.array([0, 1, 2] * 6 + [0, 1] * 3 + [0] * 3)


def test_exactly_n_over_k_per_class_sorted_int64():
    labels = _labels()
    chosen = labeled_indices(labels, 15, 3, seed=0)
    assert chosen.dtype == np.int64
    assert np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [5, 5, 5]


def test_follows_the_documented_draw():
    labels = _labels()
    rng = np.random.default_rng(7)
    expected = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 2, replace=False)
                                       for c in range(3)]))
    np.testing.assert_array_equal(labeled_indices(labels, 6, 3, seed=7), expected)


def test_pinned_values_for_seed_0():
    # Pinned so that a change of the draw (which would change every saved split) is noticed.
    np.testing.assert_array_equal(labeled_indices(np.arange(40) % 4, 8, 4, seed=0),
                                  [2, 9, 13, 24, 27, 28, 31, 38])


def test_deterministic_and_seed_dependent():
    labels = np.arange(1000) % 10
    first = labeled_indices(labels, 100, 10, seed=3)
    np.testing.assert_array_equal(first, labeled_indices(labels, 100, 10, seed=3))
    assert not np.array_equal(first, labeled_indices(labels, 100, 10, seed=4))


def test_whole_class_when_asked_for_all():
    labels = _labels()
    chosen = labeled_indices(labels, 18, 3, seed=0)  # class 2 has exactly 6
    np.testing.assert_array_equal(np.sort(chosen[labels[chosen] == 2]), np.flatnonzero(labels == 2))


def test_not_divisible_is_an_error():
    with pytest.raises(SplitError, match=r"^data.n_labels=10 is not a positive multiple of the 3 classes: "
                                         r"use e.g. data.n_labels=9$"):
        labeled_indices(_labels(), 10, 3, seed=0)


def test_more_than_a_class_holds_is_an_error():
    with pytest.raises(SplitError) as info:
        labeled_indices(_labels(), 21, 3, seed=0)
    assert str(info.value) == ("class 2 has 6 training images but data.n_labels=21 needs 7 per class: "
                               "lower data.n_labels to at most 18")


def test_label_outside_the_classes_is_an_error():
    with pytest.raises(SplitError, match=r"^label 3 is outside 0..2"):
        labeled_indices(np.array([0, 1, 2, 3]), 3, 3, seed=0)
