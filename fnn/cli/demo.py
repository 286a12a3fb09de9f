"""The demo behind ``fnn demo``: build a network, backprop, check the gradient and the curvature, time."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import fnn
from fnn.check.autodiff import compiled_autodiff
from fnn.check.finite_differences import compiled_finite_differences, default_chunk, default_eps
from fnn.core import validation
from fnn.core.backprop import compiled_backprop
from fnn.scale.timing import time_call


def run(sizes=(8, 32, 32, 4), activation="tanh", seed: int = 0, batch: int = 64) -> bool:
    """Print the three-way gradient check and timings; return the check's verdict."""
    net = fnn.MLP(sizes, activation=activation, output="softmax", loss="cross_entropy")
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = fnn.init(kp, net)
    x = jax.random.normal(kx, (batch, sizes[0]))
    y = jax.random.randint(ky, (batch,), 0, sizes[-1])
    print(f"network {net.sizes}, hidden {activation}, softmax + cross_entropy, "
          f"P = {net.n_params} parameters, batch {batch}, on {jax.devices()[0].platform}\n")

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
        "fnn.finite_differences": lambda: compiled_finite_differences(net, params, x, y, eps, "central", chunk),
    }
    print(f"{'gradient of all P parameters':<30} {'median':>12} {'min':>12}   (float32, compiled, 9 runs)")
    for name, call in methods.items():
        t = time_call(call, repeats=9)
        print(f"{name:<30} {t.median_s * 1e3:>10.3f}ms {t.min_s * 1e3:>10.3f}ms")
    return report.passed and curvature.passed
