"""Where the training images live (docs/DESIGN.md section 9, "Placement"; docs/placement.md): the
decision, framework-free. The trainers measure the memory and act on the answer.

`device`: the uint8 set on every device, whole (each step gathers its images on the device).
`host`: the set stays in a memory-mapped file; the host gathers each step's images and prefetches
them to the devices. `auto`: `device` when the set takes at most `DEVICE_SHARE` of one device's
memory (the rest is for the model, its activations and the optimizer), else `host`.
"""

from __future__ import annotations

import os

from .config import ConfigError
from .runs import note

DEVICE_SHARE = 0.5  # of one device's memory that auto lets the training images take


def host_memory_bytes() -> int:
    """This machine's RAM: the "device memory" of a CPU device, which has no limit of its own."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def choose(requested: str, set_bytes: int, memory_bytes: int, memory_name: str, writer: bool = True) -> str:
    """`device` or `host` for `requested` (data.placement), given the images' size and one device's
    memory. `device` that cannot hold the set at all is a ConfigError, with the numbers, before
    anything trains; `auto` says what it chose and why."""
    if requested == "device":
        if set_bytes > memory_bytes:
            raise ConfigError(f"data.placement=device: the training images take {_gib(set_bytes)}, more than the "
                              f"{_gib(memory_bytes)} of {memory_name}: set data.placement=host (or auto)")
        return "device"
    if requested == "host":
        return "host"
    budget = int(DEVICE_SHARE * memory_bytes)
    chosen = "device" if set_bytes <= budget else "host"
    if writer:
        relation = "fit in" if chosen == "device" else "exceed"
        note(f"data.placement=auto chose {chosen}: the training images take {_gib(set_bytes)} and {relation} "
             f"{DEVICE_SHARE:.0%} of the {_gib(memory_bytes)} of {memory_name} ({_gib(budget)})")
    return chosen
