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
