"""Curvature products timed: fnn's hand-written R-operator against JAX's and PyTorch's autodiff.

    results = benchmarks.curvature.run("quick")
    benchmarks.curvature.save(results, "out")   # results.csv, results.json, summary.md, PNGs

Every contender multiplies the same matrix by the same direction ``v``, at the
same parameters and data (float32, one-hot targets for the JAX losses), and is
compiled once (``lower().compile()``) before it is timed:

===============  ===============================================================  ==============
contender        how                                                              returns
===============  ===============================================================  ==============
backprop         ``fnn.backprop``: one gradient, the unit of cost                 loss, grads
hvp              ``fnn.hvp``: forward, backward, R-forward, R-backward by hand    loss, grads, Hv
fwd_over_rev     ``jax.jvp(jax.grad(loss), (w,), (v,))``                          grads, Hv
rev_over_rev     ``jax.grad(w -> <jax.grad(loss)(w), v>)``                         Hv, grads
fd_central       ``(g(w + eps v) - g(w - eps v)) / (2 eps)``, ``g = fnn.backprop``  Hv + O(eps^2)
torch            ``torch.func.jvp(torch.func.grad(loss), (w,), (v,))``            grads, Hv
hvp_cached       ``c.hvp(v)``, ``c = fnn.curvature(net, params, x, y)`` made once  Hv
gnvp_cached      ``c.gnvp(v)``: R-forward, ``H_L``, the plain backward pass         Gv
gnvp_linearized  ``jax.linearize`` of ``w -> z_out`` made once; per ``v`` its JVP,  Gv
                 ``H_L`` in the logits (``jax.jvp`` of ``jax.grad`` of the loss
                 there), and its transpose (``jax.linear_transpose``)
===============  ===============================================================  ==============

``loss`` is ``fnn.core.forward.loss_core``; ``G = J^T H_L J`` with
``J = dz_out/dw``. The direction is Gaussian, scaled so that ``||v|| = ||w||``:
``eps`` is then the relative size of the finite differences' step.

All contenders of a case run in interleaved rounds, each round in a fresh
random order (``fnn.scale.timing.time_interleaved``). A cost "in gradients" is
the paired ratio to ``backprop`` (the median over rounds of the two times taken
in the same round), and ``hvp / fwd_over_rev`` and ``gnvp_cached /
gnvp_linearized`` are paired ratios too. Every product is checked against the
hand-written one (``rel_diff``: ``||p - p_ref|| / ||p_ref||``), so a fast wrong
answer cannot pass. ``fd_errors`` measures the finite differences' relative
error against the exact ``H v`` (``fnn.hvp`` in float64) as a function of eps.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import fnn
from benchmarks import torch_peer
from benchmarks.grids import Case, cascade_sweep, classifier, residual_sweep
from benchmarks.machine import describe, select_device
from benchmarks.methods import Prepared, compile_timed
from benchmarks.xla_cost import compiled_cost
from fnn.core import activations, losses
from fnn.core.forward import loss_core
from fnn.scale.timing import paired_ratio, time_interleaved, wall_time

HESSIAN = ("hvp", "fwd_over_rev", "rev_over_rev", "fd_central", "torch", "hvp_cached")
GAUSS_NEWTON = ("gnvp_cached", "gnvp_linearized")
CONTENDERS = ("backprop", *HESSIAN, *GAUSS_NEWTON)
REFERENCE = {**dict.fromkeys(HESSIAN, "hvp"), **dict.fromkeys(GAUSS_NEWTON, "gnvp_cached")}
CHECKED = tuple(m for m, ref in REFERENCE.items() if m != ref)  # the products checked against another
MATMUL_PRECISION = "highest"  # float32 products on a GPU too, as PyTorch's peer computes them
FD_EPS = 1e-3  # the timed finite differences' relative step (``fd_errors`` shows the error at each)
EPS_SWEEP = tuple(10.0**-k for k in np.arange(1.0, 7.01, 0.5))
TARGETS = {"hvp_vs_fwd_over_rev": 1.0, "hvp_gradients": 2.2, "gnvp_vs_linearized": 1.0, "gnvp_gradients": 1.5}


# --------------------------------------------------------------------------- sizes


class Budget(NamedTuple):
    seconds_per_case: float  # timing time per case, all contenders together; sets the rounds
    min_rounds: int
    max_rounds: int
    thread_trials: int = 7  # torch's calls on 1 thread and on all cores, to pick the faster


BUDGETS = {
    "tiny": Budget(0.3, 3, 15, 1),
    "quick": Budget(3.0, 9, 101),
    "full": Budget(30.0, 31, 401),
    "gpu": Budget(4.0, 21, 301),
}
GRIDS = tuple(BUDGETS)


def chain(hidden, batch: int, n_in: int, n_out: int = 10) -> Case:
    """A tanh classifier ``n_in-hidden-n_out``, softmax and cross-entropy."""
    return Case("chain", classifier(tuple(hidden), "tanh", n_in, n_out), batch)


def residual(depth: int, batch: int, width: int = 256, n_in: int = 64, n_out: int = 10) -> Case:
    """``Graph.residual``: ``depth`` tanh nodes of ``width`` units, softmax and cross-entropy."""
    return residual_sweep((depth,), width, (batch,), n_in, n_out, activation="tanh")[0]


def cascade(sizes, batch: int) -> Case:
    """``Graph.cascade``: tanh layers each reading ``x`` and all earlier layers, softmax and cross-entropy."""
    return cascade_sweep([tuple(sizes)], (batch,), output="softmax", loss="cross_entropy")[0]


def grid(name: str) -> list[Case]:
    """The named grid's cases, chains then ``fnn.Graph``s. ``tiny``: the tests' (seconds); ``quick``: about a
    minute on 2 CPU cores; ``full``: the gradient grid's ``trained`` sizes (with tanh), the
    300-500-500-500-10 and 784-1024-1024-10 nets measured before, residual and cascade nets (about 10
    minutes on 2 CPU cores); ``gpu``: a real subset for a GPU, up to 784-4096-4096-4096-10 at batch 4096."""
    if name == "tiny":  # a chain, and a graph whose nodes read several inputs
        return [chain((16, 16), 16, n_in=8, n_out=3), cascade((6, 8, 8, 3), 16)]
    if name == "quick":
        return [
            chain((128, 128), 64, n_in=64),
            chain((256, 256), 128, n_in=784),
            residual(4, 64),
            cascade((64, 128, 128, 128, 10), 64),
        ]
    if name == "full":
        return [
            chain((128, 128), 64, n_in=64),
            chain((128,), 64, n_in=784),
            chain((256, 256), 128, n_in=784),
            chain((512, 512), 256, n_in=784),
            chain((500, 500, 500), 384, n_in=300),
            chain((1024, 1024), 256, n_in=784),
            residual(4, 64),
            residual(8, 256),
            cascade((64, 128, 128, 128, 10), 64),
            cascade((64, *(256,) * 6, 10), 64),
        ]
    if name == "gpu":
        return [
            chain((128, 128), 64, n_in=64),
            chain((500, 500, 500), 384, n_in=300),
            chain((1024, 1024), 256, n_in=784),
            chain((1024, 1024), 4096, n_in=784),
            chain((4096,) * 3, 4096, n_in=784),
            residual(8, 1024),
            cascade((64, *(256,) * 6, 10), 1024),
        ]
    raise ValueError(f"unknown grid {name!r}; expected one of {list(GRIDS)}")


def sweep_case(grid_name: str) -> Case:
    """The small net whose finite differences are measured at every eps."""
    return grid("tiny" if grid_name == "tiny" else "quick")[0]


# --------------------------------------------------------------------------- the point and the products


def tree_dot(a, b) -> jax.Array:
    """``<a, b>`` over all leaves of two params-shaped trees."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@jax.jit
