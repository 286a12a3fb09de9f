"""One compiled optimizer step of each training method, timed against one gradient.

    results = benchmarks.steps.run(repeats=15)
    benchmarks.steps.save(results, "benchmarks/results/steps_cpu/steps.json")   # and steps.md, steps.png

A step is what ``fnn.fit``'s compiled epoch does once per minibatch (here the
whole training set, one full batch): the loss and gradient by the hand-written
backprop (``fnn.core.backprop.backprop_core``, ``fnn.backprop``'s compiled
core), ``tx.update(grads, state, params, value=loss, grad=grads,
value_fn=objective)`` with an ``fnn.optimizers.Objective`` of the batch, and
``optax.apply_updates``, in one ``jax.jit`` program. As in ``fnn.fit``, a
method chosen by name updates one flat vector of all parameters and a
transform given as an object (``fnn.optimizers.scg(curvature="gnvp")``) sees
the params' tree.

The unit of cost is one gradient: a jitted ``backprop_core`` on the same batch
at the starting params. Each method's step is compiled, run ``warmup`` times
unmeasured, then timed ``repeats`` times; every timed call is a *further*
step of the method's own run (its params and state carried on), so that the
adaptive methods are measured on the steps they really take (Hessian-free's CG
iterations and L-BFGS's line search vary from step to step). All contenders
of a case, the gradient included, run in interleaved rounds, each round in a
fresh random order (``fnn.scale.timing.time_interleaved``); the ratio to the
gradient is the paired one (median over rounds of the two times taken in the
same round, ``fnn.scale.timing.paired_ratio``), i.e. the step's cost in
gradient-equivalents. For Hessian-free the CG iterations of every measured
step are read from its state (``cg_iterations``); a step costs about one
gradient, one curvature pass and ``1 + i`` products of about 2 gradients each,
plus one loss per backtracking and line-search try (``fnn.optim.hessian_free``);
each measured step's time over its round's gradient, divided by ``1 + i`` of
that step, gives the cost of one CG iteration in gradients (the median over
the steps is reported; ``i`` varies from step to step, so the step's median
ratio and the mean ``i`` need not match). Where ``i`` varies (its largest at
least twice its smallest), a least-squares line through the steps,
``step / gradient = fixed + per_iteration * i`` (``cg_fit_gradients``),
splits a step's cost into its fixed part and the marginal cost of one CG
iteration. Every other method's step does a fixed amount of work, except
Levenberg-Marquardt's and L-BFGS's, whose tries of ``mu`` and line-search
evaluations vary from step to step.

Cases: digits 64-128-128-10 relu/softmax with cross-entropy on the 1,347
training examples (75/25 stratified split, standardised), and a regression
MLP 64-32-1 tanh/identity with mse on the same inputs, its target the
standardised sum of each image's pixels, so that Levenberg-Marquardt (mse
only) runs too. Methods: adam, levenberg_marquardt (mse case only),
scg (finite differences, MATLAB's), scg(gnvp), hessian_free, kfac (when
registered) and lbfgs. float32. ``synthetic_case`` makes a classifier of any
size on one full batch of Gaussian inputs (the GPU script's ``second_order``
check runs MNIST-shaped ones at batch 4096).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

METHODS = (
    "adam",
    "levenberg_marquardt",
    "scg(finite_difference)",
    "scg(gnvp)",
    "hessian_free",
    "kfac",
    "lbfgs",
)


class Case(NamedTuple):
    name: str
    net: object  # an fnn.MLP
    x: jax.Array
    y: jax.Array  # converted for the compiled core (one-hot for cross-entropy)


def transforms(net) -> dict[str, tuple[Callable, bool]]:
    """``{method: (build, named)}`` for ``net``: ``build()`` gives the optax transform; ``named``: chosen by
    name in ``fnn.fit`` (its params one flat vector) rather than given as an object (the params' tree).
    ``kfac`` only once it is registered."""
    from fnn import optimizers

    made = {
        "adam": (lambda: optimizers.get("adam"), True),
        "levenberg_marquardt": (lambda: optimizers.get("levenberg_marquardt"), True),
        "scg(finite_difference)": (lambda: optimizers.get("scg"), True),
        "scg(gnvp)": (lambda: optax.with_extra_args_support(optimizers.scg(curvature="gnvp")), False),
        "hessian_free": (lambda: optimizers.get("hessian_free"), True),
    }
    if "kfac" in optimizers.NAMES:
        made["kfac"] = (lambda: optimizers.get("kfac"), True)
    made["lbfgs"] = (lambda: optimizers.get("lbfgs"), True)
    return made


def synthetic_case(hidden, batch: int, n_in: int = 784, n_classes: int = 10, seed: int = 0) -> Case:
    """A relu/softmax classifier ``n_in-hidden-n_classes`` with cross-entropy on one full batch of Gaussian
    inputs and uniform labels (MNIST's shape by default): a step's cost, at sizes no bundled set has."""
    import fnn
    from fnn.core.validation import prepare

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_in)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=batch).astype(np.int32)
    net = fnn.MLP((n_in, *hidden, n_classes), activation="relu", output="softmax", loss="cross_entropy")
    xc, yc = prepare(net, fnn.init(jax.random.key(0), net), x, labels)
    sizes = "-".join(map(str, net.sizes))
    return Case(f"synthetic {sizes} relu/softmax, cross-entropy, full batch {batch}", net, xc, yc)


def cases(tiny: bool = False) -> list[Case]:
    """The digits classifier and the mse regression net (``tiny``: 64 examples, narrow nets, for the
    tests)."""
    import fnn
    from fnn import data
    from fnn.core.validation import prepare
    from fnn.data import datasets

    train = data.prepare(datasets.load("digits"), test_size=0.25, val_size=0.0, seed=0).train
    x, labels = np.asarray(train.x, np.float32), np.asarray(train.y)
    if tiny:
        x, labels = x[:64], labels[:64]
    hidden_c, hidden_r = ((16,), (8,)) if tiny else ((128, 128), (32,))
    total = x.sum(axis=1, keepdims=True)
    target = ((total - total.mean()) / total.std()).astype(np.float32)
    out = []
    for net, y in (
        (fnn.MLP((64, *hidden_c, 10), activation="relu", output="softmax", loss="cross_entropy"), labels),
        (fnn.MLP((64, *hidden_r, 1), activation="tanh", output="identity", loss="mse"), target),
    ):
        params = fnn.init(jax.random.key(0), net)
        xc, yc = prepare(net, params, x, y)
        sizes = "-".join(map(str, net.sizes))
        what = (
            f"digits {sizes} relu/softmax, cross-entropy"
            if net.loss == "cross_entropy"
            else f"digits pixel sums {sizes} tanh/identity, mse"
        )
        out.append(Case(f"{what}, full batch {x.shape[0]}", net, xc, yc))
    return out


def make_step(net, tx, unravel=None):
    """The jitted ``step(p, state, x, y) -> (p, state, loss)`` of ``fnn.fit``'s epoch: backprop, ``tx.update``
    with the Objective, ``optax.apply_updates``. ``unravel``: ``p`` is one flat vector (a named optimizer)."""
    from fnn.core.backprop import backprop_core
    from fnn.training.objective import MinibatchObjective

    to_tree = unravel or (lambda p: p)

    def step(p, state, x, y):
        loss, grads = backprop_core(net, to_tree(p), x, y)
        if unravel is not None:
            grads = ravel_pytree(grads)[0]
        objective = MinibatchObjective(net, x, y, unravel)
        updates, state = tx.update(grads, state, p, value=loss, grad=grads, value_fn=objective)
        return optax.apply_updates(p, updates), state, loss

    return jax.jit(step)


class _Run:
    """One method's run on a case: its compiled step, and its params and state carried from call to call."""

    def __init__(self, case: Case, tx, flat: bool):
        params = case.net.init(jax.random.key(0))
        flat_params, unravel = ravel_pytree(params)
        self.p = flat_params if flat else params
        self.state = jax.jit(tx.init)(self.p)
        start = time.perf_counter()
        self.step = (
            make_step(case.net, tx, unravel if flat else None)
            .lower(self.p, self.state, case.x, case.y)
            .compile()
        )
        self.compile_s = time.perf_counter() - start
        self.x, self.y, self.states, self.losses = case.x, case.y, [], []

    def __call__(self):
        self.p, self.state, loss = jax.block_until_ready(self.step(self.p, self.state, self.x, self.y))
        self.states.append(self.state)
        self.losses.append(loss)


def _prepare(case: Case, build, named: bool) -> _Run:
    """The method's run, flat like ``fnn.fit``'s named optimizers; a transform that will not take one flat
    vector gets the params' tree."""
    if not named:
        return _Run(case, build(), False)
    try:
        return _Run(case, build(), True)
    except Exception:
        return _Run(case, build(), False)


def run_case(case: Case, repeats: int, warmup: int = 2, seed: int = 0, methods=None) -> dict:
    """Every method's step and the gradient on one case, interleaved; the row of the results."""
    from fnn import optimizers
    from fnn.core.backprop import backprop_core
    from fnn.scale.timing import paired_ratio, time_interleaved

    net = case.net
    params = net.init(jax.random.key(0))
    gradient = jax.jit(functools.partial(backprop_core, net)).lower(params, case.x, case.y).compile()
    calls, runs, skipped = (
        {"gradient": lambda: jax.block_until_ready(gradient(params, case.x, case.y))},
        {},
        {},
    )
    for name, (build, named) in transforms(net).items():
        if methods is not None and name not in methods:
            continue
        if name in optimizers.NAMES and optimizers.spec(name).least_squares and net.loss != "mse":
            skipped[name] = f"needs loss='mse', the case's is {net.loss!r}"
            continue
        runs[name] = _prepare(case, build, named)
        calls[name] = runs[name]
    for call in calls.values():
        for _ in range(warmup):
            call()
    for r in runs.values():  # the warm-up steps are not the measured ones
        r.states.clear()
        r.losses.clear()
    timings = time_interleaved(calls, repeats, seed)
    g = timings["gradient"]
    out = {}
    for name, r in runs.items():
        t = timings[name]
        row = {
            "median_s": t.median_s,
            "min_s": t.min_s,
            "max_s": t.max_s,
            "samples_s": list(t.samples),
            "gradients": paired_ratio(t, g),
            "ratio_of_medians": t.median_s / g.median_s,
            "compile_s": r.compile_s,
            "params": "flat vector" if not isinstance(r.p, (list, dict)) else "tree",
            "loss_first": float(r.losses[0]),
            "loss_last": float(r.losses[-1]),
        }
        found = [optimizers.find_state(s, optimizers.HessianFreeState) for s in r.states]
        cg = [int(f.cg_iterations) for f in found if f is not None]
        if cg:  # the i-th measured step is the i-th round's: its time over that round's gradient, its own i
            per_step = [a / b for a, b in zip(t.samples, g.samples)]
            row["cg_iterations"] = cg
            row["cg_iterations_mean"] = statistics.fmean(cg)
            row["cg_iterations_median"] = statistics.median(cg)
            row["gradients_per_step"] = per_step
            # what one CG iteration (one product, ~2 gradients) costs with the step's fixed work spread over
            # 1 + i: the median over the measured steps of (step / gradient) / (1 + i)
            row["gradients_per_cg_iteration"] = statistics.median(r / (1 + i) for r, i in zip(per_step, cg))
            # spread enough to split a step's cost into fixed + per iteration
            if max(cg) >= 2 * max(min(cg), 1):
                slope, fixed = np.polyfit(np.asarray(cg, float), np.asarray(per_step), 1)
                row["cg_fit_gradients"] = {"fixed": float(fixed), "per_iteration": float(slope)}
        out[name] = row
    return {
        "case": case.name,
        "sizes": list(net.sizes),
        "loss": net.loss,
        "n_examples": int(case.x.shape[0]),
        "P": int(net.n_params),
        "gradient_s": g.median_s,
        "gradient": {
            "median_s": g.median_s,
            "min_s": g.min_s,
            "max_s": g.max_s,
            "samples_s": list(g.samples),
        },
        "methods": out,
        "skipped": skipped,
    }


def _load() -> list[float]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def run(
    repeats: int = 15,
    warmup: int = 2,
    seed: int = 0,
    tiny: bool = False,
    methods=None,
    progress=print,
    case_list=None,
    stop=None,
) -> dict:
    """Every case (see the module docstring; ``case_list``: these instead); the JSON document.
    ``seed``: of the rounds' orders. ``stop(rows)``, after each case: true stops before the next
    (``"complete"``: whether every case ran)."""
    from benchmarks import machine

    load, start, rows = _load(), time.perf_counter(), []
    todo = cases(tiny) if case_list is None else list(case_list)
    for i, case in enumerate(todo):
        if rows and stop is not None and stop(rows):
            break
        rows.append(run_case(case, repeats, warmup, seed + i, methods))
        if progress:
            progress(
                f"{case.name}: gradient {1e3 * rows[-1]['gradient_s']:.3f} ms; "
                + ", ".join(f"{m} {r['gradients']:.1f}x" for m, r in rows[-1]["methods"].items())
            )
    return {
        "benchmark": "one compiled optimizer step per method, in gradients",
        "method": __doc__.strip(),
        "machine": machine.describe(jax.devices()[0]),
        "load_average_1_5_15_min": {"before": load, "after": _load()},
        "dtype": "float32",
        "repeats": repeats,
        "warmup": warmup,
        "seed": seed,
        "wall_s": time.perf_counter() - start,
        "cases": rows,
        "complete": len(rows) == len(todo),
    }


def _x(v, digits: int = 1) -> str:
    return "n/a" if not (isinstance(v, (int, float)) and math.isfinite(v)) else f"{v:.{digits}f}"


def table(results: dict) -> str:
    """The results as markdown: the machine, then one line per case and method."""
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, device `{m['device']}`; jax {m['jax_version']}; "
        f"{results['dtype']}; {results['repeats']} interleaved rounds after {results['warmup']} "
        "warm-up steps; "
        f"load average before {_load_text(results, 'before')}, after {_load_text(results, 'after')}.",
        "",
        "| case | P | method | step (median) | gradient (median) | step in gradients (paired) | "
        "CG iterations: mean (range) | step in gradients / (1 + CG iterations), median | "
        "fit: fixed + per CG iteration, in gradients |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results["cases"]:
        for name, r in c["methods"].items():
            lines.append(
                f"| {c['case']} | {c['P']:,} | {name} | {1e3 * r['median_s']:.3f} ms | "
                f"{1e3 * c['gradient_s']:.3f} ms | {_x(r['gradients'])} | "
                f"{_cg(r)} | "
                f"{_x(r.get('gradients_per_cg_iteration', math.nan), 2)} | {_fit(r)} |"
            )
        for name, why in c["skipped"].items():
            lines.append(f"| {c['case']} | {c['P']:,} | {name} | not run: {why} | | | | | |")
    return "\n".join(lines) + "\n"


def _cg(r: dict) -> str:
    if "cg_iterations" not in r:
        return "n/a"
    return f"{r['cg_iterations_mean']:.1f} ({min(r['cg_iterations'])}-{max(r['cg_iterations'])})"


def _fit(r: dict) -> str:
    f = r.get("cg_fit_gradients")
    return "n/a" if f is None else f"{f['fixed']:.1f} + {f['per_iteration']:.2f} i"


def _load_text(results: dict, when: str) -> str:
    v = results["load_average_1_5_15_min"][when]
    return "/".join(f"{a:.2f}" for a in v) if v else "n/a"


def draw(results: dict, path) -> None:
    """Each method's step in gradients, one group of bars per case (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = {n for c in results["cases"] for n in c["methods"]}
    names = [n for n in METHODS if n in ran] + sorted(ran - set(METHODS))
    fig, ax = plt.subplots(figsize=(10, 4.4))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(results["cases"]))]
        ys = [c["methods"].get(name, {}).get("gradients", math.nan) for c in results["cases"]]
        ax.bar(xs, ys, width, label=name)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(
        range(len(results["cases"])),
        [c["case"].replace(", full", "\nfull") for c in results["cases"]],
        fontsize=8,
    )
    ax.set(
        yscale="log",
        ylabel="one step / one gradient (paired median)",
        title="One compiled optimizer step, in gradients",
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    m = results["machine"]
    fig.text(
        0.01,
        0.005,
        f"{m['cpu']}, {m['cores']} cores, {m['device_kind']}; jax {m['jax_version']}; float32",
        fontsize=6,
        color="grey",
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(results: dict, path) -> list[str]:
    """The JSON at ``path`` (e.g. ``.../steps.json``), the markdown table and the figure beside it
    (``steps.md``, ``steps.png``); the paths."""
    import json

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    base = os.path.splitext(path)[0]
    paths = [path, base + ".md", base + ".png"]
    with open(paths[0], "w") as fh:
        json.dump(results, fh, indent=1)
    with open(paths[1], "w") as fh:
        fh.write(table(results))
    draw(results, paths[2])
    return paths
