"""The real CIFAR-10, as a JPEG ImageFolder tree in ../shared/data/cifar10-jpeg beside the repository."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sesemi_common.config import DataConfig
from sesemi_common import datasets
from sesemi_common.datasets import load_dataset
from sesemi_common.stats import channel_stats

ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg"
OFFICIAL_ORDER = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

pytestmark = [
    pytest.mark.realdata, pytest.mark.slow,
    pytest.mark.skipif(not ROOT.is_dir(), reason=f"real CIFAR-10 JPEG tree not found at {ROOT}"),
]


def _no_decoding(*args, **kwargs):
    raise AssertionError("the second load decoded the JPEG tree again instead of reading the cache")


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    """(first load, decoded into a fresh cache; second load, which must not decode anything).

    Whether the second load came from the cache is checked by taking the decoder away, not by
    timing it: a time limit fails on a loaded machine (22.5 s against 10 s was seen)."""
    config = DataConfig(dataset="imagefolder", root=str(ROOT), image_size=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SESEMI_CACHE_DIR", str(tmp_path_factory.mktemp("cifar10-cache")))
        first = load_dataset(config)
        patch.setattr(datasets, "decode_images", _no_decoding)
        second = load_dataset(config)
        return first, second


def test_all_60000_images_decode_in_the_official_class_order(loads):
    dataset = loads[0]
    assert dataset.class_names == OFFICIAL_ORDER
    assert dataset.train_images.shape == (50000, 32, 32, 3) and dataset.test_images.shape == (10000, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    assert np.bincount(dataset.train_labels).tolist() == [5000] * 10
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    # sorted file order within each class: train/cat/0007.jpg is train image 3 * 5000 + 7
    with Image.open(ROOT / "train" / "cat" / "0007.jpg") as image:
        np.testing.assert_array_equal(dataset.train_images[15007], np.asarray(image.convert("RGB")))
    with Image.open(ROOT / "test" / "truck" / "0999.jpg") as image:
        np.testing.assert_array_equal(dataset.test_images[9999], np.asarray(image.convert("RGB")))


def test_channel_statistics_are_those_of_cifar10(loads):
    # Published CIFAR-10 training statistics. This JPEG copy measures mean 0.4913 0.4821 0.4465
    # and std 0.2452 0.2428 0.2606: JPEG's smoothing lowers the std by up to 0.0018.
    mean, std = channel_stats(loads[0].train_images)
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.001)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=0.003)
    assert np.all(std < [0.2470, 0.2435, 0.2616])


def test_second_load_comes_from_the_cache_and_is_identical(loads):
    first, second = loads
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(second, field), getattr(first, field)), field
    assert second.class_names == first.class_names