def direction(params, key):
    """A Gaussian direction scaled to ``||v|| = ||w||``: ``w + eps v`` moves ``w`` by ``eps`` relatively."""
    flat, unravel = ravel_pytree(params)
    g = jax.random.normal(key, flat.shape, flat.dtype)  # one draw: a threefry per leaf compiles for seconds
    return unravel(g * jnp.linalg.norm(flat) / jnp.linalg.norm(g))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _draw(net, batch: int, key):
    """Params (glorot, float32), inputs, one-hot targets, labels and a direction in one program:
    op by op, each draw would compile a program of its own, seconds per case."""
    k_params, k_x, k_y, k_v = jax.random.split(key, 4)
    params = net.init(k_params)
    x, labels = jax.random.normal(k_x, (batch, net.n_in)), jax.random.randint(k_y, (batch,), 0, net.n_out)
    return params, x, jax.nn.one_hot(labels, net.n_out, dtype=x.dtype), labels, direction(params, k_v)


def point(case: Case, device, seed: int = 0):
    """``(params, x, y, labels, v)`` of a classifier's case: ``y`` one-hot (what the JAX losses take, as
    ``fnn``'s own programs make it), ``labels`` for torch."""
    if losses.kind(case.net.loss) is not losses.Kind.LABELS:
        raise ValueError(
            f"the curvature benchmark's cases are classifiers; {case.name} has loss {case.net.loss!r}"
        )
    return jax.device_put(_draw(case.net, case.batch, jax.random.key(seed)), device)


def fwd_over_rev(net, params, v, x, y):
    """``(grads, H v)``: the JVP of JAX's gradient along ``v``."""
    return jax.jvp(lambda w: jax.grad(loss_core, argnums=1)(net, w, x, y), (params,), (v,))


