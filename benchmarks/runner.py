"""Run a grid: prepare every method on every case, time them interleaved, make rows.

One row per (method, case). ``status`` is ``measured`` (the full gradient was
computed each repetition), ``extrapolated`` (a sample of perturbations was
timed and the time multiplied by ``P / evaluated``) or ``skipped`` (the
``note`` says why). Times are in seconds per full gradient.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp

from benchmarks import torch_peer
from benchmarks.analysis import matmul_flops
from benchmarks.grids import GRAPH_GRIDS, Case, grid
from benchmarks.machine import describe
from benchmarks.methods import JAX_METHODS, PREPARE, Prepared, make_inputs
from fnn.check.analytical import SINGLE_UNIT
from fnn.scale.throughput import matmul_call, matmul_peak
from fnn.scale.timing import paired_ratio, time_interleaved, wall_time

ALL_METHODS = (*JAX_METHODS, "torch")
# The graph grids judge the step time against jax.grad and PyTorch: the O(P) methods are the MLP grids' story.
GRAPH_METHODS = ("forward", "backprop", "backprop_eager", "jax_grad", "torch")


def default_methods(grid_name: str) -> tuple[str, ...]:
    return GRAPH_METHODS if grid_name in GRAPH_GRIDS else ALL_METHODS


ROW_FIELDS = (
    "method",
    "status",
    "sweep",
    "case",
    "sizes",
    "depth",
    "width",
    "batch",
    "P",
    "evaluated",
    "time_median_s",
    "time_min_s",
    "time_max_s",
    "repeats",
    "compile_s",
    "rel_forward",
    "flops",
    "flops_source",
    "matmul_flops",
    "flops_per_s",
    "peak_flops_per_s",
    "peak_fraction",
    "temp_bytes",
    "paired_vs_jax_grad",
    "dtype",
    "device",
    "device_kind",
    "jax_version",
    "note",
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much time a grid may spend; bigger grids get more repetitions."""

    seconds_per_method: float  # timing time per method and case; sets the repetitions
    min_repeats: int
    max_repeats: int
    sample_flops: float  # FLOPs one call of an O(P) method may take before it is sampled
    naive_max_params: int  # the naive loop runs up to this P (sampled above naive_sample)
    naive_sample: int
    peak_n: int  # side of the square matmul that measures the peak


BUDGETS = {
    "tiny": Budget(0.03, 3, 41, 1e9, 10_000, 100, 512),
    "quick": Budget(0.25, 3, 101, 1e9, 10_000, 300, 1024),
    "full": Budget(1.0, 3, 301, 3e9, 10_000, 300, 2048),
    "gpu": Budget(0.5, 5, 301, 1e12, 10_000, 300, 8192),
}
BUDGETS.update(graphs=BUDGETS["full"], graphs_tiny=BUDGETS["tiny"])


# The pair the step-time target judges gets more rounds: its paired ratio must
# resolve a 5% tolerance on a machine whose single runs vary by 20% or more.
HEADLINE = ("backprop", "backprop_eager", "jax_grad")
HEADLINE_FACTOR = 4


def _repeats(seconds_per_call: float, budget: Budget, factor: int = 1) -> int:
    n = int(factor * budget.seconds_per_method / max(seconds_per_call, 1e-9))
    return max(factor * budget.min_repeats, min(factor * budget.max_repeats, n))


def _base_row(case: Case, machine: dict, dtype_name: str) -> dict:
    return {
        "sweep": case.sweep,
        "case": case.name,
        "sizes": "-".join(map(str, case.sizes)),
        "depth": case.depth,
        "width": case.width,
        "batch": case.batch,
        "P": case.n_params,
        "dtype": dtype_name,
        "device": machine["device"],
        "device_kind": machine["device_kind"],
        "jax_version": machine["jax_version"],
    }


def _skipped(base: dict, method: str, note: str) -> dict:
    return {
        **{f: math.nan for f in ROW_FIELDS},
        **base,
        "method": method,
        "status": "skipped",
        "evaluated": 0,
        "repeats": 0,
        "note": note,
    }


def prepare_methods(
    case: Case, params, x, y, budget: Budget, methods, device_kind: str, dtype_name: str, targets=None
):
    """``({method: Prepared}, {method: skip note})`` for one case; ``targets`` are ``y``
    as a user passes them (labels for a classifier), for the eager call and PyTorch."""
    targets = y if targets is None else targets
    net, prepared, skipped = case.net, {}, {}
    for name in methods:
        if name == "analytical" and net != SINGLE_UNIT:
            continue  # the closed form exists for the single-unit network only
        if name == "fd_naive_loop" and net.n_params > budget.naive_max_params:
            skipped[name] = f"naive loop run only up to P = {budget.naive_max_params}"
            continue
        if name == "torch":
            try:
                call = torch_peer.gradient_step(net, params, x, targets, device_kind, dtype_name)
            except torch_peer.Unsupported as err:
                skipped[name] = str(err)
                continue
            threads = torch_peer.fastest_threads(call) if device_kind == "cpu" else None
            note = f"eager autograd, {threads} thread(s)" if threads else "eager autograd"
            prepared[name] = Prepared(call, math.nan, net.n_params, math.nan, math.nan, note)
            continue
        prepared[name] = PREPARE[name](
            net, params, x, y, budget_flops=budget.sample_flops, sample=budget.naive_sample, targets=targets
        )
    return prepared, skipped


PEAK = "_matmul_peak"


