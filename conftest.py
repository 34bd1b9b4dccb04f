"""Suite-wide settings.

Under `pytest -n 2` each worker gets one of the two cores: PyTorch's intra-op threads spin-wait
on each other when the cores are shared, which made small torch ops 10-30x slower in this suite,
so each worker runs torch on one thread.

JAX compilations are shared across the whole session through JAX's persistent compilation cache
(one temporary folder, inherited by the xdist workers and every CLI subprocess): XLA compiling
the train step and the model init is most of a tiny JAX run (measured: a 24-step pi_model run
took 130 s with a cold cache and 36 s with a warm one, load average 10), and a kill-resume test
runs the same program in three processes. A cached executable is the binary the compiler made,
so results are bit-identical (the resume tests compare them).

XLA compiles the suite's CPU code at backend optimization level 0 (`_compile_quickly`): LLVM skips
its optimization passes, which are most of a compile, and the suite's programs are tiny (16-32 px,
a few images), so compiling dominates and running barely shows. Measured: one JAX loop test
(`-k "entmin and writes"`, cold cache) 155 s and 185 s at the default level, 91 s and 91 s at level 0,
interleaved, load average 3.9. The level changes how XLA's CPU code is optimized, not what it
computes: without fast-math (XLA's CPU default) LLVM keeps IEEE semantics at every level, and
convolutions and matmuls are library calls it does not recompile; the parity ladder passes its
tolerances at both levels (CI at the default level until this change). A user's runs, the
benchmarks and the demo keep XLA's default."""

import atexit
import importlib.util
import os
import shutil
import tempfile


def _share_jax_compilations() -> None:
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the xdist controller's folder, or the user's own
        return
    folder = tempfile.mkdtemp(prefix="sesemi-jax-compilations-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # under load even small jits take 0.1-0.5 s
    # A size limit turns on JAX's file lock around reads and writes, so one xdist worker never
    # reads an entry another is still writing (without filelock, a torn read is a warning and a recompile).
    if importlib.util.find_spec("filelock"):  # JAX refuses a size limit without it
        os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 << 30)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def _compile_quickly() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in flags:  # a level the user set stays
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


_share_jax_compilations()
_compile_quickly()

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses of the resume tests
    try:
        import torch
    except ImportError:  # a JAX-only install runs the suite without torch tests
        torch = None
    if torch is not None:
        torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module, also outside xdist: on the shared 2-core machine torch's
    spinning OpenMP threads slowed a resnet50 forward about 10x (3 s against 0.4 s measured)
    when another process held a core."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