def rev_over_rev(net, params, v, x, y):
    """``(H v, grads)``: the gradient of ``<grad L(w), v>``, its gradient kept as the aux output."""

    def along(w):
        g = jax.grad(loss_core, argnums=1)(net, w, x, y)
        return tree_dot(g, v), g

    return jax.grad(along, has_aux=True)(params)


def fd_product(net, params, v, x, y, eps):
    """``(g(w + eps v) - g(w - eps v)) / (2 eps)``, ``g`` the hand-written gradient: ``H v + O(eps^2)``."""
    step = lambda s: jax.tree_util.tree_map(lambda w, d: w + s * d, params, v)
    up, down = fnn.backprop(net, step(eps), x, y)[1], fnn.backprop(net, step(-eps), x, y)[1]
    return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), up, down)


def logits_of(net, params, x):
    """``z_out``, the output's pre-activation: the map ``J`` differentiates."""
    return net.output_of(net.forward(params, x))[0]


def loss_of_logits(net, z, y):
    """The batch-mean loss as a function of ``z_out``, whose Hessian is ``H_L``."""
    return losses.mean_loss(net.output, net.loss, z, activations.get(net.output).fn(z), y)


def linearized_gnvp(net, linear, z, y, v):
    """``J^T H_L J v`` from ``linear = jax.linearize(w -> z_out)[1]``: its JVP, ``H_L`` by forward over
    reverse in the logits, and the transpose of the linear map."""
    jv = linear(v)
    hjv = jax.jvp(lambda t: jax.grad(loss_of_logits, argnums=1)(net, t, y), (z,), (jv,))[1]
    return jax.linear_transpose(linear, v)(hjv)[0]


# --------------------------------------------------------------------------- preparing the contenders


class Contender(NamedTuple):
    prepared: Prepared
    product: Callable  # the call's result -> the product, in fnn's graph layout (``as_graph``)


def _as_graph_tree(net, tree):
    return torch_peer.as_graph(net, tree)[1]


def _compiled(net, fn, args, pick) -> Contender:
    """``fn(*args)`` jitted and compiled once; ``pick`` takes the product out of its result."""
    compiled, seconds = compile_timed(jax.jit(fn), *args)
    cost = compiled_cost(compiled)
    call = lambda: jax.block_until_ready(compiled(*args))
    return Contender(
        Prepared(call, seconds, net.n_params, cost["flops"], cost["temp_bytes"]),
        lambda out: _as_graph_tree(net, pick(out)),
    )


def _torch(net, params, v, x, labels, device_kind: str, thread_trials: int) -> Contender:
    call = torch_peer.hvp_step(net, params, v, x, labels, device_kind, "float32")
    threads = torch_peer.fastest_threads(call, thread_trials) if device_kind == "cpu" else None
    note = "torch.func jvp over grad" + (f", {threads} thread(s)" if threads else "")
    return Contender(
        Prepared(call, math.nan, net.n_params, math.nan, math.nan, note),
        lambda out: torch_peer.as_arrays(out[1]),
    )


def prepare(net, params, x, y, labels, v, device_kind: str, thread_trials: int = 7) -> tuple[dict, dict]:
    """``({name: Contender}, {name: why skipped})`` for one point."""
    c = fnn.curvature(net, params, x, y)
    z, linear = jax.jit(lambda w: jax.linearize(lambda u: logits_of(net, u, x), w))(params)
    data = (params, v, x, y)
    eps = jnp.asarray(FD_EPS, x.dtype)
    made = {
        "backprop": _compiled(
            net, lambda p, x, y: fnn.backprop(net, p, x, y), (params, x, y), lambda o: o[1]
        ),
        "hvp": _compiled(net, lambda p, v, x, y: fnn.hvp(net, p, x, y, v), data, lambda o: o[2]),
        "fwd_over_rev": _compiled(net, lambda *a: fwd_over_rev(net, *a), data, lambda o: o[1]),
        "rev_over_rev": _compiled(net, lambda *a: rev_over_rev(net, *a), data, lambda o: o[0]),
        "fd_central": _compiled(net, lambda *a: fd_product(net, *a), (*data, eps), lambda o: o),
        "hvp_cached": _compiled(net, lambda c, v: c.hvp(v), (c, v), lambda o: o),
        "gnvp_cached": _compiled(net, lambda c, v: c.gnvp(v), (c, v), lambda o: o),
        "gnvp_linearized": _compiled(
            net, lambda lin, z, y, v: linearized_gnvp(net, lin, z, y, v), (linear, z, y, v), lambda o: o
        ),
    }
    skipped = {}
    try:
        made["torch"] = _torch(net, params, v, x, labels, device_kind, thread_trials)
    except torch_peer.Unsupported as err:
        skipped["torch"] = str(err)
    return {name: made[name] for name in CONTENDERS if name in made}, skipped


