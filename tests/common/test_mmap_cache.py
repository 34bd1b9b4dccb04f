"""The memory-mapped image cache: a round trip, incremental decoding, and refusing a changed file."""

import os

import numpy as np
import pytest
from PIL import Image

from sesemi_common import mmap_cache
from sesemi_common.datasets import DatasetError, decode_images
from sesemi_common.mmap_cache import CacheError, ImageFile


def _images(n=50, side=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_round_trip_is_memory_mapped_and_exact(tmp_path):
    images = _images(2 * mmap_cache.CHUNK + 7, side=4)  # several chunks and a partial one
    cache = ImageFile(mmap_cache.save_images(tmp_path / "x.npy", images))
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    np.testing.assert_array_equal(cache.images, images)
    picks = np.array([5, 0, 2054, 5])
    np.testing.assert_array_equal(cache.gather(picks), images[picks])
    assert not (tmp_path / "x.npy.partial").exists()


def test_decode_to_cache_matches_decode_images(tmp_path):
    files = []
    for i, image in enumerate(_images(6, side=5)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    cache = mmap_cache.decode_to_cache(files, tmp_path / "decoded.npy", workers=1)
    np.testing.assert_array_equal(cache.images, decode_images(files, workers=1))


def test_decode_to_cache_names_an_unusable_file(tmp_path):
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(_images(1, side=5)[0]).save(good)
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="b.png"):
        mmap_cache.decode_to_cache([good, bad], tmp_path / "decoded.npy", workers=1)
    assert not (tmp_path / "decoded.npy").exists()


def test_truncated_file_is_a_one_line_error(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 64)
    with pytest.raises(CacheError, match="truncated") as err:
        ImageFile(path)
    assert "\n" not in str(err.value)


def test_file_truncated_under_a_run_stops_the_next_gather(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    cache = ImageFile(path)
    cache.gather([1, 2])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 192)  # the last row: reading it now would be SIGBUS
    with pytest.raises(CacheError, match="truncated"):
        cache.gather([49])


def test_changed_rows_are_refused_even_with_the_old_mtime(tmp_path):
    images = _images()
    path = mmap_cache.save_images(tmp_path / "x.npy", images)
    stat = path.stat()
    changed = np.load(path, mmap_mode="r+")
    changed[0, 0, 0, 0] ^= 1  # row 0 is always sampled
    changed.flush()
    del changed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CacheError, match="sampled rows differ"):
        ImageFile(path)


def test_modified_file_is_refused(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    cache = ImageFile(path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(CacheError, match="modified"):
        cache.gather([0])


def test_missing_sidecar_is_refused(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    mmap_cache.sidecar(path).unlink()
    with pytest.raises(CacheError, match="x.npy.json"):
        ImageFile(path)


def test_cached_copy_is_written_once(tmp_path):
    images = _images()
    first = mmap_cache.cached_copy(images, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = mmap_cache.cached_copy(images, tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.images, images)
