"""What every measurement receives: the iteration counts for this run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    iterations: int = 2000  # issue 5: p50/p99 over at least 2,000 iterations
    warmup: int = 100
    quick: bool = False  # for trying the scripts out: far fewer iterations, numbers meaningless

    @classmethod
    def make(cls, quick: bool) -> Context:
        if quick:
            return cls(iterations=200, warmup=20, quick=True)
        return cls()
