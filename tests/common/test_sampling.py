import numpy as np
import pytest

from sesemi_common.config import AugmentConfig, Config, ConfigError, apply_overrides
from sesemi_common.sampling import HostStream, check_batch_sizes, crop_geometry, epoch_positions


LABELED = np.arange(0, 40, 2)


def stream(labeled=LABELED, n_train=40, bl=6, bu=4, **augment):
    return HostStream(labeled, n_train, bl, bu, AugmentConfig(**augment), seed=3)


def test_epoch_positions_cross_the_boundary():
    epochs, positions = epoch_positions(step=3, batch=4, pool=10)  # items 12..15
    assert epochs.tolist() == [1, 1, 1, 1]
    assert positions.tolist() == [2, 3, 4, 5]
    epochs, positions = epoch_positions(step=2, batch=4, pool=10)  # items 8..11
    assert epochs.tolist() == [0, 0, 1, 1]
    assert positions.tolist() == [8, 9, 0, 1]


def test_labeled_batches_cover_each_epoch_once():
    s = stream(labeled=np.arange(0, 40, 2), bl=5)  # 20 labeled, 4 steps per epoch
    seen = np.concatenate([s(step).labeled for step in range(4)])
    assert sorted(seen.tolist()) == list(range(0, 40, 2))
    next_epoch = np.concatenate([s(step).labeled for step in range(4, 8)])
    assert sorted(next_epoch.tolist()) == list(range(0, 40, 2))
    assert not np.array_equal(seen, next_epoch)  # a fresh permutation


def test_unlabeled_pool_is_every_training_image():
    s = stream(n_train=40, bu=8)
    seen = np.concatenate([s(step).unlabeled for step in range(5)])
    assert sorted(seen.tolist()) == list(range(40))


def test_spec_is_a_pure_function_of_seed_and_step():
    a, b = stream()(7), stream()(7)
    for field in ("labeled", "unlabeled", "sup_offsets", "sup_flips", "unlabeled_positions"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.views["offsets"], b.views["offsets"])


def test_offsets_within_padding_and_flips_switch_off():
    spec = stream(bl=20, translate=2, hflip=False)(0)
    assert spec.sup_offsets.min() >= 0 and spec.sup_offsets.max() <= 4
    assert spec.sup_offsets.shape == (20, 2) and spec.views["offsets"].shape == (4, 2)
    assert not spec.sup_flips.any()
    flips = np.concatenate([stream(bl=20)(step).sup_flips for step in range(10)])
    assert 0.3 < flips.mean() < 0.7


def test_crop_geometry():
    assert crop_geometry(Config()) == (2, "reflect")
    assert crop_geometry(apply_overrides(Config(), ["augment.crop=pad_crop"])) == (4, "constant")
    assert crop_geometry(apply_overrides(Config(), ["augment.crop=pad_crop", "data.image_size=96"])) == (12, "constant")


def test_batch_larger_than_labeled_set_is_an_error():
    with pytest.raises(ConfigError, match=r"train.batch_labeled \(96\) is larger than the labeled set \(40 images\)"):
        check_batch_sizes(96, 16, 40, 1000)
    with pytest.raises(ConfigError, match=r"train.batch_unlabeled \(16\) is larger than the unlabeled pool \(10 images"):
        check_batch_sizes(8, 16, 10, 10)
