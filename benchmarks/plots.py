"""The figures, one story each (matplotlib, Agg backend, PNG).

* ``time_vs_params.png``: time per full gradient against P, log-log, one line
  per method along the slope sweep, fitted slope in the legend. Hollow
  markers are extrapolated from a sample of perturbations.
* ``cost_in_forward_passes.png``: the same times divided by one forward pass:
  backprop stays flat at a few passes, finite differences climb as P. These
  two need a sweep along P: the graphs grid, which has none, draws neither.
* ``backprop_vs_autodiff.png``: backprop's time over jax.grad's and torch's
  at every measured case, and its compiled FLOPs and temporary memory over
  jax.grad's (noise-free).
* ``flops_per_s.png``: backprop's achieved FLOP/s against the matmul peak
  measured in the same run.
* ``training_speed``: ``benchmarks/bench_training.py``'s figure, the steady
  epoch and the whole fit of fnn.fit against scikit-learn and a plain loop.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.analysis import PEAK_TARGET, TIME_TOLERANCE, fit_slope, timed

STYLE = {
    "forward": ("black", "o"),
    "backprop": ("tab:red", "s"),
    "backprop_eager": ("tab:pink", "s"),
    "jax_grad": ("tab:blue", "^"),
    "forward_mode": ("tab:purple", "v"),
    "fd_central": ("tab:green", "D"),
    "fd_naive_loop": ("tab:olive", "P"),
    "analytical": ("tab:brown", "*"),
    "torch": ("tab:orange", "X"),
}
DPI = 110


def slope_sweep(rows) -> str:
    sweeps = {r["sweep"] for r in rows}
    return next((s for s in ("width", "iso_work", "depth") if s in sweeps), "")


def _per_method(ax, rows, value, ylabel, title):
    sweep = slope_sweep(rows)
    for method, (color, marker) in STYLE.items():
        rs = sorted(
            (r for r in timed(rows) if r["method"] == method and r["sweep"] == sweep), key=lambda r: r["P"]
        )
        if not rs:
            continue
        ps, vs = [r["P"] for r in rs], [r[value] for r in rs]
        k = fit_slope(ps, vs)
        ax.plot(
            ps, vs, color=color, lw=1.2, label=f"{method} (slope {k:.2f})" if math.isfinite(k) else method
        )
        for r, v in zip(rs, vs):
            hollow = r["status"] == "extrapolated"
            ax.plot(r["P"], v, marker=marker, color=color, ms=6, ls="none", mfc="none" if hollow else color)
    for r in timed(rows):  # the closed form exists at one size only
        if r["method"] == "analytical":
            ax.plot(
                r["P"],
                r[value],
                marker="*",
                ms=11,
                color=STYLE["analytical"][0],
                ls="none",
                label=f"analytical (1-1-1 net, batch {r['batch']})",
            )
    ax.set(xscale="log", yscale="log", xlabel="parameters P", ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def time_vs_params(results, path: Path):
    rows = results["rows"]
    if not slope_sweep(rows):
        return False  # no sweep along P (the graphs grid)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    batch = next((r["batch"] for r in rows if r["sweep"] == slope_sweep(rows)), "")
    _per_method(
        ax,
        rows,
        "time_median_s",
        "seconds per full gradient (median)",
        f"Gradient time vs P ({slope_sweep(rows)} sweep, batch {batch}; hollow = extrapolated)",
    )
    _caption(fig, results)
    _save(fig, path)


def cost_in_forward_passes(results, path: Path):
    rows = results["rows"]
    if not slope_sweep(rows):
        return False
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    _per_method(
        ax,
        rows,
        "rel_forward",
        "time / time of one forward pass",
        "Cost in forward passes: backprop ~ constant, finite differences ~ P",
    )
    _caption(fig, results)
    _save(fig, path)


def backprop_vs_autodiff(results, path: Path):
    table = results["ratios"]
    if not any(math.isfinite(r["time_vs_jax_grad"]) for r in table):
        return False  # no backprop and jax.grad pair was run (--methods)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    ps = [r["P"] for r in table]
    left.plot(
        ps,
        [r["paired_time_vs_jax_grad"] for r in table],
        "s",
        color="tab:blue",
        label="backprop / jax.grad (median of paired runs)",
    )
    left.plot(
        ps,
        [r["time_vs_jax_grad"] for r in table],
        "s",
        mfc="none",
        color="tab:blue",
        label="backprop / jax.grad (ratio of medians)",
    )
    left.plot(
        ps, [r["time_vs_torch"] for r in table], "X", color="tab:orange", label="backprop / torch eager"
    )
    if any(math.isfinite(r.get("paired_eager_vs_jax_grad", math.nan)) for r in table):
        left.plot(
            ps,
            [r.get("paired_eager_vs_jax_grad", math.nan) for r in table],
            "o",
            mfc="none",
            color="tab:pink",
            label="eager fnn.backprop call / jax.grad (paired)",
        )
        left.plot(
            ps,
            [r.get("eager_vs_torch", math.nan) for r in table],
            "x",
            color="tab:pink",
            label="eager fnn.backprop call / torch eager",
        )
    left.axhline(1.0, color="black", lw=0.8)
    left.axhline(TIME_TOLERANCE, color="grey", lw=0.8, ls="--", label=f"{TIME_TOLERANCE} tolerance")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="parameters P (all cases)",
        ylabel="time ratio (< 1: backprop faster)",
        title="Step time relative to peers",
    )
    left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    right.plot(ps, [r["flops_vs_jax_grad"] for r in table], "o", color="tab:red", label="compiled FLOPs")
    right.plot(
        ps,
        [r["temp_vs_jax_grad"] for r in table],
        "D",
        mfc="none",
        color="tab:green",
        label="temporary memory",
    )
    right.axhline(1.0, color="black", lw=0.8)
    right.set(
        xscale="log",
        xlabel="parameters P (all cases)",
        ylabel="backprop / jax.grad",
        title="XLA cost analysis (noise-free)",
    )
    right.legend(fontsize=7)
    right.grid(True, alpha=0.3)
    _caption(fig, results)
    _save(fig, path)


def flops_per_s(results, path: Path):
    table = [r for r in results["ratios"] if math.isfinite(r["flops_per_s"])]
    if not table:
        return False  # backprop was not run (--methods)
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for sweep, marker in (
        ("single_unit", "*"),
        ("width", "s"),
        ("depth", "^"),
        ("batch", "o"),
        ("iso_work", "D"),
        ("residual", "v"),
        ("cascade", "P"),
    ):
        rs = [r for r in table if r["sweep"] == sweep]
        if rs:
            ax.plot(
                [r["flops"] for r in rs],
                [r["flops_per_s"] for r in rs],
                marker,
                color="tab:red",
                label=f"backprop, {sweep} sweep",
                mfc="none" if sweep == "depth" else "tab:red",
            )
    order = sorted(table, key=lambda r: r["flops"])
    fl, pk = [r["flops"] for r in order], [r["peak_flops_per_s"] for r in order]
    ax.plot(fl, pk, "-", color="black", lw=1, label="matmul peak, timed in the same rounds")
    ax.plot(
        fl, [PEAK_TARGET * p for p in pk], "--", color="grey", lw=1, label=f"{PEAK_TARGET:.0%} of that peak"
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="FLOPs per gradient (XLA cost analysis)",
        ylabel="achieved FLOP/s",
        title="Backprop's achieved FLOP/s",
    )
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    _caption(fig, results)
    _save(fig, path)


def training_speed(doc, path: Path):
    """Bars of the steady epoch (ms) and the whole fit (s) per contender; dashed: the targets (an epoch 4x
    faster than scikit-learn's, a whole fit no slower)."""
    from matplotlib.patches import Patch

    res, fresh = doc["results"], doc.get("fresh_process") or {}
    names = list(res)
    sk = "sklearn MLPClassifier"
    colors = [
        "tab:red" if n.startswith("fnn") else "tab:blue" if n.startswith("jax") else "tab:green"
        for n in names
    ]
    rows = range(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    epoch = [1e3 * res[n]["epoch_s"] for n in names]
    left.barh(rows, epoch, color=colors)
    for r, v in zip(rows, epoch):
        left.text(v, r, f" {v:.2f}", va="center", fontsize=8)
    target = left.axvline(epoch[names.index(sk)] / 4, color="black", ls="--", lw=1)
    left.set(
        yticks=list(rows),
        yticklabels=names,
        xlim=(0, 1.15 * max(epoch)),
        xlabel="ms per epoch (median)",
        title="Steady-state epoch",
    )
    left.legend([target], ["4x faster than scikit-learn"], fontsize=7, loc="lower right")
    height, widest = 0.4, 0.0
    for shift, source, hatch in ((-height / 2, res, None), (height / 2, fresh, "//")):
        for r, n in zip(rows, names):
            if n in source:
                v = source[n]["whole_fit_s"]
                widest = max(widest, v)
                right.barh(r + shift, v, height, color=colors[r], hatch=hatch, edgecolor="white")
                right.text(v, r + shift, f" {v:.2f}", va="center", fontsize=7)
    same = right.axvline(res[sk]["whole_fit_s"], color="black", ls="--", lw=1)
    right.set(
        yticks=list(rows),
        yticklabels=[""] * len(names),
        xlim=(0, 1.15 * widest),
        xlabel="seconds (median), compile included",
        title=f"Whole fit ({doc['benchmark'].split(',')[-1].strip()})",
    )
    right.legend(
        [Patch(color="grey"), Patch(facecolor="grey", hatch="//", edgecolor="white"), same],
        ["in the benchmark's process", "in a new process", "scikit-learn, in process"],
        fontsize=7,
        loc="lower right",
    )
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    _caption(fig, doc)
    _save(fig, path)


def _caption(fig, results):
    m = results["machine"]
    fig.text(
        0.01,
        0.005,
        f"{m['cpu']}, {m['cores']} cores, {m['device_kind']}; jax {m['jax_version']}; "
        f"{results['dtype']}, matmul precision {results.get('matmul_precision', 'JAX default')}",
        fontsize=6,
        color="grey",
    )


def _save(fig, path: Path):
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


PLOTS = {
    "time_vs_params.png": time_vs_params,
    "cost_in_forward_passes.png": cost_in_forward_passes,
    "backprop_vs_autodiff.png": backprop_vs_autodiff,
    "flops_per_s.png": flops_per_s,
}


def plot_all(results: dict, out: Path) -> list[Path]:
    """Draw every figure the results have the methods for; return the paths written."""
    return [out / name for name, draw in PLOTS.items() if draw(results, out / name) is not False]
