"""The checks ``benchmarks.gpu_suite`` runs: what only a GPU shows, each at a tiny and a real size.

A check is ``check(ctx) -> dict``: it runs the existing benchmark code at the
tiny size (``ctx.tiny``: the dry run, on the CPU, seconds) or the real one (a
GPU, minutes), writes that code's own files under ``ctx.out`` and returns a
small JSON-able summary whose ``headline`` is one line for the table. Where
the code it reuses allows it (the grid runner's ``on_case``, ``fnn.fit``'s
``callback``), a check stops early when ``ctx.left()`` says the budget is
spent; its summary then has ``"complete": False``.

* ``gradients_default``, ``gradients_highest``: the ``gpu`` grid's depth and
  batch sweeps (P up to 1.3e8, batch up to 8192), float32 at JAX's default
  matmul precision (TF32 on the GPU, as the width sweep was measured) and at
  ``highest``;
* ``calls``: ``benchmarks.calls``, an eager public call against jitted plain JAX;
* ``graphs``: the ``graphs`` grid, residual and cascade ``fnn.Graph`` nets;
* ``lm_fp32``: Levenberg-Marquardt on ``sine`` at ``fp32``: does the test's
  ``loss <= 1e-5`` hold on the GPU?
* ``lm_large``: Levenberg-Marquardt at P = 21,141 (``fnn.scale.memory`` says
  whether it fits): time per epoch, loss drop;
* ``mfu``: ``fnn.fit`` of 784-4096-4096-4096-10 at batch 4096 in bf16, tf32
  and fp32: TFLOP/s and MFU (``fnn.scale.throughput``);
* ``curvature``: ``benchmarks.curvature``'s ``gpu`` grid, the hand-written
  Hessian- and Gauss-Newton-vector products against JAX's and PyTorch's, in
  gradients, and the finite differences' error against eps;
* ``second_order``: ``benchmarks.steps`` on MNIST-shaped classifiers at batch
  4096: one compiled step of Hessian-free, K-FAC, SCG with exact curvature and
  L-BFGS beside Adam's, in gradients, with Hessian-free's CG iterations.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# calls, curvature and steps by their full names (calls and curvature are checks here)
import benchmarks.calls
import benchmarks.curvature
import benchmarks.steps
import fnn
from benchmarks import analysis, output, runner
from benchmarks.grids import batch_sweep, classifier, depth_sweep, grid
from fnn.data import datasets
from fnn.scale import memory, throughput
from fnn.scale.throughput import speed_summary


class Context(NamedTuple):
    device: jax.Device
    out: Path  # the check's own folder
    tiny: bool  # the dry run's sizes
    left: Callable[[], float]  # seconds of the budget left


class OutOfTime(Exception):
    """Raised from a runner's ``on_case`` when the next case would not fit: carries the results so far."""

    def __init__(self, partial: dict):
        super().__init__(f"budget spent after {partial['cases_done']} of {partial['cases']} cases")
        self.partial = partial


# ---------------------------------------------------------------------------- the gradient grids

# The depth and batch sweeps judge backprop against jax.grad, PyTorch and the matmul peak; the O(P)
# methods' growth with P was the width sweep's story, and at P = 1.3e8 they would take the budget.
GRADIENT_METHODS = runner.GRAPH_METHODS


def _stop_when_spent(ctx: Context):
    """A runner's ``on_case``: keeps the results so far on disk (``results.partial.json``, as
    ``bench_gradients.py`` keeps them) and raises ``OutOfTime`` between cases once the time left is
    under the longer of the mean case's and the last case's."""
    previous = 0.0  # wall_s after the case before

    def on_case(partial):
        nonlocal previous
        output.write_json(partial, ctx.out / output.PARTIAL)
        done, last, previous = partial["cases_done"], partial["wall_s"] - previous, partial["wall_s"]
        if done < partial["cases"] and ctx.left() < max(partial["wall_s"] / done, last):
            raise OutOfTime(partial)

    return on_case