def rel_diff(a, b) -> float:
    """``||a - b|| / ||b||`` over all leaves (float64 on the host)."""
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    num = den = 0.0
    for p, q in pairs:
        p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
        num, den = num + float(np.sum((p - q) ** 2)), den + float(np.sum(q**2))
    return math.sqrt(num / den) if den > 0 else math.nan


# --------------------------------------------------------------------------- one case


ROW_FIELDS = (
    "method",
    "status",
    "reference",
    "sweep",
    "case",
    "sizes",
    "P",
    "batch",
    "time_median_s",
    "time_min_s",
    "time_max_s",
    "rounds",
    "gradients",
    "paired_vs_reference",
    "paired_lo",
    "paired_hi",
    "compile_s",
    "flops",
    "flops_gradients",
    "temp_bytes",
    "rel_diff",
    "dtype",
    "device",
    "device_kind",
    "jax_version",
    "note",
)


def paired_interval(a, b, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free ~95% interval of the median of the per-round ratios ``a_i / b_i``: the
    order statistics ``n/2 -+ z sqrt(n)/2`` of the sorted ratios (the binomial's normal approximation)."""
    r = sorted(x / y for x, y in zip(a.samples, b.samples) if y > 0)
    if len(r) < 3:
        return math.nan, math.nan
    half = z * math.sqrt(len(r)) / 2
    return r[max(0, math.floor(len(r) / 2 - half))], r[min(len(r) - 1, math.ceil(len(r) / 2 + half) - 1)]


def _rounds(calls: dict, budget: Budget) -> int:
    """Rounds so that all contenders of a case take about ``budget.seconds_per_case``."""
    per_round = sum(wall_time(call) for call in calls.values())
    return max(budget.min_rounds, min(budget.max_rounds, int(budget.seconds_per_case / max(per_round, 1e-9))))


def _row(base: dict, name: str, p: Prepared, t, timings: dict, flops_unit: float, diff: float) -> dict:
    ref = "backprop" if name == "backprop" else REFERENCE[name]
    against = "fwd_over_rev" if name == "hvp" else "gnvp_linearized" if name == "gnvp_cached" else ref
    lo, hi = paired_interval(t, timings[against]) if against in timings else (math.nan, math.nan)
    return {
        **base,
        "method": name,
        "status": "measured",
        "reference": ref,
        "time_median_s": t.median_s,
        "time_min_s": t.min_s,
        "time_max_s": t.max_s,
        "rounds": t.repeats,
        "gradients": paired_ratio(t, timings["backprop"]),
        "paired_vs_reference": paired_ratio(t, timings[against]) if against in timings else math.nan,
        "paired_lo": lo,
        "paired_hi": hi,
        "compile_s": p.compile_s,
        "flops": p.flops,
        "flops_gradients": p.flops / flops_unit,
        "temp_bytes": p.temp_bytes,
        "rel_diff": diff,
        "note": p.note,
    }


def run_case(case: Case, device, budget: Budget, machine: dict, seed: int = 0) -> list[dict]:
    """One row per contender of ``case``: times, cost in gradients, FLOPs and agreement."""
    params, x, y, labels, v = point(case, device, seed=seed)
    contenders, skipped = prepare(case.net, params, x, y, labels, v, machine["device"], budget.thread_trials)
    calls = {name: c.prepared.call for name, c in contenders.items()}
    outputs = {name: call() for name, call in calls.items()}  # first call: allocation, and the products
    products = {name: contenders[name].product(out) for name, out in outputs.items() if name != "backprop"}
    timings = time_interleaved(calls, _rounds(calls, budget), seed=seed)
    base = {
        "sweep": case.sweep,
        "case": case.name,
        "sizes": "-".join(map(str, case.sizes)),
        "P": case.n_params,
        "batch": case.batch,
        "dtype": "float32",
        "device": machine["device"],
        "device_kind": machine["device_kind"],
        "jax_version": machine["jax_version"],
    }
    rows = []
    for name in CONTENDERS:
        if name in skipped:
            rows.append(
                {
                    **dict.fromkeys(ROW_FIELDS, math.nan),
                    **base,
                    "method": name,
                    "status": "skipped",
                    "reference": REFERENCE[name],
                    "rounds": 0,
                    "note": skipped[name],
                }
            )
        elif name in contenders:
            diff = rel_diff(products[name], products[REFERENCE[name]]) if name in REFERENCE else math.nan
            rows.append(
                _row(
                    base,
                    name,
                    contenders[name].prepared,
                    timings[name],
                    timings,
                    contenders["backprop"].prepared.flops,
                    diff,
                )
            )
    return rows


# --------------------------------------------------------------------------- finite differences against eps


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), tree)


