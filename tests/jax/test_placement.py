"""data.placement=host in JAX: the same batches as the on-device walk, the same run, exact resume."""

import jax
import numpy as np
import pytest

from sesemi_common import mmap_cache
from sesemi_common import placement as common_placement
from sesemi_common.config import Config, ConfigError, apply_overrides
from sesemi_jax import loop, methods, placement
from sesemi_jax.train import device_data, sample_spec
from tests.kill_resume import TINY, comparable_metrics, run_killed_then_resumed, run_uninterrupted

N_TRAIN, N_POOL_OWN, SIDE = 48, 24, 16


def _config(*overrides):
    return apply_overrides(Config(), [*TINY, "train.batch_unlabeled=4", *overrides])


@pytest.mark.parametrize("method_name", ["sesemi", pytest.param("fixmatch", marks=pytest.mark.slow)])
def test_host_batches_equal_the_device_walk_for_20_steps(tmp_path, method_name):
    """Bit-identical uint8 images, labels and view parameters at every step: the pool here has
    images of its own (indices past the training images), as with data.unlabeled=train+folder."""
    config = _config(f"method.name={method_name}")
    method = methods.load(config)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TRAIN + N_POOL_OWN, SIDE, SIDE, 3), dtype=np.uint8)
    labels = np.concatenate([rng.integers(0, 10, N_TRAIN), np.full(N_POOL_OWN, -1)])
    labeled = np.sort(rng.choice(N_TRAIN, 20, replace=False))
    pool = np.concatenate([np.arange(N_TRAIN), np.arange(N_TRAIN, N_TRAIN + N_POOL_OWN)])[::2]
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    data = device_data(images, labels, labeled, mean, std, pool=pool)
    state_rng = jax.random.PRNGKey(config.train.seed)
    draw = jax.jit(lambda key, step, data: sample_spec(key, step, data, config, method))
    cache = mmap_cache.MappedImages(mmap_cache.save_images(tmp_path / "images.npy", images))
    feed = placement.HostBatches(cache, labels, labeled, pool, state_rng, config, method, data, None)
    for step in range(20):
        on_device = jax.tree_util.tree_map(np.asarray, draw(jax.random.split(state_rng)[1], np.int32(step), data))
        host = feed.spec(step)
        for field in ("labeled", "unlabeled", "sup_offsets", "sup_flips"):
            np.testing.assert_array_equal(getattr(host, field), getattr(on_device, field))
        assert host.views.keys() == on_device.views.keys()
        for name in on_device.views:
            np.testing.assert_array_equal(host.views[name], on_device.views[name])
        gathered, gathered_labels, local = feed.host_batch(step)
        n_labeled = len(on_device.labeled)
        np.testing.assert_array_equal(gathered[local.labeled], np.asarray(data.images)[on_device.labeled])
        np.testing.assert_array_equal(gathered[local.unlabeled], np.asarray(data.images)[on_device.unlabeled])
        np.testing.assert_array_equal(gathered_labels[:n_labeled], labels[on_device.labeled])
        assert set(on_device.unlabeled) <= set(pool)
        # The pool positions a per-image method state is indexed by survive the renumbering.
        np.testing.assert_array_equal(pool[on_device.unlabeled_positions], on_device.unlabeled)
        np.testing.assert_array_equal(local.unlabeled_positions, on_device.unlabeled_positions)


@pytest.mark.slow
def test_host_and_device_placement_train_the_same_run(tmp_path, monkeypatch):
    """The losses of every logged step within the one-step rung's rtol 1e-5 (docs/DESIGN.md section 5);
    the gathered images are bit-identical, so the only difference allowed is XLA's."""
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))  # the memory-mapped copy goes there
    runs = {}
    for where in ("device", "host"):
        summary = loop.fit(_config("train.steps=8", f"data.placement={where}"), tmp_path / where,
                           show_progress=False)
        runs[where] = [m for m in comparable_metrics(tmp_path / where) if "loss" in m]
        assert summary["final_loss"] is not None
    assert [m["step"] for m in runs["host"]] == [m["step"] for m in runs["device"]] == [4, 8]
    for host, device in zip(runs["host"], runs["device"]):
        for key, value in device.items():
            assert host[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.mark.slow
def test_sigkill_then_resume_in_host_placement_is_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))  # the memory-mapped copy goes there
    overrides = ("data.placement=host",)
    run_uninterrupted("sesemi_jax.cli", tmp_path / "straight", overrides=overrides)
    run_killed_then_resumed("sesemi_jax.cli", tmp_path / "killed", kill_after_step=12, overrides=overrides)
    assert comparable_metrics(tmp_path / "killed") == comparable_metrics(tmp_path / "straight")