def _grid_run(
    ctx: Context, grid_name: str, cases, methods=None, precision: str = runner.MATMUL_PRECISION
) -> dict:
    """``runner.run``, stopped between cases when the budget runs out (``_stop_when_spent``);
    analysed and saved."""
    on_case = _stop_when_spent(ctx)
    try:
        results = runner.run(grid_name, ctx.device, jnp.float32, methods, False, on_case, cases, precision)
    except OutOfTime as stop:
        results = stop.partial
    results = analysis.analyse(results)
    files = benchmarks.save(results, ctx.out)
    paired = [
        r["paired_time_vs_jax_grad"] for r in results["ratios"] if math.isfinite(r["paired_time_vs_jax_grad"])
    ]
    peaks = [r["peak_fraction"] for r in results["ratios"] if math.isfinite(r["peak_fraction"])]
    return {
        "grid": grid_name,
        "matmul_precision": precision,
        "cases": results["cases"],
        "cases_done": results["cases_done"],
        "complete": results["complete"],
        "matmul_peak_tflops": results["matmul_peak"]["used"]["median_flops_per_s"] / 1e12,
        "targets": [{k: t[k] for k in ("target", "met", "detail")} for t in results["targets"]],
        "files": [p.name for p in files],
        "headline": (
            f"{results['cases_done']}/{results['cases']} cases; backprop/jax.grad paired "
            f"{_span(paired)}; backprop at up to {max(peaks, default=math.nan):.0%} of the matmul peak"
        ),
    }


def _span(values, fmt="{:.3f}x") -> str:
    return "n/a" if not values else f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def _sweeps(tiny: bool):
    """``(grid name, cases)``: the ``gpu`` grid's depth and batch sweeps, or two tiny cases like them."""
    if tiny:
        return "tiny", depth_sweep((2,), width=8, batch=16) + batch_sweep((32,), width=8)
    return "gpu", [case for case in grid("gpu") if case.sweep in ("depth", "batch")]


def gradients_default(ctx: Context) -> dict:
    """The depth and batch sweeps, float32 at JAX's default matmul precision (TF32 on an NVIDIA GPU)."""
    return _grid_run(ctx, *_sweeps(ctx.tiny), GRADIENT_METHODS, precision="default")


def gradients_highest(ctx: Context) -> dict:
    """The same at ``highest``: float32 products, as PyTorch's default."""
    return _grid_run(ctx, *_sweeps(ctx.tiny), GRADIENT_METHODS, precision="highest")


def graphs(ctx: Context) -> dict:
    """The graph grid's residual and cascade nets (the runner's default methods and precision)."""
    name = "graphs_tiny" if ctx.tiny else "graphs"
    return _grid_run(ctx, name, grid(name))


# ---------------------------------------------------------------------------- the per-call benchmark


def calls(ctx: Context) -> dict:
    """``benchmarks.calls``: every case at 21 rounds (``--quick``'s), or three small cases at 1 round."""
    if ctx.tiny:
        results = benchmarks.calls.run(rounds=1, progress=False, which=benchmarks.calls.cases(quick=True)[:3])
    else:
        results = benchmarks.calls.run(quick=False, rounds=21, progress=False)
    files = benchmarks.calls.save(results, ctx.out)
    ratios = [r["ratio"] for r in results["rows"]]
    within = sum(r <= results["tolerance"] for r in ratios)
    return {
        "rows": len(ratios),
        "within_tolerance": within,
        "tolerance": results["tolerance"],
        "worst": results["worst"],
        "files": [p.name for p in files],
        "headline": f"fnn/plain per call {_span(ratios)}; {within} of {len(ratios)} rows "
        f"<= {results['tolerance']}x",
    }


# ---------------------------------------------------------------------------- training


class _Deadline:
    """``fnn.fit``'s ``callback``: stop after the epoch during which the budget ran out, and remember it."""

    def __init__(self, ctx: Context):
        self.left, self.stopped = ctx.left, False

    def __call__(self, record) -> bool:
        self.stopped = self.stopped or self.left() <= 0
        return self.stopped


def _epoch_s(history) -> float:
    """The median epoch after the first (which compiles); the first when it is the only one."""
    return statistics.median(history.epoch_time_s[1:] or history.epoch_time_s)


SINE_GOAL = 1e-5  # tests/test_train.py's Levenberg-Marquardt bound on sine, missed at TF32 on an H200


def lm_fp32(ctx: Context) -> dict:
    """Levenberg-Marquardt on ``sine`` (1-10-1 tanh) at ``fp32``, as ``tests/test_train.py``: 100 epochs.
    The test's problem is small enough for the dry run too: both sizes are the test's."""
    ds, net, key = datasets.load("sine"), fnn.MLP((1, 10, 1), activation="tanh"), jax.random.key(0)
    epochs, deadline = 100, _Deadline(ctx)
    params, h = fnn.fit(
        net,
        fnn.init(key, net),
        (ds.x, ds.y),
        optimizer="levenberg_marquardt",
        epochs=epochs,
        key=key,
        precision="fp32",
        devices=[ctx.device],
        callback=deadline,
    )
    final = float(fnn.loss(net, params, ds.x, ds.y))
    h.to_csv(ctx.out / "history.csv")
    return {
        "epochs": len(h),
        "final_loss": final,
        "goal": SINE_GOAL,
        "met": final <= SINE_GOAL,
        "epoch_s": _epoch_s(h),
        "stop_reason": h.stop_reason,
        "complete": not deadline.stopped,
        "headline": f"loss {final:.2e} after {len(h)} epochs (test's bound {SINE_GOAL:g}: "
        f"{'met' if final <= SINE_GOAL else 'MISSED'}); {1e3 * _epoch_s(h):.2f} ms/epoch",
    }


