"""`data.placement=host` in JAX: the step's images gathered on the host from a memory-mapped
cache and prefetched to the devices (docs/DESIGN.md section 9; docs/placement.md).

The indices and view parameters of step s are those the on-device walk draws: the host runs the
very same jitted `train.sample_spec` on the CPU device, with the same key (`split(state.rng)[1]`)
and the same step, so both placements see one stream and `--resume` stays exact (the stream is a
function of the step). The host gathers the step's rows from the map (numpy fancy indexing),
and the jitted `train_step_on_spec` receives them as a `DeviceData` holding just this batch
(labeled images first, then unlabeled ones) with the spec's indices renumbered into it.
Augmentation, the method's views and everything else stay in the jitted step.

Across processes (jax.distributed) every process draws the same spec, and each gathers only the
rows of its own devices: the step's rows are laid out in one block per device of the mesh (its
share of the labeled, then of the unlabeled indices: `device_blocks`), and the global arrays are
assembled from each process's blocks with `jax.make_array_from_process_local_data`, split over
the batch axis. That call moves no data between processes (each process places its own part on
its own devices), so the prefetch thread never waits on a peer and a dead peer is noticed, as in
device placement, by the step's collectives in the main thread.

The prefetch is a plain thread with a bounded queue, not grain (on the registry, TensorFlow-free).
Reasoned, unmeasured (the machine was loaded when this was written): grain's loader is built
around per-record transforms in worker processes, re-batched afterwards, with its own samplers;
here a step's work is one vectorized gather of known rows from a memory map and one
`device_put`, and the index stream must stay the project's own. A thread does both without
splitting the batch into records or pickling it between processes: numpy's copy out of the map
and the transfer release the GIL for their bulk, so the thread overlaps the jitted step. If a
benchmark shows the gather not hidden (e.g. page faults on a cold cache over a slow disk), grain's
multi-worker read is the next thing to try.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from functools import partial
from typing import Callable, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sesemi_common import placement
from sesemi_common.config import Config
from sesemi_common.mmap_cache import MappedImages
from sesemi_common.sampling import BatchSpec

from . import distributed
from .methods import Method
from .train import DeviceData, sample_spec

PREFETCH_STEPS = 3  # batches gathered ahead: enough to cover a slow gather, few enough to bound memory


def device_memory() -> tuple[int, str]:
    """(bytes, name) of one device's memory: its allocator's limit, or the host's RAM on CPU."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} memory"
    return placement.host_memory_bytes(), "host RAM (the CPU device's memory)"


def choose(config: Config, set_bytes: int, writer: bool = True) -> str:
    """`device` or `host` for this run (`sesemi_common.placement.choose` on this machine's memory)."""
    memory, name = device_memory()
    chosen = placement.choose(config.data.placement, set_bytes, memory, name, writer)
    if jax.process_count() > 1:  # process 0's answer for all: one program over all processes' devices
        from jax.experimental import multihost_utils
        as_host = multihost_utils.broadcast_one_to_all(np.int32(chosen == "host"))
        chosen = "host" if int(as_host) else "device"
    return chosen


def spec_inputs(labeled: np.ndarray, pool: np.ndarray, n_images: int) -> DeviceData:
    """What `sample_spec` reads of a `DeviceData` (the labeled indices, the pool, the number of
    images), without the images: zero-byte rows stand in for them."""
    return DeviceData(images=np.zeros((n_images, 0, 0, 0), np.uint8), labels=np.zeros(0, np.int32),
                      labeled=np.asarray(labeled, np.int32), norm_table=np.zeros((0, 256), np.float32),
                      pool=None if pool is None else np.asarray(pool, np.int32))


