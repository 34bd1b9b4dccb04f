"""Rung: both frameworks resize and sample the unlabeled pool identically (docs/DESIGN.md section 9).

A labeled tree and an unlabeled folder of mixed sizes are decoded once by sesemi_common (center
crop) into one `TrainingData`; the numpy `HostStream`, torch's `SpecSampler` and the JAX on-device
walk each draw the pool's indices, never a training image that is not in it, as fresh
permutations of the pool across epoch boundaries; for the shared stream's specs the torch loader
and the JAX device data hand the step the very same uint8 pool images. With the default pool
(data.unlabeled=train) the pool-aware samplers draw exactly the indices they drew before the pool
existed.
"""

from functools import partial

import jax
import numpy as np
import pytest
from PIL import Image

from sesemi_common.config import Config, apply_overrides
from sesemi_common.datasets import load_dataset
from sesemi_common.pool import NO_LABEL, training_data
from sesemi_common.sampling import HostStream
from sesemi_common.stats import channel_stats
from sesemi_jax import methods as jax_methods
from sesemi_jax import train as jax_train
from sesemi_torch.data import SpecBatches, SpecSampler

from .long_horizon import epoch_walk_errors

SIZE, STEPS = 12, 12
# 6 labeled training images and 7 unlabeled ones: batches of 4 labeled and 3 unlabeled cross
# epoch boundaries mid-batch; 12 steps walk 3 epochs of the train+folder pool (13 images).
OVERRIDES = ["data.dataset=imagefolder", f"data.image_size={SIZE}", "data.n_labels=0", "train.batch_labeled=4",
             "train.batch_unlabeled=3", f"train.steps={STEPS}"]


def _photo(path, width, height, seed, mode="RGB"):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    (image.convert("L") if mode == "L" else image).save(path)


@pytest.fixture(scope="module")
def pool_problem(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    sizes, seed = [(20, 14), (13, 30), (12, 12)], 0
    for split, count in (("train", 3), ("test", 1)):
        for label in ("cat", "dog"):
            (root / "photos" / split / label).mkdir(parents=True)
            for k in range(count):
                w, h = sizes[k % 3]
                seed += 1
                _photo(root / "photos" / split / label / f"{k}.png", w, h, seed)
    (root / "unlabeled" / "deep" / "er").mkdir(parents=True)
    for k, (w, h) in enumerate([(40, 25), (15, 15), (12, 50), (33, 33), (26, 13), (18, 24), (60, 12)]):
        folder = root / "unlabeled" / ("deep/er" if k % 2 else "")
        _photo(folder / f"img{k}.{'jpg' if k % 3 == 0 else 'png'}", w, h, seed=100 + k, mode="L" if k == 4 else "RGB")
    config = apply_overrides(Config(), [*OVERRIDES, f"data.root={root / 'photos'}", "data.unlabeled=train+folder",
                                        f"data.unlabeled_root={root / 'unlabeled'}"])
    dataset = load_dataset(config.data)
    return config, dataset, training_data(dataset, config.data)


def _host(config, training, labeled):
    stream = HostStream.for_config(labeled, training.pool, config)
    return lambda step: stream(step)


def _torch(config, training, labeled):
    return SpecSampler(labeled, training.pool, config).spec


def _jax(config, training, labeled):
    mean, std = channel_stats(training.images)
    data = jax_train.device_data(training.images, training.labels, labeled, mean, std, pool=training.pool)
    sample = jax.jit(partial(jax_train.sample_spec, config=config, method=jax_methods.load(config)))
    key = jax.random.PRNGKey(0)
    return lambda step: jax.tree_util.tree_map(np.asarray, sample(key, np.int32(step), data))


SAMPLERS = {"host": _host, "torch": _torch, "jax": _jax}


def test_the_pool_is_the_training_images_then_the_folder_center_cropped(pool_problem):
    config, dataset, training = pool_problem
    assert training.images.shape == (13, SIZE, SIZE, 3) and training.n_train == 6
    np.testing.assert_array_equal(training.pool, np.arange(13))
    assert training.labels[6:].tolist() == [NO_LABEL] * 7
    assert dataset.test_images.shape == (2, SIZE, SIZE, 3)  # the test set is not in the pool


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_walks_permutations_of_the_pool(pool_problem, name):
    config, _, training = pool_problem
    labeled = np.arange(training.n_train)
    sampler = SAMPLERS[name](config, training, labeled)
    specs = [sampler(step) for step in range(STEPS)]
    assert epoch_walk_errors([s.unlabeled for s in specs], training.pool) == []
    assert epoch_walk_errors([s.labeled for s in specs], labeled) == []


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_pool_of_the_folder_alone_never_draws_a_training_image(pool_problem, name):
    config, _, training = pool_problem
    folder_only = np.arange(training.n_train, len(training.images))
    sampler = SAMPLERS[name](config, type(training)(training.images, training.labels, folder_only, 6),
                             np.arange(training.n_train))
    drawn = np.concatenate([sampler(step).unlabeled for step in range(STEPS)])
    assert set(drawn.tolist()) == set(folder_only.tolist())
    assert epoch_walk_errors([drawn[i:i + 3] for i in range(0, len(drawn), 3)], folder_only) == []


def test_both_frameworks_get_the_same_pool_images_for_the_shared_stream(pool_problem):
    config, _, training = pool_problem
    stream = HostStream.for_config(np.arange(6), training.pool, config, seed=3)
    mean, std = channel_stats(training.images)
    data = jax_train.device_data(training.images, training.labels, np.arange(6), mean, std, pool=training.pool)
    batches = SpecBatches(training.images, training.labels)
    for step in range(STEPS):
        spec = stream(step)
        torch_images = batches[spec]["unlabeled_images"].permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(torch_images, np.asarray(data.images[spec.unlabeled]))
        np.testing.assert_array_equal(torch_images, training.images[spec.unlabeled])


def test_the_default_pool_draws_the_indices_of_before():
    """data.unlabeled=train: the pool is arange(n) and every sampler's indices are the ones drawn
    from a bare count, as before the pool existed (JAX: `pool=None` is the walk of old)."""
    config = apply_overrides(Config(), ["train.batch_labeled=6", "train.batch_unlabeled=3"])
    n, labeled = 22, np.arange(0, 22, 2)
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    host_old, host_new = HostStream.for_config(labeled, n, config), HostStream.for_config(labeled, np.arange(n), config)
    torch_old, torch_new = SpecSampler(labeled, n, config), SpecSampler(labeled, np.arange(n), config)
    sample = jax.jit(partial(jax_train.sample_spec, config=config, method=jax_methods.load(config)))
    mean, std = channel_stats(images)
    jax_old = jax_train.device_data(images, labels, labeled, mean, std)
    jax_new = jax_train.device_data(images, labels, labeled, mean, std, pool=np.arange(n))
    key = jax.random.PRNGKey(0)
    for step in range(10):
        for old, new in ((host_old(step), host_new(step)), (torch_old.spec(step), torch_new.spec(step)),
                         (sample(key, np.int32(step), jax_old), sample(key, np.int32(step), jax_new))):
            np.testing.assert_array_equal(np.asarray(old.unlabeled), np.asarray(new.unlabeled))
            np.testing.assert_array_equal(np.asarray(old.labeled), np.asarray(new.labeled))
            np.testing.assert_array_equal(np.asarray(old.views["offsets"]), np.asarray(new.views["offsets"]))
