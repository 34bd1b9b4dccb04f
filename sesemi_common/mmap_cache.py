"""The decoded uint8 images as a memory-mapped `.npy`, written chunk by chunk and read in place
(docs/DESIGN.md section 9, "Placement").

Writing never holds the whole set in RAM: `open_memmap` creates the file at its final size, the
decode workers (or the slices of an array already in memory) fill it chunk by chunk, and the pages
go back to the file as the kernel sees fit. Reading maps the file (`np.load(mmap_mode="r")`): only
the rows a step gathers are read from disk.

A JSON sidecar vouches for the file: its shape, its size and mtime when written, and a hash of
a few sampled rows. `open_images` checks all of them, and `MappedImages.check_unchanged` (one stat
call, run before every gather) checks size and mtime again, so a file truncated, rewritten or
replaced under a run stops it with a one-line error instead of feeding it other images. (A file
truncated between the stat and the read itself is not caught: that read dies with SIGBUS.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mmap
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import datasets
from .datasets import DatasetError

SAMPLED_ROWS = 16  # rows hashed into the fingerprint: evenly spaced, first and last included
CHUNK = 1024  # files per decode task of decode_to_cache
CHUNK_BYTES = 32 << 20  # bytes per row block when an array is saved, hashed or concatenated


class CacheError(DatasetError):
    """A memory-mapped cache that cannot be trusted (missing, truncated, changed)."""


def sidecar(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def sampled_rows_sha256(images: np.ndarray) -> str:
    """sha256 of `SAMPLED_ROWS` evenly spaced rows: reads a few rows, not the file."""
    rows = np.unique(np.linspace(0, len(images) - 1, SAMPLED_ROWS).astype(np.int64)) if len(images) else []
    digest = hashlib.sha256(str(images.shape).encode())
    for row in rows:
        digest.update(np.ascontiguousarray(images[row]).tobytes())
    return digest.hexdigest()


def write_images(path: str | Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> Path:
    """Fill a new uint8 `.npy` of `shape` at `path` from `chunks` (consecutive row blocks), then its
    sidecar; both through a temporary name, so a reader never sees a half-written cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=tuple(shape))
    start = 0
    for chunk in chunks:
        images[start:start + len(chunk)] = chunk
        start += len(chunk)
    if start != shape[0]:
        raise ValueError(f"the chunks held {start} rows, the cache was made for {shape[0]}")
    images.flush()
    del images  # unmap before the rename
    os.replace(partial, path)
    return vouch(path)


def vouch(path: str | Path) -> Path:
    """Write the sidecar of the finished `.npy` at `path`: its shape, size, mtime, sampled rows."""
    path = Path(path)
    images = np.load(path, mmap_mode="r", allow_pickle=False)
    stat = path.stat()
    meta = {"shape": list(images.shape), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "rows_sha256": sampled_rows_sha256(images)}
    sidecar(path).write_text(json.dumps(meta))
    return path


def save_images(path: str | Path, images: np.ndarray) -> Path:
    """An in-memory uint8 array as a memory-mappable cache."""
    return write_images(path, images.shape, row_blocks(images))


def row_blocks(images: np.ndarray) -> Iterable[np.ndarray]:
    """`images` in consecutive blocks of about CHUNK_BYTES (at least one row): a memory-mapped
    array is read a block at a time, whatever its image size."""
    rows = max(1, CHUNK_BYTES // max(1, images[0].nbytes)) if len(images) else 1
    for start in range(0, len(images), rows):
        yield np.asarray(images[start:start + rows])


def hash_rows(digest, images: np.ndarray) -> None:
    """Feed `images`' bytes (C order) into `digest` a row block at a time: the digest is that of
    the whole array's bytes, and RAM holds one block of a memory-mapped array."""
    for block in row_blocks(images):
        digest.update(np.ascontiguousarray(block).tobytes())


class MappedImages:
    """A validated memory-mapped cache: `images` (read-only np.memmap) and the checks a run repeats."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        self.check_unchanged()
        try:
            self.images = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise CacheError(f"cached images {self.path} cannot be read ({err}): delete it and its .json to "
                             "decode the images again") from None
        if list(self.images.shape) != self.meta["shape"] or self.images.dtype != np.uint8:
            raise CacheError(f"cached images {self.path} hold {self.images.dtype} {self.images.shape}, their .json "
                             f"says uint8 {tuple(self.meta['shape'])}: delete both to decode the images again")
        if sampled_rows_sha256(self.images) != self.meta["rows_sha256"]:
            raise CacheError(f"cached images {self.path} changed since they were written (their sampled rows "
                             "differ): delete it and its .json to decode the images again")

    def check_unchanged(self) -> None:
        """One stat: the file still has the size and mtime it was written with."""
        try:
            stat = self.path.stat()
        except OSError:
            raise CacheError(f"cached images {self.path} disappeared during the run: restore them, or start "
                             "the run again to decode the images anew") from None
        if stat.st_size != self.meta["size"]:
            raise CacheError(f"cached images {self.path} are {stat.st_size} bytes, {self.meta['size']} were written "
                             "(truncated or rewritten): delete it and its .json to decode the images again")
        if stat.st_mtime_ns != self.meta["mtime_ns"]:
            raise CacheError(f"cached images {self.path} were modified after they were written: delete it and its "
                             ".json to decode the images again")

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """The rows `indices` (any order, repeats allowed), read from the map into RAM."""
        self.check_unchanged()
        return np.asarray(self.images[np.asarray(indices, dtype=np.int64)])


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(sidecar(path).read_text())
        if not {"shape", "size", "mtime_ns", "rows_sha256"} <= meta.keys():
            raise ValueError("keys missing")
        return meta
    except (OSError, ValueError) as err:
        raise CacheError(f"cached images {path} have no usable {sidecar(path).name} ({err}): delete the cache to "
                         "decode the images again") from None


def cached_copy(images: np.ndarray, folder: str | Path) -> MappedImages:
    """`images` (in RAM) as a memory-mapped cache in `folder`, named by a hash of their bytes, so
    runs on the same images share one file; written once."""
    digest = hashlib.sha256(str(images.shape).encode())
    hash_rows(digest, images)
    path = Path(folder) / f"images-{digest.hexdigest()[:16]}.npy"
    _write_once(path, lambda: save_images(path, images))
    return MappedImages(path)


def _write_once(path: Path, write) -> None:
    """`write()` unless `path` and its sidecar exist. Several processes of one run (torchrun,
    jax.distributed) ask at once: one writes, the others wait for it and map its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path.exists() and sidecar(path).exists()):
            write()