class HostBatches:
    """Step -> (this step's `DeviceData`, its renumbered `BatchSpec`), on the devices."""

    def __init__(self, cache: MappedImages, labels: np.ndarray, labeled: np.ndarray, pool: np.ndarray | None,
                 rng: jax.Array, config: Config, method: Method, static: DeviceData, mesh: Mesh | None = None):
        cpu = jax.local_devices(backend="cpu")[0]  # this process's own: the spec is drawn in every process
        self.cache, self.labels, self.mesh = cache, np.asarray(labels, np.int32), mesh
        self.static = static  # the normalization table and ZCA, already on the devices
        self.inputs = jax.device_put(spec_inputs(labeled, pool, len(labels)), cpu)
        # The key train_step draws its spec from: split(state.rng)[1], state.rng being constant.
        self.key = jax.device_put(jax.random.split(np.asarray(jax.device_get(rng)))[1], cpu)
        self.draw = jax.jit(partial(sample_spec, config=config, method=method))

    def spec(self, step: int) -> BatchSpec:
        """The spec the on-device walk draws at `step`, as numpy."""
        spec = self.draw(self.key, np.int32(step), self.inputs)
        return jax.tree_util.tree_map(np.asarray, spec)

    def host_batch(self, step: int) -> tuple[np.ndarray, np.ndarray, BatchSpec]:
        """(uint8 images, labels, renumbered spec) of `step` on the host: labeled rows, then unlabeled."""
        spec = self.spec(step)
        rows = np.concatenate([spec.labeled, spec.unlabeled]).astype(np.int64)
        n_labeled = len(spec.labeled)
        local = dataclasses.replace(
            spec, labeled=np.arange(n_labeled, dtype=np.int32),
            unlabeled=np.arange(n_labeled, len(rows), dtype=np.int32))
        return self.cache.gather(rows), self.labels[rows], local

    def __call__(self, step: int) -> tuple[DeviceData, BatchSpec]:
        if self.mesh is not None and jax.process_count() > 1:
            return self.process_slice(step)
        images, labels, local = self.host_batch(step)
        on_devices = distributed.replicated((images, labels, local), self.mesh) if self.mesh is not None \
            else jax.device_put((images, labels, local))
        images, labels, local = on_devices
        return self.static.replace(images=images, labels=labels), local

    def process_slice(self, step: int) -> tuple[DeviceData, BatchSpec]:
        """Several processes: this process gathers the rows of its own devices only (`device_blocks`)
        and the global images and labels are assembled from each process's part, split over the
        mesh's batch axis; the small spec, the same in every process, is replicated."""
        spec = self.spec(step)
        blocks, local = device_blocks(spec, self.mesh.size)
        rows = np.concatenate([blocks[d] for d in self.own_blocks])
        present = rows >= 0
        images = np.zeros((len(rows), *self.cache.images.shape[1:]), np.uint8)  # padding rows stay 0
        images[present] = self.cache.gather(rows[present])
        labels = np.where(present, self.labels[np.maximum(rows, 0)], -1).astype(np.int32)
        split = NamedSharding(self.mesh, PartitionSpec("batch"))
        n_rows = self.mesh.size * len(blocks[0])
        images = jax.make_array_from_process_local_data(split, images, (n_rows, *images.shape[1:]))
        labels = jax.make_array_from_process_local_data(split, labels, (n_rows,))
        return self.static.replace(images=images, labels=labels), distributed.replicated(local, self.mesh)

    @property
    def own_blocks(self) -> list[int]:
        """Positions on the mesh's batch axis of this process's devices: its rows of a global
        array split over that axis, in order."""
        return [d for d, device in enumerate(self.mesh.devices.flat) if device.process_index == jax.process_index()]


def device_blocks(spec: BatchSpec, n_devices: int) -> tuple[list[np.ndarray], BatchSpec]:
    """The step's rows laid out as `n_devices` equal blocks, one per position on the batch axis:
    block d holds the d-th contiguous share of the labeled indices, then the d-th share of the
    unlabeled ones (the rows the step's batch split gives device d), padded with -1 to the same
    length; and the spec renumbered into that layout. Every process computes the same layout
    and gathers only its own devices' blocks."""
    labeled, unlabeled = np.asarray(spec.labeled), np.asarray(spec.unlabeled)
    per_labeled, per_unlabeled = -(-len(labeled) // n_devices), -(-len(unlabeled) // n_devices)
    width = per_labeled + per_unlabeled
    blocks = []
    for d in range(n_devices):
        block = np.full(width, -1, np.int64)
        share = labeled[d * per_labeled:(d + 1) * per_labeled]
        block[:len(share)] = share
        share = unlabeled[d * per_unlabeled:(d + 1) * per_unlabeled]
        block[per_labeled:per_labeled + len(share)] = share
        blocks.append(block)
    i, j = np.arange(len(labeled)), np.arange(len(unlabeled))
    renumbered = dataclasses.replace(
        spec, labeled=((i // max(per_labeled, 1)) * width + i % max(per_labeled, 1)).astype(np.int32),
        unlabeled=((j // max(per_unlabeled, 1)) * width + per_labeled + j % max(per_unlabeled, 1)).astype(np.int32))
    return blocks, renumbered


def prefetched(make: Callable[[int], object], steps: Iterable[int], depth: int = PREFETCH_STEPS,
               waits: list[float] | None = None) -> Iterator[tuple[int, object]]:
    """(step, make(step)) for each step, made by a background thread up to `depth` steps ahead.
    An error in the thread is raised here, at the step it belongs to; closing the iterator (or an
    error in the consumer) stops the thread. `waits` gets the seconds each step waited for its
    batch (the input wait: near 0 when the prefetch hides the gather)."""
    steps = steps if isinstance(steps, range) else list(steps)  # a benchmark's range(10**6) stays lazy
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for step in steps:
                if not put((step, make(step), None)):
                    return
        except BaseException as err:  # noqa: BLE001 (handed to the consumer, raised there)
            put((None, None, err))

    thread = threading.Thread(target=work, name="sesemi-host-prefetch", daemon=True)
    thread.start()
    try:
        for _ in steps:
            asked = time.perf_counter()
            step, item, err = ready.get()
            if waits is not None:
                waits.append(time.perf_counter() - asked)
            if err is not None:
                raise err
            yield step, item
    finally:
        stop.set()
        thread.join(timeout=5)


def host_batches(exp, config: Config, method: Method, rng: jax.Array, mesh: Mesh | None) -> HostBatches:
    """The run's images as a memory-mapped cache (`mmap_cache.cached_copy`, written once per set of
    images) and the feed that gathers each step's batch from it."""
    from sesemi_common.datasets import cache_dir
    from sesemi_common.mmap_cache import host_images
    from .train import device_data

    training = exp.training
    cache = host_images(training.images, cache_dir() / "placement")
    empty = np.zeros((0, *training.images.shape[1:]), np.uint8)
    static = distributed.replicated(device_data(empty, np.zeros(0), exp.labeled, exp.mean, exp.std, exp.zca,
                                                training.pool), mesh)
    return HostBatches(cache, training.labels, exp.labeled, training.pool, rng, config, method, static, mesh)