@functools.partial(jax.jit, static_argnums=0)
def _sweep_at(net, params, v, x, y, eps):
    """``fnn.hvp``'s ``H v``, forward over reverse's, and the central differences at each ``eps``:
    one program."""
    fd = jax.lax.map(lambda e: fd_product(net, params, v, x, y, e), eps)
    return fnn.hvp(net, params, x, y, v)[2], fwd_over_rev(net, params, v, x, y)[1], fd


def fd_errors(case: Case, device, eps_values=EPS_SWEEP, seed: int = 0) -> dict:
    """The finite differences' ``||fd - Hv|| / ||Hv||`` at each eps, in float32 and float64, against the exact
    ``H v`` (``fnn.hvp`` in float64) at the float32 point; beside it, the float32 ``fnn.hvp``'s and
    forward over reverse's errors, and forward over reverse's in float64."""
    params, x, y, _, v = point(case, device, seed=seed)
    out = {"case": case.name, "P": case.n_params, "eps": list(eps_values)}
    with jax.enable_x64(True):
        hv = {}  # fnn.hvp's product in each dtype; float64's is the exact one
        for name in ("float64", "float32"):  # float64 first: the others are measured against it
            at = _cast((params, v, x, y), jnp.dtype(name))
            hv[name], jax_hv, fd = _sweep_at(case.net, *at, jnp.asarray(eps_values, name))
            out[f"fd_{name}"] = [
                rel_diff(jax.tree_util.tree_map(lambda a: a[k], fd), hv["float64"])
                for k in range(len(eps_values))
            ]
            out[f"fwd_over_rev_{name}"] = rel_diff(jax_hv, hv["float64"])
        out["hvp_float32"] = rel_diff(hv["float32"], hv["float64"])
    out["best_eps"] = {
        name: eps_values[int(np.nanargmin(out[f"fd_{name}"]))] for name in ("float32", "float64")
    }
    return out


# --------------------------------------------------------------------------- the whole run


def ratios(rows) -> list[dict]:
    """Per case: each contender's cost in gradients, and the two paired ratios the targets judge."""
    table = []
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {r["method"]: r for r in rows if r["case"] == case and r["status"] == "measured"}
        first = next(r for r in rows if r["case"] == case)
        get = lambda m, k: by[m][k] if m in by else math.nan
        table.append(
            {
                "case": case,
                "sweep": first["sweep"],
                "P": first["P"],
                "batch": first["batch"],
                "gradient_s": get("backprop", "time_median_s"),
                "gradients": {m: get(m, "gradients") for m in CONTENDERS},
                "flops_gradients": {m: get(m, "flops_gradients") for m in CONTENDERS},
                "hvp_vs_fwd_over_rev": get("hvp", "paired_vs_reference"),
                "hvp_vs_fwd_over_rev_interval": [get("hvp", "paired_lo"), get("hvp", "paired_hi")],
                "gnvp_vs_linearized": get("gnvp_cached", "paired_vs_reference"),
                "gnvp_vs_linearized_interval": [
                    get("gnvp_cached", "paired_lo"),
                    get("gnvp_cached", "paired_hi"),
                ],
                "flops_hvp_vs_fwd_over_rev": get("hvp", "flops") / get("fwd_over_rev", "flops"),
                "flops_gnvp_vs_linearized": get("gnvp_cached", "flops") / get("gnvp_linearized", "flops"),
                "temp_hvp_vs_fwd_over_rev": get("hvp", "temp_bytes") / get("fwd_over_rev", "temp_bytes"),
                "temp_gnvp_vs_linearized": (
                    get("gnvp_cached", "temp_bytes") / get("gnvp_linearized", "temp_bytes")
                ),
                "rel_diff": {m: get(m, "rel_diff") for m in REFERENCE},
            }
        )
    return table


def targets(table) -> list[dict]:
    """Each target, met at every case or not, with the worst case. For the paired ratios, ``clear_misses``
    counts the cases whose ~95% interval lies wholly above the bound (a miss beyond the timing noise)."""
    judged = [
        (
            "hvp <= 1.0x forward over reverse (paired)",
            "hvp_vs_fwd_over_rev",
            lambda r: r["hvp_vs_fwd_over_rev"],
        ),
        ("hvp <= 2.2 gradients", "hvp_gradients", lambda r: r["gradients"]["hvp"]),
        (
            "gnvp from a cached forward <= 1.0x the linearized JAX product (paired)",
            "gnvp_vs_linearized",
            lambda r: r["gnvp_vs_linearized"],
        ),
        (
            "gnvp from a cached forward <= 1.5 gradients",
            "gnvp_gradients",
            lambda r: r["gradients"]["gnvp_cached"],
        ),
    ]
    out = []
    for text, key, value in judged:
        bound = TARGETS[key]
        values = [(value(r), r["case"], r.get(f"{key}_interval")) for r in table if math.isfinite(value(r))]
        if not values:
            out.append(
                {
                    "target": text,
                    "key": key,
                    "bound": bound,
                    "met": None,
                    "worst": math.nan,
                    "detail": "not measured",
                }
            )
            continue
        worst, where, _ = max(values, key=lambda t: t[0])
        missed = [(v, c, ci) for v, c, ci in values if v > bound]
        clear = [c for v, c, ci in missed if ci is not None and ci[0] > bound]
        detail = f"worst {worst:.2f} at {where}"
        if missed:
            detail += f"; over at {len(missed)} of {len(values)}: " + ", ".join(
                f"{c} {v:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") for v, c, ci in missed
            )
            if missed[0][2] is not None:
                detail += f"; 95% interval wholly above {bound} at {len(clear)}"
        out.append(
            {
                "target": text,
                "key": key,
                "bound": bound,
                "met": not missed,
                "worst": worst,
                "clear_misses": clear,
                "detail": detail + _arithmetic(key, table),
            }
        )
    return out


