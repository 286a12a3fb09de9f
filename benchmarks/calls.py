"""What a user's loop pays per call: fnn's public functions against the jitted plain-JAX equivalent.

Each contender is a zero-argument call that runs the function as a user calls
it, on device arrays, and blocks until the result is ready:

==========================  ==================================  =====================================
function                    fnn, eager                          plain JAX, jitted by the user
==========================  ==================================  =====================================
``backprop``                ``fnn.backprop(net, params, x, y)``  ``jax.jit(jax.value_and_grad(loss))``
``loss``                    ``fnn.loss(net, params, x, y)``      ``jax.jit(loss)``
``loss_with_manual_vjp``    ``fnn.loss_with_manual_vjp(...)``    ``jax.jit(loss)``
``predict``                 ``fnn.predict(net, params, x)``      ``jax.jit(predict)``
``hvp``                     ``fnn.hvp(net, params, x, y, v)``    ``jax.jit`` of ``jax.jvp`` of
                                                                ``jax.value_and_grad(loss)`` along ``v``
``gnvp``                    ``fnn.gnvp(net, params, x, y, v)``   ``jax.jit``: ``value_and_grad(loss)``,
                                                                ``J v`` by ``jax.linearize`` of the
                                                                logits, ``H_L`` by forward over reverse
                                                                there, ``J^T`` by ``linear_transpose``
==========================  ==================================  =====================================

``loss`` and ``predict`` are the user's own functions of ``(params, x, y)``,
written with fnn's forward pass so that the arithmetic is the same and only
the call differs: with integer labels the user's loss one-hot encodes them
itself (``jax.nn.one_hot``), as fnn's program does.

Both contenders of a function run back to back in every round, in a random
order, the functions in a fresh random order each round. A sample is
a few milliseconds of calls in a row, timed whole, in two modes: ``pipelined``
(each call launched as soon as the last one returns, the last one waited
for: a loop's steady state, since JAX dispatches asynchronously; what the
call path adds shows wherever the call takes longer than the computation)
and ``blocking`` (each call's result waited for, which adds the wake-up of
the waiting thread, noisy on a shared machine). The ratio reported is the
median over rounds of each round's ``fnn / plain``
(``fnn.scale.timing.paired_ratio``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time

import jax

import fnn
from benchmarks.curvature import direction, linearized_gnvp, logits_of
from benchmarks.grids import classifier
from fnn.core.forward import loss_core, predict_core
from fnn.core.mlp import MLP
from fnn.scale.timing import Timing, paired_ratio, wall_time

FUNCTIONS = ("backprop", "loss", "loss_with_manual_vjp", "predict", "hvp", "gnvp")
TAKES_V = ("hvp", "gnvp")  # the curvature products: a params-shaped direction v after y


@dataclasses.dataclass(frozen=True)
class Case:
    net: MLP
    batch: int
    targets: str  # "labels", "one-hot" (cross_entropy) or "real" (regression)

    @property
    def name(self) -> str:
        return (
            f"{'-'.join(map(str, self.net.sizes))} {self.net.activation[0] if self.net.activation else ''}"
            f"@{self.batch} {self.targets}"
        )


def cases(quick: bool = False) -> list[Case]:
    """The 1-1-1 net, small regression nets, and classifiers up to MNIST's size, with labels and one-hot."""
    out = [
        Case(MLP((1, 1, 1), "sigmoid", "sigmoid", "mse"), 64, "real"),
        Case(MLP((20, 40, 1), "tanh"), 64, "real"),
    ]
    classifiers = [
        (classifier((16,), "tanh", n_in=8, n_out=3), 32),
        (classifier((128, 128), "relu", n_in=64), 64),
        (classifier((256, 256), "relu"), 128),
    ]
    if not quick:
        classifiers += [
            (classifier((512, 512), "gelu"), 256),
            (classifier((500, 500, 500), "tanh", n_in=300), 384),
        ]
    for net, batch in classifiers:
        out += [Case(net, batch, "labels"), Case(net, batch, "one-hot")]
    return out


def inputs(case: Case, seed: int = 0):
    net = case.net
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = fnn.init(kp, net)
    x = jax.random.normal(kx, (case.batch, net.sizes[0]))
    if case.targets == "real":
        y = jax.random.uniform(ky, (case.batch, net.sizes[-1]))
    else:
        y = jax.random.randint(ky, (case.batch,), 0, net.sizes[-1])
        if case.targets == "one-hot":
            y = jax.nn.one_hot(y, net.sizes[-1])
    return jax.block_until_ready((params, x, y))


