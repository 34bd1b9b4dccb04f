"""PyTorch reading the memory-mapped cache: the same batches as from RAM, in workers and per rank."""

import numpy as np
import pytest
import torch

from sesemi_common import mmap_cache
from sesemi_common.config import Config, apply_overrides
from sesemi_common.distributed import Process
from sesemi_torch import loop
from sesemi_torch.data import SpecBatches, SpecSampler, batch_loader
from sesemi_torch.mmap_data import MappedSpecBatches, mapped_batch_loader
from tests.kill_resume import TINY, comparable_metrics


def _setup(tmp_path, n=60):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    config = apply_overrides(Config(), [*TINY, "train.steps=6", "train.batch_unlabeled=4"])
    specs = SpecSampler(np.arange(0, 40, 2), np.arange(n), config)
    path = mmap_cache.save_images(tmp_path / "images.npy", images)
    return images, labels, specs, path


def _assert_same_batch(mapped: dict, in_ram: dict) -> None:
    assert mapped.keys() == in_ram.keys()
    for key in mapped:
        if key == "views":
            for name in in_ram["views"]:
                torch.testing.assert_close(mapped["views"][name], in_ram["views"][name], rtol=0, atol=0)
        else:
            assert mapped[key].dtype == in_ram[key].dtype and mapped[key].shape == in_ram[key].shape, key
            assert torch.equal(mapped[key], in_ram[key]), key


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # spawning 2 workers: seconds
def test_mapped_loader_gives_the_in_ram_batches(tmp_path, workers):
    images, labels, specs, path = _setup(tmp_path)
    in_ram = list(batch_loader(images, labels, specs))
    mapped = list(mapped_batch_loader(path, labels, specs, workers=workers))
    assert len(mapped) == len(in_ram) == 6
    for a, b in zip(mapped, in_ram):
        _assert_same_batch(a, b)


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_gathers_its_slice(tmp_path, rank):
    images, labels, specs, path = _setup(tmp_path)
    process = Process(rank, 2)
    mapped, in_ram = MappedSpecBatches(path, labels, process), SpecBatches(images, labels, process)
    for step in range(3):
        batch = mapped[specs.spec(step)]
        _assert_same_batch(batch, in_ram[specs.spec(step)])
        assert len(batch["sup_images"]) == 4  # half of train.batch_labeled=8


def test_the_map_is_not_pickled_into_workers(tmp_path):
    import pickle
    _, labels, specs, path = _setup(tmp_path)
    batches = MappedSpecBatches(path, labels)
    batches[specs.spec(0)]  # opens the map here
    assert batches._cache is not None
    assert pickle.loads(pickle.dumps(batches))._cache is None


def test_a_bad_cache_stops_the_loader_before_the_first_step(tmp_path):
    _, labels, specs, path = _setup(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(mmap_cache.CacheError, match="truncated"):
        mapped_batch_loader(path, labels, specs)


@pytest.mark.slow
def test_host_placement_trains_the_same_run(tmp_path, monkeypatch):
    """Bit-identical in PyTorch: the same uint8 rows reach the same step."""
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))  # the memory-mapped copy goes there
    for where in ("device", "host"):
        config = apply_overrides(Config(), [*TINY, "train.steps=8", f"data.placement={where}"])
        loop.fit(config, tmp_path / where, show_progress=False)
    assert comparable_metrics(tmp_path / "host") == comparable_metrics(tmp_path / "device")


@pytest.mark.slow
def test_sigkill_then_resume_in_host_placement_is_exact(tmp_path, monkeypatch):
    """... and DataLoader workers change nothing: the killed run gathers in 2 worker processes
    (data.loader_workers=2), the uninterrupted one in the training process."""
    monkeypatch.setenv("SESEMI_CACHE_DIR", str(tmp_path / "cache"))  # the memory-mapped copy goes there
    from tests.kill_resume import run_killed_then_resumed, run_uninterrupted
    run_uninterrupted("sesemi_torch.cli", tmp_path / "straight", overrides=("data.placement=host",))
    run_killed_then_resumed("sesemi_torch.cli", tmp_path / "killed", kill_after_step=12,
                            overrides=("data.placement=host", "data.loader_workers=2"))
    assert comparable_metrics(tmp_path / "killed") == comparable_metrics(tmp_path / "straight")
