"""The framework-free half of test-time augmentation: the views' order, the parameter draw, the average."""

import numpy as np
import pytest

from sesemi_common import tta
from sesemi_common.config import Config, apply_overrides

SHAPE = (6, 5, 3)  # H, W, C


def test_the_views_are_the_papers_in_its_order():
    # DenseEvaluator: [x, t, noisy_x, noisy_t, flipx, flipt, noisy_flipx, noisy_flipt]
    assert [(v.shifted, v.noisy, v.flipped) for v in tta.VIEWS] == [
        (False, False, False), (True, False, False), (False, True, False), (True, True, False),
        (False, False, True), (True, False, True), (False, True, True), (True, True, True)]
    assert tta.NOISY == (2, 3, 6, 7)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def test_sample_params_shapes_and_values():
    params = tta.sample_params(_images(40), 0.15)
    assert params.shifts.shape == (40, 2) and params.shifts.dtype == np.int32
    assert set(np.unique(params.shifts)) == {-2, -1, 1, 2}  # never 0: every shifted view moves
    np.testing.assert_array_equal(params.crop_offsets(), params.shifts + 2)
    assert set(np.unique(params.crop_offsets())) == {0, 1, 3, 4}
    assert params.noise.shape == (40 * 8, *SHAPE) and params.noise.dtype == np.float32
    noise = params.noise.reshape(40, 8, -1)
    clean = [i for i in range(8) if i not in tta.NOISY]
    assert not noise[:, clean].any()
    noisy = noise[:, list(tta.NOISY)]
    assert abs(noisy.std() - 0.15) < 0.005 and abs(noisy.mean()) < 0.005  # 36,000 draws
    assert not np.array_equal(noisy[:, 0], noisy[:, 1])  # each noisy view has its own noise


def test_an_image_gets_the_same_views_whatever_the_batch():
    images = _images(10)
    whole = tta.sample_params(images, 0.15)
    parts = [tta.sample_params(images[start:start + 3], 0.15) for start in range(0, 10, 3)]
    np.testing.assert_array_equal(np.concatenate([p.shifts for p in parts]), whole.shifts)
    np.testing.assert_array_equal(np.concatenate([p.noise for p in parts]), whole.noise)
    other_seed = tta.sample_params(images, 0.15, seed=1)
    assert not np.array_equal(other_seed.noise, whole.noise)


def test_an_images_views_depend_on_its_pixels_not_its_place_in_the_list():
    # issue 30.7: `predict a.png b.png` and `predict b.png` gave b.png 0.4117 and 0.4016
    images = _images(5)
    whole = tta.sample_params(images, 0.15)
    alone = tta.sample_params(images[3:4], 0.15)
    np.testing.assert_array_equal(alone.shifts, whole.shifts[3:4])
    np.testing.assert_array_equal(alone.noise, whole.noise[3 * 8:4 * 8])
    twice = tta.sample_params(images[[3, 3]], 0.15)  # the same pixels twice: the same views twice
    np.testing.assert_array_equal(twice.noise[:8], twice.noise[8:])
    edited = images[3:4].copy()
    edited[0, 0, 0, 0] ^= 1  # one pixel one level off: other views
    assert not np.array_equal(tta.sample_params(edited, 0.15).noise, alone.noise)


def test_noise_std_is_the_runs_training_noise_else_the_papers():
    assert tta.noise_std(Config()) == tta.PAPER_NOISE_STD == 0.15
    assert tta.noise_std(apply_overrides(Config(), ["augment.noise_std=0.3"])) == 0.3


@pytest.mark.parametrize("eval_batch_size, images", [(500, 62), (8, 1), (3, 1), (128, 16)])
def test_eval_batch_size_counts_views(eval_batch_size, images):
    assert tta.images_per_batch(eval_batch_size) == images


def test_average_probs_is_the_mean_of_the_views_softmax():
    logits = np.random.default_rng(0).normal(size=(3 * 8, 4)).astype(np.float32) * 5
    probs = np.exp(logits.astype(np.float64))
    probs /= probs.sum(-1, keepdims=True)
    expected = probs.reshape(3, 8, 4).mean(axis=1)
    average = tta.average_probs(logits)
    assert average.dtype == np.float32 and average.shape == (3, 4)
    np.testing.assert_allclose(average, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(average, probs[::8], atol=1e-2)  # not just the first view


def test_class_probabilities():
    logits = np.array([[1.0, 3.0, 0.0]], np.float32)
    softmax = tta.class_probabilities(logits, 1)
    np.testing.assert_allclose(softmax, np.exp(logits) / np.exp(logits).sum(), rtol=1e-6)
    averaged = np.array([[0.2, 0.5, 0.3]], np.float32)
    np.testing.assert_array_equal(tta.class_probabilities(averaged, 8), averaged)
