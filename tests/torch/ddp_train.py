"""`sesemi_torch.cli` in float64, run by test_distributed.py (under torchrun, or as the 1-process
reference): float64 so that summation order, which differs between 1 and 2 processes, moves
results by ~1e-16 instead of hiding a real difference under float32 rounding (as the one-step
parity rung does).

SESEMI_TEST_DIE=RANK:STEP makes process RANK kill itself (SIGKILL) as it starts step STEP
(0-based), a process that dies mid-run; it first prints `dying at <time.time()>` on stderr."""

import os
import signal
import sys
import time

import torch

from sesemi_torch import cli, loop


def die_at(rank: int, step: int) -> None:
    if int(os.environ.get("RANK", "0")) != rank:
        return
    take_step = loop.train_step

    def train_step(model, optimizer, scheduler, batch, current, *args, **kwargs):
        if current == step:
            print(f"dying at {time.time()}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return take_step(model, optimizer, scheduler, batch, current, *args, **kwargs)

    loop.train_step = train_step


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    if "SESEMI_TEST_DIE" in os.environ:
        die_at(*map(int, os.environ["SESEMI_TEST_DIE"].split(":")))
    raise SystemExit(cli.main(sys.argv[1:]))