def _regression(n: int, n_in: int, seed: int = 0):
    """``y = sin(x a)`` of ``x ~ N(0, 1)``: a smooth target a network can fit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)).astype(np.float32)
    return x, np.sin(x @ rng.normal(size=(n_in, 1)) / np.sqrt(n_in)).astype(np.float32)


def lm_large(ctx: Context) -> dict:
    """Levenberg-Marquardt at P >= 20,000 (8-140-140-1, 8192 examples): time per epoch and loss drop."""
    sizes, n, epochs = ((8, 12, 12, 1), 256, 3) if ctx.tiny else ((8, 140, 140, 1), 8192, 5)
    net, key = fnn.MLP(sizes, activation="tanh"), jax.random.key(0)
    need, have = (
        memory.needed("levenberg_marquardt", net.n_params, np.float32),
        memory.device_memory(ctx.device),
    )
    memory.check("levenberg_marquardt", net.n_params, np.float32, ctx.device)  # ValueError naming the sizes
    x, y = _regression(n, sizes[0])
    params, deadline = fnn.init(key, net), _Deadline(ctx)
    start = float(fnn.loss(net, params, x, y))
    params, h = fnn.fit(
        net,
        params,
        (x, y),
        optimizer="levenberg_marquardt",
        epochs=epochs,
        key=key,
        devices=[ctx.device],
        callback=deadline,
    )
    final = float(fnn.loss(net, params, x, y))
    h.to_csv(ctx.out / "history.csv")
    return {
        "sizes": list(sizes),
        "P": net.n_params,
        "examples": n,
        "epochs": len(h),
        "epoch_s": _epoch_s(h),
        "loss_start": start,
        "loss_end": final,
        "mu": list(h.mu),
        "memory_needed_bytes": need,
        "device_memory_bytes": have,
        "stop_reason": h.stop_reason,
        "complete": not deadline.stopped,
        "headline": f"P = {net.n_params:,}: {_epoch_s(h):.3g} s/epoch; loss {start:.3g} -> {final:.3g} "
        f"in {len(h)} epochs; P x P matrices {need / 2**30:.2f} of {have / 2**30:.0f} GiB",
    }


PRECISIONS = ("bf16", "tf32", "fp32")


def mfu(ctx: Context) -> dict:
    """``fnn.fit`` (Adam) of 784-4096-4096-4096-10 at batch 4096 on MNIST-shaped synthetic data, 10 epochs,
    in bf16 and, beside it, tf32 and fp32: TFLOP/s and MFU of the epochs after the first (which compiles)."""
    hidden, batch, steps, epochs = ((64, 64), 64, 4, 3) if ctx.tiny else ((4096,) * 3, 4096, 15, 10)
    net = classifier(hidden, "relu", n_in=32 if ctx.tiny else 784)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, net.sizes[0])).astype(np.float32)
    y = rng.integers(0, net.sizes[-1], size=batch * steps).astype(np.int32)
    runs, deadline = {}, _Deadline(ctx)
    for precision in PRECISIONS:
        runs[precision] = (
            _speed(ctx, net, (x, y), batch, epochs, precision, deadline)
            if not runs or ctx.left() > 0
            else {"skipped": "budget"}
        )
    done = {p: r for p, r in runs.items() if "mfu" in r}
    return {
        "sizes": list(net.sizes),
        "batch": batch,
        "runs": runs,
        "complete": len(done) == len(PRECISIONS) and not deadline.stopped,
        "headline": "; ".join(
            f"{p} {_tflops(r['tflops'])} TFLOP/s, MFU {_percent(r['mfu'])}" for p, r in done.items()
        ),
    }


def _speed(ctx: Context, net, train, batch: int, epochs: int, precision: str, deadline: _Deadline) -> dict:
    """One fit's throughput, as ``fnn train`` writes it to ``metrics.json`` (``speed_summary``)."""
    key = jax.random.key(0)
    _, h = fnn.fit(
        net,
        fnn.init(key, net),
        train,
        optimizer="adam",
        learning_rate=1e-3,
        epochs=epochs,
        batch_size=batch,
        key=key,
        precision=precision,
        devices=[ctx.device],
        callback=deadline,
    )
    h.to_csv(ctx.out / f"history_{precision}.csv")
    peak, source = throughput.peak_tflops(ctx.device, precision, n=256 if ctx.tiny else 1024)
    speed = {
        "peak_tflops": peak,
        "peak_source": source,
        "flops_per_step": net.step_flops(batch),
        "steps_per_epoch": -(-len(train[0]) // batch),
        "batch": batch,
        "devices": str(ctx.device),
        "device_kind": ctx.device.device_kind,
    }
    return {
        **speed_summary(h, speed, {"precision": precision}),
        "epochs": len(h),
        "epoch_s": _epoch_s(h),
        "train_loss": list(h.train_loss),
    }


def _percent(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _tflops(v) -> str:  # None: a time speed_summary refused (faster than the peak)
    return "n/a" if v is None else f"{v:.3g}"


# ---------------------------------------------------------------------------- curvature products


def curvature(ctx: Context) -> dict:
    """``benchmarks.curvature``: its ``gpu`` grid (or ``tiny``), stopped between cases when the
    budget runs out (the finite differences' sweep over eps, which runs after the cases, is then
    left out)."""
    try:
        results = benchmarks.curvature.run(
            "tiny" if ctx.tiny else "gpu", ctx.device, False, _stop_when_spent(ctx)
        )
    except OutOfTime as stop:
        results = benchmarks.curvature.analyse(stop.partial)
    files = benchmarks.curvature.save(results, ctx.out)
    (ctx.out / output.PARTIAL).unlink(missing_ok=True)  # the whole run is written
    table = results["ratios"]
    hvp = [r["hvp_vs_fwd_over_rev"] for r in table if math.isfinite(r["hvp_vs_fwd_over_rev"])]
    grads = [r["gradients"]["hvp"] for r in table if math.isfinite(r["gradients"]["hvp"])]
    gn = [r["gnvp_vs_linearized"] for r in table if math.isfinite(r["gnvp_vs_linearized"])]
    met = [t for t in results["targets"] if t["met"]]
    return {
        "cases": results["cases"],
        "cases_done": results["cases_done"],
        "complete": results["complete"],
        "targets": [{k: t[k] for k in ("target", "met", "detail")} for t in results["targets"]],
        "files": [p.name for p in files],
        "headline": (
            f"{results['cases_done']}/{results['cases']} cases; hvp/fwd-over-rev {_span(hvp)}, "
            f"hvp {_span(grads, '{:.2f}')} gradients; gnvp(cached)/linearized {_span(gn)}; "
            f"{len(met)} of {len(results['targets'])} targets met"
        ),
    }


# ---------------------------------------------------------------------------- second-order training

SECOND_ORDER = ("adam", "scg(gnvp)", "hessian_free", "kfac", "lbfgs")


def second_order(ctx: Context) -> dict:
    """One compiled step of each second-order method and Adam's, in gradients (``benchmarks.steps``), on
    784-1024-1024-10 and 784-2048-2048-2048-10 at batch 4096 (tiny: 32-16-10 at 64); the second case only
    if the first left time for it."""
    if ctx.tiny:
        case_list, repeats = [benchmarks.steps.synthetic_case((16,), 64, n_in=32)], 3
    else:
        case_list, repeats = (
            [
                benchmarks.steps.synthetic_case((1024, 1024), 4096),
                benchmarks.steps.synthetic_case((2048,) * 3, 4096),
            ],
            11,
        )
    start = ctx.left()
    results = benchmarks.steps.run(
        repeats,
        2,
        tiny=ctx.tiny,
        methods=SECOND_ORDER,
        progress=None,
        case_list=case_list,
        stop=lambda rows: ctx.left() < 2 * (start - ctx.left()) / len(rows),
    )
    files = benchmarks.steps.save(results, ctx.out / "steps.json")
    headline = "; ".join(
        f"{'-'.join(map(str, c['sizes']))}: "
        + ", ".join(f"{m} {r['gradients']:.1f}" for m, r in c["methods"].items())
        for c in results["cases"]
    )
    return {
        "cases": len(case_list),
        "cases_done": len(results["cases"]),
        "complete": results["complete"],
        "steps_in_gradients": {
            c["case"]: {m: r["gradients"] for m, r in c["methods"].items()} for c in results["cases"]
        },
        "files": [Path(p).name for p in files],
        "headline": f"steps in gradients: {headline}",
    }
