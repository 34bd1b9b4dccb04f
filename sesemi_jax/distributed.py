"""Several JAX processes training one model (docs/DESIGN.md section 8).

`jax.distributed` joins the processes; after that `jax.devices()` lists every process's devices,
so `train.batch_mesh` is one global mesh and the jitted step is one program over all of them.
The state and the training set become global arrays replicated on every device: each process
holds all of it, the step samples the same global batch in every process (same key, same
step), and `with_sharding_constraint` gives each device its contiguous share of that batch.

A process that dies must not leave the others waiting: a collective with a dead peer fails at
once (gloo reads a closed connection), and XLA's coordination service declares a process dead
after `HEARTBEAT_TIMEOUT_S` without a heartbeat and ends the others. `leave` then ends a failed
process at once, so the survivors are not held in JAX's shutdown barrier.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sesemi_common.config import ConfigError
from sesemi_common.distributed import Process

# A process silent this long is dead, and the coordination service ends the others. Heartbeats
# come from their own thread, so a long compile is not silence; but on a 2-core machine 30 s once
# declared two live processes dead (loaded 6x over), and so did 60 s (the death test's resumed pair,
# beside the suite's other worker): hence 120 s, above JAX's default 100 s. A dead peer is still
# found at once: its closed gloo connection fails the next collective (tests/jax/test_multiprocess.py).
HEARTBEAT_TIMEOUT_S = 120
# How long a process that finished waits for the others at exit before giving up on them.
SHUTDOWN_TIMEOUT_S = 120
_ADDRESS = re.compile(r"^\[?[\w.:-]+\]?:\d+$")


def requested(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Whether this process is one of several: a flag, or the variable `jax.distributed` reads."""
    flags = (coordinator, num_processes, process_id)
    return any(f is not None for f in flags) or "JAX_COORDINATOR_ADDRESS" in os.environ


def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    if coordinator is not None and not _ADDRESS.match(coordinator):
        raise ConfigError(f"--coordinator {coordinator}: expected HOST:PORT, e.g. 10.0.0.1:1234 (process 0's "
                          "address and a free port)")
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: expected 1 or more")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id}: expected 0 to {num_processes - 1} "
                          f"(--num-processes {num_processes})")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> Process:
    """Join the other processes of the run; `Process()` (and nothing done) when there are none.

    Flags left out come from the environment, as `jax.distributed.initialize` reads it:
    JAX_COORDINATOR_ADDRESS, or what Slurm and Open MPI set."""
    if not requested(coordinator, num_processes, process_id):
        return Process()
    check_flags(coordinator, num_processes, process_id)
    # Only the CPU client reads this; without it XLA's CPU client has no cross-process collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                                   shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except (ValueError, TypeError) as err:  # a setting missing or wrong
        raise ConfigError(f"cannot join the run's other processes: {err} (pass --coordinator HOST:PORT "
                          "--num-processes N --process-id I, or launch under Slurm/Open MPI)") from None
    # The first collective sets up gloo's connections, and gives up when a process is 30 s late
    # to it (GetKeyValue() timed out): made now, while all processes are here, it is never late.
    # Later collectives reuse the connections and wait as long as it takes (measured: 100 s).
    sync("sesemi: joined")
    return current_process()


def current_process() -> Process:
    return Process(jax.process_index(), jax.process_count())


def joined() -> bool:
    return jax.distributed.is_initialized() and jax.process_count() > 1


def sync(name: str) -> None:
    """Wait until every process is here (a no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def replicated(tree: Any, mesh: Mesh | None) -> Any:
    """`tree` on every device of `mesh`, whole (unchanged without a mesh). The training set must
    be: left on device 0, each step would copy all of it to the other devices again (the uint8
    images are an input of every step, never an output). So must the state: left on device 0,
    the second step would see other input shardings than the first and compile the step again.
    Both are caught by `benchmarks/throughput.py --profile`. Across processes each process passes
    the same values, its own copy, and keeps its arrays' weak types (a Python step count stays weak)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, jnp.asarray(x)), tree)


def failure_message(err: BaseException) -> str:
    """One line for an error that ends this process of several."""
    process = current_process()
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if "gloo" in first_line.lower() or isinstance(err, jax.errors.JaxRuntimeError):
        return (f"error: process {process.index} of {process.count} stopped: a collective with the other "
                f"processes failed, so another process of this run stopped or died first (see its output); "
                f"resume every process with --resume ({type(err).__name__}: {first_line})")
    return f"error: process {process.index} of {process.count} stopped: {type(err).__name__}: {first_line}"


def leave(code: int) -> None:
    """End a process of several that failed now, without JAX's shutdown barrier: the others, held
    in a collective with it, would wait `SHUTDOWN_TIMEOUT_S` there."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