def test_prefetch_raises_the_thread_error_at_its_step():
    def make(step):
        if step == 3:
            raise mmap_cache.CacheError("cached images x.npy were modified")
        return step * 10

    seen = []
    with pytest.raises(mmap_cache.CacheError, match="modified"):
        for step, item in placement.prefetched(make, range(6), depth=2):
            seen.append((step, item))
    assert seen == [(0, 0), (1, 10), (2, 20)]


def test_device_placement_refuses_a_set_larger_than_the_device():
    with pytest.raises(ConfigError, match=r"take 3\.00 GiB, more than the 2\.00 GiB of GPU memory: set "
                                          r"data.placement=host"):
        common_placement.choose("device", 3 * 2**30, 2 * 2**30, "GPU memory")


def test_auto_says_what_it_chose(capsys):
    assert common_placement.choose("auto", 2**30, 4 * 2**30, "GPU memory") == "device"
    assert common_placement.choose("auto", 3 * 2**30, 4 * 2**30, "GPU memory") == "host"
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("data.placement=auto chose device: the training images take 1.00 GiB and fit in 50% of the "
                      "4.00 GiB of GPU memory (2.00 GiB)")
    assert err[1].startswith("data.placement=auto chose host: the training images take 3.00 GiB and exceed 50%")


def test_placement_is_validated():
    from sesemi_common.config import validate
    with pytest.raises(ConfigError, match="'data.placement' must be one of device, host, auto, got 'hots'"):
        validate(_config("data.placement=hots"))


def test_device_blocks_give_each_device_its_share_of_both_batches():
    """4 devices, 8 labeled and 6 unlabeled indices: device d's block holds labeled[2d:2d+2], then
    unlabeled[2d:2d+2] (an uneven share padded with -1), and the renumbered spec reads the batch
    back from the blocks laid end to end."""
    from sesemi_common.sampling import BatchSpec
    labeled, unlabeled = np.arange(100, 108), np.arange(200, 206)
    spec = BatchSpec(labeled, unlabeled, np.zeros((8, 2), np.int32), np.zeros(8, bool))
    blocks, local = placement.device_blocks(spec, 4)
    assert [b.tolist() for b in blocks] == [[100, 101, 200, 201], [102, 103, 202, 203], [104, 105, 204, 205],
                                            [106, 107, -1, -1]]
    laid = np.concatenate(blocks)
    np.testing.assert_array_equal(laid[local.labeled], labeled)
    np.testing.assert_array_equal(laid[local.unlabeled], unlabeled)
    blocks, local = placement.device_blocks(spec, 1)  # one device: the batch as it is
    np.testing.assert_array_equal(blocks[0], np.concatenate([labeled, unlabeled]))


def test_prefetch_records_each_step_input_wait():
    waits = []
    assert [s for s, _ in placement.prefetched(lambda step: step, range(5), waits=waits)] == list(range(5))
    assert len(waits) == 5 and all(w >= 0 for w in waits)


@pytest.mark.slow
def test_imagefolder_host_placement_gathers_from_the_decoded_cache(tmp_path, monkeypatch):
    """A tree decoded by a device-placement run; host placement maps that very cache file (no copy
    of it) and trains the same run."""
    from PIL import Image
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for label in ("a", "b", "c"):
            (tmp_path / "tree" / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "tree" / split / label / f"{i}.png")
    runs = {}
    for where in ("device", "host"):
        loop.fit(_config("data.dataset=imagefolder", f"data.root={tmp_path / 'tree'}", "data.n_labels=9",
                         "train.steps=4", "train.log_every=2", "train.eval_every=4", "train.checkpoint_every=4",
                         f"data.placement={where}"), tmp_path / where, show_progress=False)
        runs[where] = [m for m in comparable_metrics(tmp_path / where) if "loss" in m]
    assert not (tmp_path / "cache" / "placement").exists()  # gathered from the tree's own cache
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npy.json"))) == 1
    assert [m["step"] for m in runs["host"]] == [m["step"] for m in runs["device"]] == [2, 4]
    for host, device in zip(runs["host"], runs["device"]):
        for key, value in device.items():
            assert host[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
