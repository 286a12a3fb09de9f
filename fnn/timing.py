"""Wall-clock timing of compiled JAX functions: compile once, warm up, take medians."""

from __future__ import annotations

import statistics
import time
from typing import Callable, NamedTuple

import jax


class Timing(NamedTuple):
    median_s: float
    min_s: float
    max_s: float
    repeats: int


def time_call(fn: Callable, *args, repeats: int = 7, warmup: int = 1) -> Timing:
    """Median wall time of ``fn(*args)``, waiting for the result with ``block_until_ready``."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times), repeats)
