"""Which process of a multi-process run this is (DESIGN.md section 8): every process trains,
only process 0 (the writer) writes the run directory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    index: int = 0
    count: int = 1

    @property
    def writer(self) -> bool:
        return self.index == 0
