"""The demo behind ``fnn demo``: build a network, backprop, check the gradient and the curvature, time."""

from __future__ import annotations

import time

import jax

import fnn
from fnn.check.autodiff import compiled_autodiff
from fnn.check.finite_differences import compiled_finite_differences, default_chunk, default_eps
from fnn.core import validation
from fnn.core.backprop import compiled_backprop
from fnn.scale.timing import Timing, paired_ratio, time_interleaved

ROUNDS = 61  # backprop against jax.grad: each round runs both once, in a fresh random order


def run(sizes=(8, 32, 32, 4), activation="tanh", seed: int = 0, batch: int = 64) -> bool:
    """Print the three-way gradient check and timings; return the check's verdict."""
    net = fnn.MLP(sizes, activation=activation, output="softmax", loss="cross_entropy")
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = fnn.init(kp, net)
    x = jax.random.normal(kx, (batch, sizes[0]))
    y = jax.random.randint(ky, (batch,), 0, sizes[-1])
    print(
        f"network {net.sizes}, hidden {activation}, softmax + cross_entropy, "
        f"P = {net.n_params} parameters, batch {batch}, on {jax.devices()[0].platform}\n"
    )

    report = fnn.check_gradients(net, params, x, y)
    print(report, "\n")
    curvature = fnn.check_curvature(net, params, x, y)  # the next order: H v and G v by the R-operator
    print(curvature, "\n")

    # Time the compiled functions on validated inputs: the gradient work alone.
    x, y = validation.prepare(net, params, x, y)
    eps, chunk = default_eps(x.dtype), default_chunk(net, batch)
    methods = {
        "fnn.backprop (hand-written)": lambda: compiled_backprop(net, params, x, y),
        "fnn.autodiff (jax.grad)": lambda: compiled_autodiff(net, params, x, y),
        "fnn.finite_differences": lambda: compiled_finite_differences(
            net, params, x, y, eps, "central", chunk
        ),
    }
    fd = methods.pop("fnn.finite_differences")  # 2P losses: timed apart, so as not to cool the fast calls
    timings = {**_per_call_timings(methods, ROUNDS), **_per_call_timings({"fnn.finite_differences": fd}, 5)}
    reference = timings["fnn.autodiff (jax.grad)"]
    print(
        f"{'gradient of all P parameters':<30} {'median':>10} {'min':>10} {'/ jax.grad':>11}"
        "   (float32, compiled)"
    )
    for name, t in timings.items():
        ratio = paired_ratio(t, reference) if name in methods else t.median_s / reference.median_s
        print(f"{name:<30} {t.median_s * 1e3:>8.3f}ms {t.min_s * 1e3:>8.3f}ms {ratio:>10.2f}x")
    print(
        f"(backprop and jax.grad: {ROUNDS} interleaved rounds, the ratio the median of each round's; "
        f"a sample: calls in a row for about 5 ms, each waited for)"
    )
    return report.passed and curvature.passed


def _per_call_timings(methods: dict, rounds: int, sample_s: float = 5e-3) -> dict[str, Timing]:
    """Each method's time per call, in ``rounds`` interleaved rounds (a fresh random order each); a sample is
    the method called as many times in a row as fill about ``sample_s`` (each result waited for), so that a
    fast call is not timed alone, where the wake-up of a waiting thread would dominate it."""
    runs, counts = {}, {}
    for name, call in methods.items():
        jax.block_until_ready(call())  # compiled already: a warm-up
        start = time.perf_counter()
        jax.block_until_ready(call())
        counts[name] = k = max(1, round(sample_s / max(time.perf_counter() - start, 1e-7)))
        runs[name] = lambda call=call, k=k: [jax.block_until_ready(call()) for _ in range(k)]
    timings = time_interleaved(runs, rounds)
    return {
        name: Timing(
            t.median_s / counts[name],
            t.min_s / counts[name],
            t.max_s / counts[name],
            t.repeats,
            tuple(v / counts[name] for v in t.samples),
        )
        for name, t in timings.items()
    }