# What XLA counts of each judged product's arithmetic: what its time cannot go below where the
# matmuls dominate (fnn.core.rop, "Cost"), and, against JAX's program, whether the two do the same
# work.
ARITHMETIC = {
    "hvp_gradients": (
        lambda r: r["flops_gradients"]["hvp"],
        "; XLA counts {lo:.2f}-{hi:.2f} gradients of "
        "arithmetic in fnn.hvp (H v with its gradient: 9 matrix products per weight matrix against "
        "the gradient's 3, and no fewer will do; see fnn.core.rop)",
    ),
    "hvp_vs_fwd_over_rev": (
        lambda r: r["flops_hvp_vs_fwd_over_rev"],
        "; FLOPs of fnn.hvp / JAX's program: {lo:.3f}-{hi:.3f}",
    ),
    "gnvp_vs_linearized": (
        lambda r: r["flops_gnvp_vs_linearized"],
        "; FLOPs of c.gnvp / JAX's program: {lo:.3f}-{hi:.3f}",
    ),
}


def _arithmetic(key: str, table) -> str:
    """The ``ARITHMETIC`` note of a target (empty without one or without FLOP counts)."""
    if key not in ARITHMETIC:
        return ""
    value, text = ARITHMETIC[key]
    counts = [value(r) for r in table if math.isfinite(value(r))]
    return text.format(lo=min(counts), hi=max(counts)) if counts else ""


def run(
    grid_name: str = "quick", device="cpu", progress: bool = True, on_case=None, cases=None, seed: int = 0
) -> dict:
    """Every case of the grid (or ``cases``, with the grid's budget) on ``device`` (a kind or a
    ``jax.Device``), then the finite differences at every eps. ``on_case(partial)`` is called after
    each case with the results so far (``"complete": False``); it may raise to stop the run."""
    from benchmarks.runner import _progress

    device = select_device(device) if isinstance(device, str) else device
    budget, cases = BUDGETS[grid_name], grid(grid_name) if cases is None else list(cases)
    about = {
        "benchmark": "curvature",
        "grid": grid_name,
        "dtype": "float32",
        "matmul_precision": MATMUL_PRECISION,
        "machine": describe(device),
        "cases": len(cases),
        "fd_eps": FD_EPS,
        "targets_bounds": TARGETS,
        "load_average": _load(),
    }
    start, rows = time.perf_counter(), []
    with jax.default_matmul_precision(MATMUL_PRECISION), jax.default_device(device):
        for done, case in enumerate(_progress(cases, progress), 1):
            rows.extend(run_case(case, device, budget, about["machine"], seed))
            if on_case is not None:
                on_case(
                    {
                        **about,
                        "rows": rows,
                        "cases_done": done,
                        "wall_s": time.perf_counter() - start,
                        "complete": False,
                    }
                )
        sweep = fd_errors(sweep_case(grid_name), device, seed=seed)
    return analyse(
        {
            **about,
            "rows": rows,
            "cases_done": len(cases),
            "fd_sweep": sweep,
            "wall_s": time.perf_counter() - start,
            "complete": True,
            "load_average": {"start": about["load_average"], "end": _load()},
        }
    )