def concatenated(parts: Sequence[np.ndarray], folder: str | Path) -> np.ndarray:
    """The rows of `parts`, one part after the other, as one read-only memory-mapped array in
    `folder` (the training images and the pool's own, for `data.placement` host): written block by
    block, so RAM never holds the set, and once. The file is named by where its parts come from
    (stem) and what they hold now (version): a memory-mapped part by its file, offset, shape, size
    and mtime (no read of its rows), an in-RAM part by its bytes. A new version replaces the older
    ones of the same stem, so a pool that grows leaves one copy on disk, not one per change."""
    stem, version = _identity(parts)
    path = Path(folder) / f"concatenated-{stem}-{version}.npy"
    shape = (sum(len(part) for part in parts), *parts[0].shape[1:])
    _write_once(path, lambda: write_images(path, shape, (block for part in parts for block in row_blocks(part))))
    for stale in path.parent.glob(f"concatenated-{stem}-*"):
        if not stale.name.startswith(path.stem):
            stale.unlink(missing_ok=True)
    return MappedImages(path).images


def _identity(parts: Sequence[np.ndarray]) -> tuple[str, str]:
    where, what = hashlib.sha256(), hashlib.sha256()
    for part in parts:
        source = _mapped_file(part)
        if source is None:  # in RAM (an archive's split): its bytes are its identity
            where.update(f"ram {part.shape}".encode())
            hash_rows(what, part)
        else:
            path, offset = source
            stat = os.stat(path)
            where.update(json.dumps([os.path.realpath(path), offset, list(part.shape)]).encode())
            what.update(json.dumps([stat.st_size, stat.st_mtime_ns]).encode())
    return where.hexdigest()[:16], what.hexdigest()[:12]


def _mapped_file(part: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset of the first row) of a C-contiguous view of a memory-mapped file; None otherwise."""
    if not isinstance(part, np.memmap) or part.filename is None or not part.flags.c_contiguous:
        return None
    whole = part
    while isinstance(whole.base, np.memmap):
        whole = whole.base
    return part.filename, whole.offset + part.ctypes.data - whole.ctypes.data


def decode_to_cache(files: list[str | Path], path: str | Path, workers: int | None = None,
                    fit_to: tuple[int, str] | None = None) -> MappedImages:
    """Decode `files` straight into a memory-mapped cache at `path`: the workers' chunks
    (`datasets.decode_images`' chunks, in order) are written into the map as they arrive, so RAM
    holds a few chunks, never the set. Unusable files stop it after every chunk is done, as there."""
    if not files:
        raise DatasetError("no image files to decode")
    side = (fit_to[0], fit_to[0]) if fit_to else datasets._open_rgb(files[0]).shape[:2]
    reference = None if fit_to else (files[0], side)
    decode_chunk = partial(datasets._decode_files, reference=reference, fit_to=fit_to)
    chunks = [list(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)]
    workers = workers or (min(datasets._usable_cpus(), 8) if len(files) >= 4096 else 1)
    failures: list[str] = []

    def images_of(decoded):
        for images, chunk_failures in decoded:
            failures.extend(chunk_failures)
            yield images

    shape = (len(files), side[0], side[1], 3)
    if workers == 1:
        write_images(path, shape, images_of(map(decode_chunk, chunks)))
    else:  # spawn, as decode_images: the caller may run JAX's or torch's threads
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as executor:
            write_images(path, shape, images_of(executor.map(decode_chunk, chunks)))
    if failures:
        Path(path).unlink(missing_ok=True)
        sidecar(path).unlink(missing_ok=True)
        raise DatasetError(failures[0] + datasets._more_failures(failures))
    return MappedImages(path)


def mapped_source(images: np.ndarray) -> MappedImages | None:
    """The validated cache `images` are read from, when they are its rows from the first on (a
    loader's memory-mapped cache, `load_imagefolder(mapped=True)`); None for images in RAM."""
    if not isinstance(images, np.memmap) or images.filename is None:
        return None
    whole = images if isinstance(images.base, mmap.mmap) else images.base
    if not isinstance(whole, np.memmap) or images.ctypes.data != whole.ctypes.data:
        return None
    if not sidecar(images.filename).exists():  # written whole by the in-RAM path, which the loader just vouched for
        vouch(images.filename)
    return MappedImages(images.filename)


def host_images(images: np.ndarray, folder: str | Path) -> MappedImages:
    """`images` as a validated memory-mapped cache: the one they are read from, else a copy in `folder`."""
    return mapped_source(images) or cached_copy(images, folder)