def run_case(
    case: Case, device, dtype, budget: Budget, machine: dict, methods=ALL_METHODS, peak=None
) -> list[dict]:
    """Rows of one case. ``peak = (call, flops)`` of the square matmul is timed in the
    same interleaved rounds, so ``peak_fraction`` compares FLOP/s taken under the
    same load of the machine."""
    dtype_name = jnp.dtype(dtype).name
    params, x, y, targets = make_inputs(case.net, case.batch, device, dtype)
    prepared, skipped = prepare_methods(
        case, params, x, y, budget, methods, machine["device"], dtype_name, targets
    )
    calls = {name: p.call for name, p in prepared.items()}
    if peak is not None:
        calls[PEAK] = peak[0]
    for call in calls.values():  # first call: allocation, lazy initialisation
        call()
    repeats = {
        name: _repeats(wall_time(call), budget, HEADLINE_FACTOR if name in HEADLINE else 1)
        for name, call in calls.items()
    }
    if peak is not None:  # a handful of samples is enough for the yardstick
        repeats[PEAK] = min(repeats[PEAK], 2 * budget.min_repeats + 1)
    timings = time_interleaved(calls, repeats)
    peak_flops_per_s = peak[1] / timings[PEAK].median_s if peak is not None else math.nan

    base, rows = _base_row(case, machine, dtype_name), []
    scale = {name: case.n_params / p.evaluated for name, p in prepared.items()}
    forward_s = timings["forward"].median_s if "forward" in timings else math.nan
    paired = {
        name: paired_ratio(timings[name], timings["jax_grad"])
        for name in ("backprop", "backprop_eager")
        if name in timings and "jax_grad" in timings
    }
    for name in methods:
        if name in skipped:
            rows.append(_skipped(base, name, skipped[name]))
        if name not in prepared:
            continue
        p, t, k = prepared[name], timings[name], scale[name]
        median = t.median_s * k
        rows.append(
            {
                **base,
                "method": name,
                "status": "extrapolated" if p.evaluated < case.n_params else "measured",
                "evaluated": p.evaluated,
                "time_median_s": median,
                "time_min_s": t.min_s * k,
                "time_max_s": t.max_s * k,
                "repeats": t.repeats,
                "compile_s": p.compile_s,
                "rel_forward": median / forward_s,
                "flops": p.flops,
                "flops_source": "xla",
                "matmul_flops": matmul_flops(name, case.net, case.batch),
                "flops_per_s": p.flops / median,
                "peak_flops_per_s": peak_flops_per_s,
                "peak_fraction": p.flops / median / peak_flops_per_s,
                "temp_bytes": p.temp_bytes,
                "paired_vs_jax_grad": paired.get(name, math.nan),
                "note": p.note
                or (
                    f"timed on {p.evaluated} of {case.n_params} perturbations, scaled by P/evaluated"
                    if p.evaluated < case.n_params
                    else ""
                ),
            }
        )
    return rows


# Exact products in every dtype, as fnn.fit's default and PyTorch's: at JAX's
# default precision an NVIDIA GPU would run float32 matmuls in TF32 while the
# PyTorch peer runs them in float32. No effect on CPU.
MATMUL_PRECISION = "highest"


def run(
    grid_name: str,
    device,
    dtype,
    methods=None,
    progress: bool = True,
    on_case=None,
    cases=None,
    matmul_precision: str = MATMUL_PRECISION,
) -> dict:
    """Run the named grid on ``device`` at ``matmul_precision``; return the results (machine,
    matmul peak, rows). ``methods``: default ``default_methods(grid_name)``. ``cases``: some of the
    grid's cases (or others) to run instead of the whole grid, with its budget; ``matmul_precision``:
    ``jax.default_matmul_precision``'s (``"default"``: JAX's own, TF32 on recent NVIDIA GPUs).

    ``on_case(partial)``, if given, is called after each case with the results
    so far (``"complete": False``), so that a long run can keep them on disk.
    """
    budget, methods = BUDGETS[grid_name], methods or default_methods(grid_name)
    cases = grid(grid_name) if cases is None else list(cases)
    about = {
        "grid": grid_name,
        "dtype": jnp.dtype(dtype).name,
        "matmul_precision": matmul_precision,
        "machine": describe(device),
        "cases": len(cases),
    }
    start = time.perf_counter()
    with jax.default_matmul_precision(matmul_precision):
        peak_before = matmul_peak(device, dtype, budget.peak_n)
        in_rounds = matmul_call(device, dtype, budget.peak_n)
        rows = []
        for done, case in enumerate(_progress(cases, progress), 1):
            rows.extend(run_case(case, device, dtype, budget, about["machine"], methods, in_rounds))
            if on_case is not None:
                on_case(
                    {
                        **about,
                        "matmul_peak": {"used": peak_before, "before": peak_before},
                        "rows": rows,
                        "cases_done": done,
                        "wall_s": time.perf_counter() - start,
                        "complete": False,
                    }
                )
        peak_after = matmul_peak(device, dtype, budget.peak_n)
    # for the summary line; each row's peak_fraction uses the peak timed in its own rounds
    peak = max(peak_before, peak_after, key=lambda p: p["median_flops_per_s"])
    return {
        **about,
        "matmul_peak": {"used": peak, "before": peak_before, "after": peak_after},
        "rows": rows,
        "cases_done": len(cases),
        "wall_s": time.perf_counter() - start,
        "complete": True,
    }


def _progress(cases, enabled: bool):
    if not enabled:
        return cases
    try:
        from tqdm import tqdm
    except ImportError:
        return cases
    return tqdm(cases, desc="cases", unit="case", leave=False)
