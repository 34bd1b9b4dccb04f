"""Suite-wide settings. Under `pytest -n 2` each worker gets one of the two cores: PyTorch's
intra-op threads spin-wait on each other when the cores are shared, which made small torch
ops 10-30x slower in this suite, so each worker runs torch on one thread."""

import os

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