def plain_functions(net: MLP) -> dict:
    """The jitted plain-JAX equivalent of each public function, as a user writes it."""

    def loss(params, x, y):
        if y.ndim == 1:
            y = jax.nn.one_hot(y, net.sizes[-1], dtype=x.dtype)
        return loss_core(net, params, x, y)

    def hvp(params, x, y, v):  # ((loss, grads), (its tangent, H v))
        return jax.jvp(lambda w: jax.value_and_grad(loss)(w, x, y), (params,), (v,))

    def gnvp(params, x, y, v):  # (loss, grads, J^T H_L J v), the curvature benchmark's linearized product
        onehot = jax.nn.one_hot(y, net.sizes[-1], dtype=x.dtype) if y.ndim == 1 else y
        z, linear = jax.linearize(lambda w: logits_of(net, w, x), params)
        return (*jax.value_and_grad(loss)(params, x, y), linearized_gnvp(net, linear, z, onehot, v))

    predict = jax.jit(lambda params, x: predict_core(net, params, x))
    loss_jit = jax.jit(loss)
    return {
        "backprop": jax.jit(jax.value_and_grad(loss)),
        "loss": loss_jit,
        "loss_with_manual_vjp": loss_jit,
        "predict": predict,
        "hvp": jax.jit(hvp),
        "gnvp": jax.jit(gnvp),
    }


MODES = ("pipelined", "blocking")


def _sample(fn, args, calls: int, mode: str):
    """``calls`` calls in a row: ``pipelined``, each launched as soon as the last returns and
    the last waited for (a loop's steady state: JAX dispatches asynchronously); ``blocking``,
    each waited for (what a loop that reads every result pays, wake-ups included)."""
    if mode == "pipelined":

        def run():
            for _ in range(calls - 1):
                fn(*args)
            jax.block_until_ready(fn(*args))
    else:

        def run():
            for _ in range(calls):
                jax.block_until_ready(fn(*args))

    return run


def time_pairs(calls: dict, pairs, rounds: int, seed: int) -> dict:
    """``Timing`` of every ``calls[(name, who, mode)]``, the two contenders of each pair
    ``(name, mode)`` timed back to back, in random order, the pairs in a fresh random
    order each round: a slow spell of the machine lands on both sides of a pair."""
    rng = random.Random(seed)
    samples = {key: [] for key in calls}
    pairs = list(pairs)
    for _ in range(rounds):
        rng.shuffle(pairs)
        for name, mode in pairs:
            for who in rng.sample(("fnn", "plain"), 2):
                samples[(name, who, mode)].append(wall_time(calls[(name, who, mode)]))
    return {k: Timing(statistics.median(v), min(v), max(v), len(v), tuple(v)) for k, v in samples.items()}


def measure(
    case: Case, functions=FUNCTIONS, rounds: int = 61, sample_s: float = 5e-3, seed: int = 0
) -> list[dict]:
    """One row per function: medians of both contenders and their paired ratio."""
    params, x, y = inputs(case)
    v = jax.block_until_ready(direction(params, jax.random.key(seed + 1)))
    plain = plain_functions(case.net)
    contenders = {}
    for name in functions:
        fn = getattr(fnn, name)
        args = (x,) if name == "predict" else (x, y, v) if name in TAKES_V else (x, y)
        contenders[(name, "fnn")] = (lambda fn: lambda *a: fn(case.net, params, *a))(fn), args
        contenders[(name, "plain")] = (lambda f: lambda *a: f(params, *a))(plain[name]), args
    for fn, args in contenders.values():  # compile, check, warm up
        jax.block_until_ready(fn(*args))
    calls, per_sample = {}, {}
    for name in functions:  # both contenders of a function make the same number of calls per sample
        fn, args = contenders[(name, "plain")]
        start = time.perf_counter()
        for _ in range(5):
            jax.block_until_ready(fn(*args))
        per_sample[name] = max(2, min(200, math.ceil(sample_s * 5 / (time.perf_counter() - start))))
        for who in ("fnn", "plain"):
            for mode in MODES:
                calls[(name, who, mode)] = _sample(*contenders[(name, who)], per_sample[name], mode)
    timings = time_pairs(calls, [(name, mode) for name in functions for mode in MODES], rounds, seed)
    rows = []
    for name in functions:
        for mode in MODES:
            f, p, n = timings[(name, "fnn", mode)], timings[(name, "plain", mode)], per_sample[name]
            rows.append(
                {
                    "function": name,
                    "mode": mode,
                    "case": case.name,
                    "sizes": "-".join(map(str, case.net.sizes)),
                    "activation": case.net.activation[0] if case.net.activation else "",
                    "batch": case.batch,
                    "targets": case.targets,
                    "P": case.net.n_params,
                    "fnn_us": 1e6 * f.median_s / n,
                    "plain_us": 1e6 * p.median_s / n,
                    "ratio": paired_ratio(f, p),
                    "ratio_of_medians": f.median_s / p.median_s,
                    "rounds": rounds,
                    "calls_per_sample": n,
                }
            )
    return rows


