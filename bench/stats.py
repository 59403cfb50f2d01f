"""Percentiles and timing helpers shared by the measurements."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always one of the measured samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": float(len(samples_ms)),
        "p50": percentile(samples_ms, 50),
        "p90": percentile(samples_ms, 90),
        "p99": percentile(samples_ms, 99),
        "min": min(samples_ms),
        "max": max(samples_ms),
    }


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def interleave(
    contenders: Mapping[str, Callable[[], object]], iterations: int, block: int = 100
) -> dict[str, list[float]]:
    """Run every contender ``iterations`` times in alternating blocks (the order flips each
    block), so that noise from other work on the machine lands on all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    done = 0
    flip = False
    while done < iterations:
        size = min(block, iterations - done)
        for name in reversed(names) if flip else names:
            fn = contenders[name]
            samples[name].extend(timed_ms(fn) for _ in range(size))
        done += size
        flip = not flip
    return samples
