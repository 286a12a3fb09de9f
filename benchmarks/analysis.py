"""What the rows say: fitted slopes, backprop's ratios to its peers, the targets.

A slope is the exponent ``k`` of ``time ~ P^k``, the least-squares line
through ``(log P, log time)``. Finite differences need ``2P`` forward passes,
so their cost in forward passes has slope 1; backprop needs one forward and
one backward pass whatever ``P`` is, so its cost in forward passes has slope 0.
In raw time both slopes rise by the forward pass's own slope (0 while a pass
is overhead-bound, 1 once its matmuls dominate at a fixed batch).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from fnn.core.graph import Graph
from fnn.scale import throughput

SLOPE_SWEEPS = ("width", "iso_work", "depth")
# backprop/jax.grad time ratio above which the issue asks for an explanation
TIME_TOLERANCE = 1.05
PEAK_TARGET = 0.85


def fit_slope(p, t) -> float:
    """Exponent ``k`` of the least-squares fit ``log t = k log P + c``; NaN under 2 points."""
    p, t = np.asarray(p, float), np.asarray(t, float)
    keep = np.isfinite(p) & np.isfinite(t) & (p > 0) & (t > 0)
    if keep.sum() < 2 or np.ptp(np.log(p[keep])) == 0:
        return math.nan
    return float(np.polyfit(np.log(p[keep]), np.log(t[keep]), 1)[0])


# The matmul FLOPs each method cannot do without (fnn.scale.throughput): forward
# 2 B sum(n_in n_out); a gradient of the params 6 B sum(n_in n_out) less the
# first layer's input gradient, 2 B n_0 n_1. Here for a chain's sizes (the
# rows of runs made before the ``matmul_flops`` column); ``matmul_flops`` below
# counts any network, a graph per matrix ``W_j[i]``.
MATMUL_FLOPS = {
    "forward": throughput.forward_flops,
    "backprop": throughput.step_flops,
    "backprop_eager": throughput.step_flops,
    "jax_grad": throughput.step_flops,
}


def matmul_flops(method: str, net, batch: int) -> float:
    """The matmul FLOPs ``method`` cannot do without on ``net`` (an ``MLP`` or ``Graph``); NaN for a
    method without such a floor. A graph's forward pass does ``2 B n_i n_j`` per matrix ``W_j[i]``, its
    gradient ``net.step_flops``."""
    if method not in MATMUL_FLOPS:
        return math.nan
    if method != "forward":
        return float(net.step_flops(batch))
    graph = net if isinstance(net, Graph) else net.graph
    widths = graph.widths
    return float(sum(2 * batch * widths[i] * node.width for node in graph.nodes for i in node.inputs))


def counted_flops(rows) -> list[dict]:
    """The rows, with the analytic matmul FLOPs where XLA's count falls below them.

    XLA's ``cost_analysis`` counts the operations it emits itself; on GPU it
    hands large matmuls to cuBLAS as custom calls and leaves their FLOPs out
    (on an H200 it counted 1.4e7 FLOPs for a gradient whose matmuls alone do
    1.1e10). A count below the method's matmul FLOPs is therefore incomplete:
    those rows get the analytic count, ``flops_source = "analytic"``, and
    FLOP/s and peak fraction computed from it.
    """
    out = []
    for r in rows:
        floor = MATMUL_FLOPS.get(r["method"])
        if floor is None or r["status"] == "skipped" or r.get("flops_source") == "analytic":  # re-analysed
            out.append(r)
            continue
        need = r.get("matmul_flops", math.nan)
        if not math.isfinite(need):  # a row from before the column: a chain's, counted from its sizes
            need = float(floor([int(n) for n in str(r["sizes"]).split("-")], int(r["batch"])))
        if r["flops"] >= need:
            out.append({**r, "flops_source": "xla"})
            continue
        per_s = need / r["time_median_s"]
        out.append(
            {
                **r,
                "flops": need,
                "flops_source": "analytic",
                "flops_per_s": per_s,
                "peak_fraction": per_s / r["peak_flops_per_s"],
            }
        )
    return out


def timed(rows):
    return [r for r in rows if r["status"] != "skipped"]


def slopes(rows) -> dict:
    """``{sweep: {method: {"time", "rel_forward", "P_min", "P_max", "points"}}}``."""
    out = {}
    for sweep in SLOPE_SWEEPS:
        by_method = defaultdict(list)
        for r in timed(rows):
            if r["sweep"] == sweep:
                by_method[r["method"]].append(r)
        for method, rs in by_method.items():
            ps = [r["P"] for r in rs]
            out.setdefault(sweep, {})[method] = {
                "time": fit_slope(ps, [r["time_median_s"] for r in rs]),
                "rel_forward": fit_slope(ps, [r["rel_forward"] for r in rs]),
                "P_min": min(ps),
                "P_max": max(ps),
                "points": len(rs),
            }
    return out


def _by_case(rows) -> dict:
    cases = defaultdict(dict)
    for r in timed(rows):
        cases[r["case"]][r["method"]] = r
    return cases


def _ratio(a, b) -> float:
    return a / b if b and math.isfinite(b) and b > 0 else math.nan


def _memory_ratio(a, b) -> float:
    """``a / b``, where two empty temporary buffers compare equal (ratio 1)."""
    if a == 0 and b == 0:
        return 1.0
    return a / b if b > 0 else (math.inf if a > 0 else math.nan)


def ratios(rows) -> list[dict]:
    """Per case: backprop against jax.grad (time, FLOPs, temporary memory) and torch."""
    out = []
    for case, m in _by_case(rows).items():
        bp = m.get("backprop")
        if bp is None:
            continue
        ad, th, ea = m.get("jax_grad", {}), m.get("torch", {}), m.get("backprop_eager", {})
        out.append(
            {
                "case": case,
                "sweep": bp["sweep"],
                "P": bp["P"],
                "batch": bp["batch"],
                "backprop_s": bp["time_median_s"],
                "jax_grad_s": ad.get("time_median_s", math.nan),
                "torch_s": th.get("time_median_s", math.nan),
                "eager_s": ea.get("time_median_s", math.nan),
                # the public call against the compiled one it dispatches, and against jax.grad's executable
                "eager_vs_backprop": _ratio(ea.get("time_median_s", math.nan), bp["time_median_s"]),
                "paired_eager_vs_jax_grad": ea.get("paired_vs_jax_grad", math.nan),
                "eager_vs_torch": _ratio(ea.get("time_median_s", math.nan), th.get("time_median_s")),
                "time_vs_jax_grad": _ratio(bp["time_median_s"], ad.get("time_median_s")),
                "min_time_vs_jax_grad": _ratio(bp["time_min_s"], ad.get("time_min_s")),
                "paired_time_vs_jax_grad": bp.get("paired_vs_jax_grad", math.nan),
                "time_vs_torch": _ratio(bp["time_median_s"], th.get("time_median_s")),
                # FLOPs compared only as XLA counted them in both: analytic counts are equal by construction
                "flops": bp["flops"],
                "flops_vs_jax_grad": (
                    _ratio(bp["flops"], ad.get("flops"))
                    if bp["flops_source"] == ad.get("flops_source") == "xla"
                    else math.nan
                ),
                "temp_bytes": bp["temp_bytes"],
                "jax_grad_temp_bytes": ad.get("temp_bytes", math.nan),
                "temp_vs_jax_grad": _memory_ratio(bp["temp_bytes"], ad.get("temp_bytes", math.nan)),
                "flops_per_s": bp["flops_per_s"],
                "peak_flops_per_s": bp["peak_flops_per_s"],
                "peak_fraction": bp["peak_fraction"],
            }
        )
    return sorted(out, key=lambda r: (r["sweep"], r["P"], r["batch"]))


LARGE_FLOPS = 1e9


def large_cases(table) -> list[dict]:
    """Cases whose backprop FLOPs are within 10x of the largest and at least
    ``LARGE_FLOPS``: the compute-bound end, where a peak comparison means something."""
    top = max((r["flops"] for r in table if math.isfinite(r["flops"])), default=math.nan)
    return [r for r in table if math.isfinite(r["flops"]) and r["flops"] >= max(top / 10, LARGE_FLOPS)]


def targets(table) -> list[dict]:
    """The issue's targets for backprop, each ``{"target", "met", "worst", "where", "detail"}``."""

    def check(name, values, ok, worst_of, fmt):
        values = [(r["case"], v) for r, v in values if math.isfinite(v)]
        if not values:
            return {"target": name, "met": None, "worst": math.nan, "where": "", "detail": "not measured"}
        case, worst = worst_of(values, key=lambda cv: cv[1])
        missed = [f"{c}: {fmt(v)}" for c, v in values if not ok(v)]
        return {
            "target": name,
            "met": not missed,
            "worst": worst,
            "where": case,
            "detail": "; ".join(missed) if missed else f"worst {fmt(worst)} at {case}",
        }

    x = lambda v: f"{v:.3f}x"
    return [
        # judged on the median of paired ratios (fnn.scale.timing.paired_ratio), which a
        # shared machine's slow spells do not skew as they skew a ratio of medians
        check(
            f"time <= jax.grad (paired ratio <= {TIME_TOLERANCE})",
            [(r, r["paired_time_vs_jax_grad"]) for r in table],
            lambda v: v <= TIME_TOLERANCE,
            max,
            x,
        ),
        check("FLOPs <= jax.grad", [(r, r["flops_vs_jax_grad"]) for r in table], lambda v: v <= 1.0, max, x),
        check(
            "temporary memory <= jax.grad",
            [(r, r["temp_vs_jax_grad"]) for r in table],
            lambda v: v <= 1.0,
            max,
            x,
        ),
        check(
            f"FLOP/s >= {PEAK_TARGET:.0%} of matmul peak (large sizes)",
            [(r, r["peak_fraction"]) for r in large_cases(table)],
            lambda v: v >= PEAK_TARGET,
            min,
            lambda v: f"{v:.0%}",
        ),
        check(
            "faster than PyTorch eager", [(r, r["time_vs_torch"]) for r in table], lambda v: v < 1.0, max, x
        ),
        check(
            f"eager fnn.backprop <= jax.grad (paired ratio <= {TIME_TOLERANCE})",
            [(r, r["paired_eager_vs_jax_grad"]) for r in table],
            lambda v: v <= TIME_TOLERANCE,
            max,
            x,
        ),
        check(
            "eager fnn.backprop faster than PyTorch eager",
            [(r, r["eager_vs_torch"]) for r in table],
            lambda v: v < 1.0,
            max,
            x,
        ),
    ]


def analyse(results: dict) -> dict:
    """Add ``slopes``, ``ratios`` and ``targets`` to the results of ``benchmarks.runner.run``."""
    rows = counted_flops(results["rows"])
    table = ratios(rows)
    return {**results, "rows": rows, "slopes": slopes(rows), "ratios": table, "targets": targets(table)}