def _load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (others' work shares its cores)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def analyse(results: dict) -> dict:
    """``results`` with the per-case ratios and the targets."""
    table = ratios(results["rows"])
    return {**results, "ratios": table, "targets": targets(table)}


# --------------------------------------------------------------------------- writing


def save(results: dict, out) -> list[Path]:
    """``results.csv``, ``results.json``, ``summary.md`` and the figures in ``out``; the paths."""
    import csv

    from benchmarks.output import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.csv", out / "results.json", out / "summary.md"]
    with open(paths[0], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows({k: _csv(r[k]) for k in ROW_FIELDS} for r in results["rows"])
    write_json(results, paths[1])
    paths[2].write_text(summary_markdown(results))
    return paths + plot_all(results, out)


def _csv(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _x(v, digits: int = 2) -> str:
    return "n/a" if not (isinstance(v, (int, float)) and math.isfinite(v)) else f"{v:.{digits}f}"


def _ms(seconds: float) -> str:
    return "n/a" if not math.isfinite(seconds) else f"{seconds * 1e3:.3g} ms"


LABELS = {
    "backprop": "fnn.backprop",
    "hvp": "fnn.hvp",
    "fwd_over_rev": "JAX fwd-over-rev",
    "rev_over_rev": "JAX rev-over-rev",
    "fd_central": "central FD of fnn.backprop",
    "torch": "torch.func fwd-over-rev",
    "hvp_cached": "c.hvp (cached)",
    "gnvp_cached": "c.gnvp (cached)",
    "gnvp_linearized": "JAX linearized J^T H J v",
}


def summary_markdown(results: dict) -> str:
    """The machine, the costs per case, the targets, and the finite differences' error against eps."""
    m, table = results["machine"], results["ratios"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; device `{m['device']}` ({m['device_kind']}); "
        f"jax {m['jax_version']}, torch {m['torch_version'] or 'not installed'}; float32 (matmul precision "
        f"{results['matmul_precision']}); grid `{results['grid']}`, {results['wall_s']:.0f} s.",
        "",
    ]
    if not results.get("complete", True):
        lines += [f"**Stopped early: {results['cases_done']} of {results['cases']} cases were run.**", ""]
    lines += [
        "Cost of each product in gradients: the median over interleaved rounds of its time / "
        "`fnn.backprop`'s in the same round. `hvp/fwd-rev` and `gnvp/lin` are paired ratios of "
        "`fnn.hvp` to JAX's "
        "forward-over-reverse and of the cached `c.gnvp` to the linearized JAX product.",
        "",
        "Brackets: a ~95% interval of the paired median. FLOPs and temp (temporary memory) are XLA's "
        "count and memory analysis of the compiled programs (noise-free); torch has none.",
        "",
        "| case | P | batch | gradient | hvp | fwd-rev | rev-rev | FD | torch | hvp cached | gnvp cached | "
        "gnvp lin | hvp/fwd-rev | gnvp/lin | FLOPs: hvp in gradients | FLOPs hvp/fwd-rev | "
        "FLOPs: gnvp cached in gradients | FLOPs gnvp/lin | temp hvp/fwd-rev | temp gnvp/lin |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        g, f = r["gradients"], r["flops_gradients"]
        lines.append(
            f"| {r['case']} | {r['P']:,} | {r['batch']} | {_ms(r['gradient_s'])} | "
            + " | ".join(
                _x(g[k])
                for k in (
                    "hvp",
                    "fwd_over_rev",
                    "rev_over_rev",
                    "fd_central",
                    "torch",
                    "hvp_cached",
                    "gnvp_cached",
                    "gnvp_linearized",
                )
            )
            + f" | {_ratio(r, 'hvp_vs_fwd_over_rev')} | {_ratio(r, 'gnvp_vs_linearized')} | "
            f"{_x(f['hvp'])} | {_x(r['flops_hvp_vs_fwd_over_rev'], 3)} | {_x(f['gnvp_cached'])} | "
            f"{_x(r['flops_gnvp_vs_linearized'], 3)} | {_x(r['temp_hvp_vs_fwd_over_rev'])} | "
            f"{_x(r['temp_gnvp_vs_linearized'])} |"
        )
    lines += [
        "",
        "Agreement with the hand-written product (`||p - p_ref|| / ||p_ref||`, float32; the H products "
        "against `fnn.hvp`, the linearized one against `c.gnvp`; FD at the relative step "
        f"{results['fd_eps']:g}):",
        "",
        "| case | " + " | ".join(CHECKED) + " |",
        "|---|" + "---:|" * len(CHECKED),
    ]
    for r in table:
        lines.append(f"| {r['case']} | " + " | ".join(_e(r["rel_diff"][k]) for k in CHECKED) + " |")
    lines += ["", "| target | met | detail |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(
            f"| {t['target']} | {({True: 'yes', False: '**no**', None: 'n/a'})[t['met']]} | {t['detail']} |"
        )
    s = results.get("fd_sweep")
    if s:
        lines += [
            "",
            f"Central differences of the gradient against the exact H v (`fnn.hvp` in float64), "
            f"{s['case']}: relative error at each relative step eps. For comparison, float32 `fnn.hvp` "
            f"{_e(s['hvp_float32'])}, float32 JAX fwd-over-rev {_e(s['fwd_over_rev_float32'])}, float64 JAX "
            f"fwd-over-rev {_e(s['fwd_over_rev_float64'])}; the best eps: {s['best_eps']['float32']:.0e} "
            f"(float32), {s['best_eps']['float64']:.0e} (float64).",
            "",
            "| eps | float32 | float64 |",
            "|---:|---:|---:|",
        ]
        lines += [
            f"| {e:.0e} | {_e(a)} | {_e(b)} |" for e, a, b in zip(s["eps"], s["fd_float32"], s["fd_float64"])
        ]
    return "\n".join(lines) + "\n"


def _ratio(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_interval"]
    return f"{_x(r[key], 3)} [{_x(lo)}, {_x(hi)}]"


def _e(v) -> str:
    return "n/a" if not (isinstance(v, (int, float)) and math.isfinite(v)) else f"{v:.1e}"


def print_targets(results: dict, echo=print) -> None:
    """One line per target: met or not met, and the worst case."""
    for t in results["targets"]:
        echo(f"{({True: 'met', False: 'NOT MET', None: 'n/a'})[t['met']]:>8}: {t['target']} ({t['detail']})")


# --------------------------------------------------------------------------- figures


def plot_all(results: dict, out: Path) -> list[Path]:
    """``cost_in_gradients.png``, ``ratios.png`` and ``fd_error_vs_eps.png``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, draw in (
        ("cost_in_gradients.png", _cost),
        ("ratios.png", _ratios),
        ("fd_error_vs_eps.png", _fd),
    ):
        fig = draw(plt, results)
        if fig is not None:
            m = results["machine"]
            fig.text(
                0.01,
                0.005,
                f"{m['cpu']}, {m['cores']} cores, {m['device_kind']}; jax {m['jax_version']}, "
                f"torch {m['torch_version'] or 'not installed'}; float32",
                fontsize=6,
                color="grey",
            )
            fig.tight_layout(rect=(0, 0.02, 1, 1))
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            paths.append(out / name)
    return paths


def _cost(plt, results):
    table, shown = results["ratios"], [m for m in CONTENDERS if m != "backprop"]
    if not table:
        return None
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(shown)
    for k, m in enumerate(shown):
        xs = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(table))]
        ax.bar(xs, [r["gradients"][m] for r in table], width, label=LABELS[m])
    for bound, text in ((TARGETS["hvp_gradients"], "hvp target"), (TARGETS["gnvp_gradients"], "gnvp target")):
        ax.axhline(bound, color="grey", ls="--", lw=0.8)
        ax.text(len(table) - 0.5, bound, f" {text} {bound}", fontsize=7, va="bottom", ha="right")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(table)), [r["case"] for r in table], rotation=30, ha="right", fontsize=7)
    ax.set(
        yscale="log", ylabel="time / one gradient (paired median)", title="Curvature products in gradients"
    )
    ax.legend(fontsize=7, ncol=3)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return fig


def _ratios(plt, results):
    table = results["ratios"]
    if not table:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(table))
    ax.plot(
        xs,
        [r["hvp_vs_fwd_over_rev"] for r in table],
        "s",
        color="tab:red",
        label="fnn.hvp / JAX fwd-over-rev (paired time)",
    )
    ax.plot(
        xs,
        [r["flops_hvp_vs_fwd_over_rev"] for r in table],
        "s",
        mfc="none",
        color="tab:red",
        label="fnn.hvp / JAX fwd-over-rev (XLA FLOPs)",
    )
    ax.plot(
        xs,
        [r["gnvp_vs_linearized"] for r in table],
        "o",
        color="tab:blue",
        label="c.gnvp / JAX linearized (paired time)",
    )
    ax.plot(
        xs,
        [r["flops_gnvp_vs_linearized"] for r in table],
        "o",
        mfc="none",
        color="tab:blue",
        label="c.gnvp / JAX linearized (XLA FLOPs)",
    )
    ax.axhline(1.0, color="black", lw=0.8, label="target 1.0")
    ax.set_xticks(list(xs), [r["case"] for r in table], rotation=30, ha="right", fontsize=7)
    ax.set(
        ylabel="hand-written / JAX (< 1: hand-written faster)", title="Hand-written products against JAX's"
    )
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return fig


def _fd(plt, results):
    s = results.get("fd_sweep")
    if not s:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, color in (("float32", "tab:red"), ("float64", "tab:blue")):
        ax.plot(s["eps"], s[f"fd_{name}"], "o-", color=color, label=f"central FD of fnn.backprop, {name}")
        # float64's may agree to the last bit: nothing to draw on a log axis
        if s[f"fwd_over_rev_{name}"] > 0:
            ax.axhline(
                s[f"fwd_over_rev_{name}"], color=color, ls=":", lw=1, label=f"JAX fwd-over-rev, {name}"
            )
    ax.axhline(s["hvp_float32"], color="tab:red", ls="--", lw=1, label="fnn.hvp, float32")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="relative step eps (||eps v|| = eps ||w||)",
        ylabel="||Hv_approx - Hv|| / ||Hv||  (Hv: fnn.hvp in float64)",
        title=f"Finite differences of the gradient vs the exact H v\n{s['case']}",
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return fig