TOLERANCE = 1.05  # the per-call cost fnn's public functions may add to the plain-JAX call
SMALL = 10_000  # parameters below which a case gets three times the rounds


def run(quick: bool = False, rounds: int = 61, progress: bool = True, which=None) -> dict:
    """Every case of ``cases(quick)`` (or of ``which``); the results with the machine and the worst
    ratio per function."""
    from benchmarks.machine import describe
    from benchmarks.runner import _progress

    start = time.perf_counter()
    todo = _progress(cases(quick) if which is None else which, progress)
    # The smallest networks' calls take a few microseconds, where the machine's noise is
    # largest relative to the call: they get three times the rounds.
    rows = [
        row
        for i, case in enumerate(todo)
        for row in measure(case, rounds=3 * rounds if case.net.n_params < SMALL else rounds, seed=i)
    ]
    worst = {
        f"{name}, {mode}": max(
            (r for r in rows if r["function"] == name and r["mode"] == mode), key=lambda r: r["ratio"]
        )
        for name in FUNCTIONS
        for mode in MODES
    }
    return {
        "machine": describe(jax.devices()[0]),
        "rounds": rounds,
        "tolerance": TOLERANCE,
        "rows": rows,
        "worst": {k: {"case": r["case"], "ratio": r["ratio"]} for k, r in worst.items()},
        "met": all(r["ratio"] <= TOLERANCE for r in rows),
        "wall_s": time.perf_counter() - start,
    }


def save(results: dict, out) -> list:
    """``results.json``, ``results.csv``, ``summary.md`` and ``calls.png`` in ``out``; the paths."""
    import csv
    from pathlib import Path

    from benchmarks.output import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.csv", out / "summary.md", out / "calls.png"]
    write_json(results, paths[0])
    with open(paths[1], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results["rows"][0]))
        writer.writeheader()
        writer.writerows(results["rows"])
    paths[2].write_text(summary_markdown(results))
    plot(results, paths[3])
    return paths


def summary_markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; device `{m['device']}` ({m['device_kind']}); "
        f"jax {m['jax_version']}; float32; {results['rounds']} interleaved rounds per case "
        f"({3 * results['rounds']} below P = {SMALL:,}), {results['wall_s']:.0f} s.",
        "",
        "Per call, as a user's loop makes it (device arrays, result blocked on): fnn's public function "
        "against the jitted plain-JAX equivalent; ratio = median over rounds of each round's fnn / plain.",
        "",
        "| function | network @ batch, targets | P | mode | fnn | plain JAX, jitted | ratio |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| `{r['function']}` | {r['case']} | {r['P']:,} | {r['mode']} | {r['fnn_us']:.1f} us | "
            f"{r['plain_us']:.1f} us | {r['ratio']:.3f} |"
        )
    lines += ["", f"Worst ratio per function (target <= {results['tolerance']}):", ""]
    lines += [f"* `{k}`: {w['ratio']:.3f} ({w['case']})" for k, w in results["worst"].items()]
    return "\n".join(lines) + "\n"


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    names = list(dict.fromkeys(r["case"] for r in rows))
    lo = min(0.9, min(r["ratio"] for r in rows) - 0.02)
    hi = max(1.1, max(r["ratio"] for r in rows) + 0.02)
    fig, axes = plt.subplots(1, len(MODES), figsize=(14, 5.4), sharey=True)
    width = 0.8 / len(FUNCTIONS)
    for ax, mode in zip(axes, MODES):
        for k, fn in enumerate(FUNCTIONS):
            by_case = {r["case"]: r["ratio"] for r in rows if r["function"] == fn and r["mode"] == mode}
            xs = [i + (k - (len(FUNCTIONS) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, [by_case.get(n, math.nan) for n in names], width, label=f"fnn.{fn}")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.axhline(
            results["tolerance"], color="grey", lw=0.8, ls="--", label=f"{results['tolerance']} target"
        )
        ax.set_xticks(range(len(names)), names, fontsize=6, rotation=35, ha="right")
        ax.set(ylim=(lo, hi), title=f"{mode} calls")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("eager fnn call / jitted plain-JAX call\n(median of paired rounds)")
    axes[0].legend(fontsize=7, ncol=3, loc="upper left")
    m = results["machine"]
    fig.suptitle("What a user's loop pays per call", fontsize=10)
    fig.text(0.01, 0.01, f"{m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax_version']}", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
