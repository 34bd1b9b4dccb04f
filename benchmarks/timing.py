"""Timing shared by the benchmarks: interleaved repetitions, so load from other processes hits
every variant alike, and the median of each."""

from __future__ import annotations

import statistics
import time
from typing import Callable

Run = Callable[[int], None]  # runs n steps (and waits for them to finish)


def seconds_per_step(run: Run, steps: int) -> float:
    started = time.perf_counter()
    run(steps)
    return (time.perf_counter() - started) / steps


def interleaved(runs: dict[str, Run], repeats: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of every run, repetition by repetition (A, B, C, A, B, C, ...), after
    `warmup` untimed steps each (compilation happens there)."""
    for run in runs.values():
        run(warmup)
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(seconds_per_step(run, steps))
    return seconds


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)
