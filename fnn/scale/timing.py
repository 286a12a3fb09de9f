"""Wall-clock timing of compiled JAX functions: interleaved rounds, medians, paired ratios."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple


class Timing(NamedTuple):
    median_s: float
    min_s: float
    max_s: float
    repeats: int
    samples: tuple[float, ...] = ()  # every measured time, in order


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of ``a_i / b_i`` for two calls timed in the same rounds.

    Each pair ran back to back, so a slow spell of a shared machine divides out
    of the pair's ratio instead of landing on one side of a ratio of medians.
    """
    pairs = [x / y for x, y in zip(a.samples, b.samples) if y > 0]
    return statistics.median(pairs) if pairs else float("nan")


def wall_time(call: Callable[[], object]) -> float:
    """Seconds taken by one ``call()``; the call must block until its result is ready."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_interleaved(
    calls: Mapping[str, Callable[[], object]], repeats: Mapping[str, int] | int = 7, seed: int = 0
) -> dict[str, Timing]:
    """Median wall time of several zero-argument calls, measured in interleaved rounds.

    Each round runs every call that is still owed a repetition, in a freshly
    shuffled order (seeded, so runs are repeatable). A slow spell of a shared
    machine then lands on all calls alike instead of on whichever happened to be
    timed during it, and no call always follows the same neighbour (whose cache
    footprint or waking threads it would inherit), so the ratios between calls
    stay fair even when absolute times drift. Each call must block
    until its result is ready (``jax.block_until_ready``); warm-up is the
    caller's business, since compiled executables need none beyond a first call.
    """
    names = list(calls)
    owed = {n: repeats if isinstance(repeats, int) else repeats[n] for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    order, rng = list(names), random.Random(seed)
    for _ in range(max(owed.values(), default=0)):
        rng.shuffle(order)
        for name in order:
            if len(samples[name]) < owed[name]:
                samples[name].append(wall_time(calls[name]))
    return {
        n: Timing(statistics.median(s), min(s), max(s), len(s), tuple(s)) for n, s in samples.items() if s
    }
