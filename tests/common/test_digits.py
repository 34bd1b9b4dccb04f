import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from sesemi_common.config import DataConfig
from sesemi_common.datasets import DatasetError, load_dataset


def _bilinear_upscale(small: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centred bilinear interpolation with edge clamping, in float64 (independent of Pillow)."""
    n = small.shape[-1]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    rows = small[..., lo, :] * (1 - frac)[:, None] + small[..., hi, :] * frac[:, None]
    return rows[..., lo] * (1 - frac) + rows[..., hi] * frac


def test_default_dataset_is_digits_split_first_80_percent_per_class():
    dataset = load_dataset(DataConfig())
    digits = sklearn_digits()
    per_class = np.bincount(digits.target)  # [178 182 177 183 181 182 181 179 174 180]
    assert dataset.name == "digits" and dataset.class_names == [str(d) for d in range(10)]
    assert dataset.train_images.shape == (1433, 32, 32, 3) and dataset.test_images.shape == (364, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(dataset.train_labels), (per_class * 4) // 5)
    np.testing.assert_array_equal(np.bincount(dataset.test_labels), per_class - (per_class * 4) // 5)
    # image k of class c in scikit-learn's order is train for k < floor(0.8 n_c), test otherwise
    rank = np.array([np.sum(digits.target[:i] == t) for i, t in enumerate(digits.target)])
    is_train = rank < (per_class * 4 // 5)[digits.target]
    np.testing.assert_array_equal(dataset.train_labels, digits.target[is_train])
    reference = _bilinear_upscale(np.rint(digits.images * (255 / 16)), 32)  # 0..16 -> 0..255, rounded
    np.testing.assert_array_equal(dataset.train_images[..., 0], dataset.train_images[..., 2])
    assert np.abs(dataset.train_images[..., 1] - reference[is_train]).max() <= 1.0
    assert np.abs(dataset.test_images[..., 1] - reference[~is_train]).max() <= 1.0


def test_image_size_and_value_range():
    dataset = load_dataset(DataConfig(image_size=16))
    assert dataset.train_images.shape[1:] == (16, 16, 3)
    assert dataset.train_images.min() == 0 and dataset.train_images.max() == 255  # 0 and 16 map to 0 and 255


def test_unknown_dataset_name():
    with pytest.raises(DatasetError) as info:
        load_dataset(DataConfig(dataset="mnist"))
    assert str(info.value) == ("unknown dataset 'mnist': set data.dataset to one of digits, cifar10, cifar100, "
                               "imagefolder, stl10, svhn")
