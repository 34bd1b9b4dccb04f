"""The memory-mapped image cache: a round trip, incremental decoding, and refusing a changed file."""

import os

import numpy as np
import pytest
from PIL import Image

from sesemi_common import mmap_cache
from sesemi_common.datasets import DatasetError, decode_images
from sesemi_common.mmap_cache import CacheError, MappedImages


def _images(n=50, side=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_round_trip_is_memory_mapped_and_exact(tmp_path):
    images = _images(2 * mmap_cache.CHUNK + 7, side=4)  # several chunks and a partial one
    cache = MappedImages(mmap_cache.save_images(tmp_path / "x.npy", images))
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
        MappedImages(path)
    assert "\n" not in str(err.value)


def test_file_truncated_under_a_run_stops_the_next_gather(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    cache = MappedImages(path)
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
        MappedImages(path)


def test_modified_file_is_refused(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    cache = MappedImages(path)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(CacheError, match="modified"):
        cache.gather([0])


def test_missing_sidecar_is_refused(tmp_path):
    path = mmap_cache.save_images(tmp_path / "x.npy", _images())
    mmap_cache.sidecar(path).unlink()
    with pytest.raises(CacheError, match="x.npy.json"):
        MappedImages(path)


def test_cached_copy_is_written_once(tmp_path):
    images = _images()
    first = mmap_cache.cached_copy(images, tmp_path)
    mtime = first.path.stat().st_mtime_ns
    second = mmap_cache.cached_copy(images, tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.images, images)


def test_imagefolder_mapped_decodes_into_the_cache_and_reads_it_in_place(tmp_path, private_cache):
    from sesemi_common.datasets import load_imagefolder
    from tests.common.test_imagefolder import LAYOUT, _tree

    _tree(tmp_path / "pets", LAYOUT)
    in_ram = load_imagefolder(tmp_path / "pets", workers=1)  # today's path: decoded in RAM, then cached
    for npy in private_cache.glob("*"):
        npy.unlink()
    decoded = load_imagefolder(tmp_path / "pets", workers=1, mapped=True)  # decoded into the map
    again = load_imagefolder(tmp_path / "pets", workers=1, mapped=True)  # read from it
    for dataset in (decoded, again):
        assert isinstance(dataset.train_images, np.memmap)
        np.testing.assert_array_equal(dataset.train_images, in_ram.train_images)
        np.testing.assert_array_equal(dataset.test_images, in_ram.test_images)
        assert list(dataset.train_labels) == list(in_ram.train_labels) and dataset.class_names == in_ram.class_names
    source = mmap_cache.mapped_source(again.train_images)  # host placement gathers from this very file
    assert source is not None and source.path.parent == private_cache
    np.testing.assert_array_equal(source.images[:len(in_ram.train_images)], in_ram.train_images)
    assert mmap_cache.mapped_source(again.test_images) is None  # not from the first row
    assert mmap_cache.mapped_source(in_ram.train_images) is None


def _mapped(tmp_path, name, images):
    return MappedImages(mmap_cache.save_images(tmp_path / f"{name}.npy", images)).images


def test_concatenated_parts_are_one_mapped_file_written_once_and_replaced_when_a_part_changes(tmp_path):
    whole, in_ram = _images(40, seed=1), _images(7, seed=2)
    mapped = _mapped(tmp_path, "train", whole)
    joined = mmap_cache.concatenated([mapped[:30], in_ram], tmp_path / "placement")
    assert isinstance(joined, np.memmap)
    np.testing.assert_array_equal(joined, np.concatenate([whole[:30], in_ram]))
    source = mmap_cache.mapped_source(joined)  # host placement gathers from this very file
    assert source is not None and source.path.parent == tmp_path / "placement"
    mtime = source.path.stat().st_mtime_ns
    again = mmap_cache.concatenated([mapped[:30], in_ram], tmp_path / "placement")
    assert again.filename == joined.filename and source.path.stat().st_mtime_ns == mtime
    # Other rows of the same file, or other in-RAM bytes, are other sources: another file beside it.
    other = mmap_cache.concatenated([mapped[10:40], in_ram], tmp_path / "placement")
    assert other.filename != joined.filename
    np.testing.assert_array_equal(other, np.concatenate([whole[10:40], in_ram]))
    # The part's file rewritten (new mtime): a new version of the same sources replaces the old file.
    changed = _images(40, seed=3)
    os.unlink(tmp_path / "train.npy")
    mapped = _mapped(tmp_path, "train", changed)
    newer = mmap_cache.concatenated([mapped[:30], in_ram], tmp_path / "placement")
    np.testing.assert_array_equal(newer, np.concatenate([changed[:30], in_ram]))
    assert newer.filename != joined.filename and not os.path.exists(joined.filename)
    assert os.path.exists(other.filename)


def test_concatenated_holds_a_block_of_rows_not_the_set(tmp_path, monkeypatch):
    import tracemalloc

    parts = [_mapped(tmp_path, f"part{k}", _images(1000, side=48, seed=k)) for k in range(2)]  # 6.9 MB each
    monkeypatch.setattr(mmap_cache, "CHUNK_BYTES", 64 << 10)
    tracemalloc.start()
    joined = mmap_cache.concatenated(parts, tmp_path / "placement")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20, peak  # np.concatenate held 13.8 MB
    np.testing.assert_array_equal(joined[995:1005], np.concatenate([parts[0][995:], parts[1][:5]]))


def test_row_blocks_cover_the_rows_in_blocks_of_about_chunk_bytes(monkeypatch):
    images = _images(10, side=8)  # 192 bytes a row
    monkeypatch.setattr(mmap_cache, "CHUNK_BYTES", 500)
    blocks = list(mmap_cache.row_blocks(images))
    assert [len(b) for b in blocks] == [2, 2, 2, 2, 2]
    np.testing.assert_array_equal(np.concatenate(blocks), images)
    monkeypatch.setattr(mmap_cache, "CHUNK_BYTES", 1)  # at least one row
    assert len(list(mmap_cache.row_blocks(images))) == 10 and list(mmap_cache.row_blocks(images[:0])) == []
