"""What XLA says a compiled function costs, and what the device can do.

``cost_analysis`` counts the floating-point operations of the optimised HLO
(a multiply-add is 2 FLOPs) and ``memory_analysis`` gives the temporary buffer
the executable allocates besides its arguments and outputs. Neither depends
on timing noise, so they compare two compiled programs exactly. XLA counts a
loop body once, whatever its trip count, so methods built on ``lax.map`` are
costed per perturbation and multiplied out (see ``fnn.bench.methods``).
"""

from __future__ import annotations

import math
import statistics

import jax
import jax.numpy as jnp

from fnn.scale.timing import wall_time


def compiled_cost(compiled) -> dict:
    """``{"flops", "bytes_accessed", "temp_bytes"}`` of a ``jax.stages.Compiled``; NaN where XLA gives none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX returns one dict per device program
        cost = cost[0] if cost else {}
    cost = cost or {}
    try:
        temp = float(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # memory_analysis is not implemented on every backend
        temp = math.nan
    return {
        "flops": float(cost.get("flops", math.nan)),
        "bytes_accessed": float(cost.get("bytes accessed", math.nan)),
        "temp_bytes": temp,
    }


def matmul_call(device, dtype, n: int):
    """``(call, flops)``: a blocking zero-argument run of a compiled ``(n, n) @ (n, n)``."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(key_b, (n, n), dtype), device)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    return (lambda: jax.block_until_ready(matmul(a, b))), 2.0 * n**3


def matmul_peak(device, dtype, n: int, repeats: int = 7) -> dict:
    """FLOP/s of a jitted ``(n, n) @ (n, n)`` in ``dtype`` on ``device``: ``2 n^3 / time``.

    This is the practical peak the benchmark's own library (XLA's dot) reaches
    on this machine right now, the yardstick for a gradient's achieved FLOP/s.
    """
    call, flops = matmul_call(device, dtype, n)
    call()
    times = [wall_time(call) for _ in range(repeats)]
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "flops": flops,
        "median_flops_per_s": flops / statistics.median(times),
        "best_flops_per_s": flops / min(times),
        "repeats": repeats,
    }
