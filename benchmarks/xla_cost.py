"""What XLA says a compiled function costs.

``cost_analysis`` counts the floating-point operations of the optimised HLO
(a multiply-add is 2 FLOPs) and ``memory_analysis`` gives the temporary buffer
the executable allocates besides its arguments and outputs. Neither depends
on timing noise, so they compare two compiled programs exactly. XLA counts a
loop body once, whatever its trip count, so methods built on ``lax.map`` are
costed per perturbation and multiplied out (see ``benchmarks.methods``). What the
device can do, the measured matmul peak, is ``fnn.scale.throughput.matmul_peak``.
"""

from __future__ import annotations

import math


def compiled_cost(compiled) -> dict:
    """``{"flops", "bytes_accessed", "temp_bytes"}`` of a ``jax.stages.Compiled``; NaN where XLA
    gives none."""
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
