"""The grid: every hidden activation x every (output, loss) pair x depth x dtype
(the deeper cells in the slow suite, see DEPTHS).

For each cell, backprop must equal autodiff (float64: per-leaf relative error
<= 1e-12; float32: <= 1e-5 relative to the leaf's norm) and, in float64 on
the small nets (1 and 2 hidden layers), central finite differences (<= 1e-7).
"Relative error" is fnn.check_gradients' ``rel`` (fnn/check/gradcheck.py),
whose floor keeps vanished or exactly-zero leaves from being judged on
rounding noise. The eight hidden activations of a cell
are compiled together in one program to keep the grid's compile time low;
each network is still differentiated on its own.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest
from helpers import HIDDEN, PAIRS, targets, worst_norm_error, worst_rel_error

import fnn
from fnn.check.finite_differences import compiled_finite_differences, default_eps
from fnn.core.backprop import backprop_core
from fnn.core.forward import loss_core

# Hidden layers. The default suite runs depth 1 in float64 (with finite
# differences) and float32; the slow suite (-m slow) adds the rest: each further
# layer repeats the same step of the recursion, which the property tests
# (test_properties.py, depths 0-4) also check against jax.grad.
DEPTHS = (1, pytest.param(2, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow))
DEPTHS_32 = (1, pytest.param(2, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow))
FD_DEPTHS = (1, 2)  # finite differences on the small nets: compiling them is most of the grid's time
BATCH, N_IN, WIDTH = 5, 3, 4


@functools.partial(jax.jit, static_argnums=0)
def _backprop_and_autodiff(nets, params, x, y):
    return [
        (backprop_core(net, p, x, y), jax.value_and_grad(loss_core, argnums=1)(net, p, x, y))
        for net, p in zip(nets, params)
    ]


@functools.partial(jax.jit, static_argnums=0)
def _finite_differences(nets, params, x, y):
    eps = default_eps(x.dtype, "central")
    return [
        compiled_finite_differences.__wrapped__(net, p, x, y, eps, "central", net.n_params)
        for net, p in zip(nets, params)
    ]


def _random_biases(key, params):
    """Nonzero biases: with zero biases a dead relu layer puts the next layer's
    pre-activations exactly on relu's kink, where finite differences measure a
    one-sided slope rather than a derivative."""
    keys = jax.random.split(key, len(params))
    return [
        {"W": p["W"], "b": 0.3 * jax.random.normal(k, p["b"].shape, p["b"].dtype)}
        for k, p in zip(keys, params)
    ]


def _cell(output, loss, depth, dtype):
    n_out = 1 if output in ("identity",) and loss == "huber" else 3  # vary the output width too
    nets = tuple(fnn.MLP((N_IN,) + (WIDTH,) * depth + (n_out,), act, output, loss) for act in HIDDEN)
    kp, kx, ky = jax.random.split(jax.random.key(depth * 101 + len(output) * 7 + len(loss)), 3)
    params = [
        _random_biases(k, fnn.init(k, net, dtype=dtype))
        for k, net in zip(jax.random.split(kp, len(nets)), nets)
    ]
    x = jax.random.normal(kx, (BATCH, N_IN), dtype)
    y = targets(ky, loss, BATCH, n_out, dtype, labels=False)
    return nets, params, x, y


@pytest.mark.parametrize("depth", DEPTHS, ids=lambda d: f"depth{d}")
@pytest.mark.parametrize("output,loss", PAIRS, ids=lambda v: str(v))
def test_float64_backprop_equals_autodiff_and_finite_differences(output, loss, depth):
    with jax.enable_x64(True):
        nets, params, x, y = _cell(output, loss, depth, jnp.float64)
        results = _backprop_and_autodiff(nets, params, x, y)
        numerical = _finite_differences(nets, params, x, y) if depth in FD_DEPTHS else [None] * len(nets)
        for net, ((l_bp, g_bp), (l_ad, g_ad)), g_fd in zip(nets, results, numerical):
            assert float(l_bp) == pytest.approx(float(l_ad), rel=1e-14, abs=1e-300)
            assert worst_rel_error(g_bp, g_ad, l_bp) <= 1e-12, net
            if g_fd is not None:
                assert worst_rel_error(g_bp, g_fd, l_bp) <= 1e-7, net


@pytest.mark.parametrize("depth", DEPTHS_32, ids=lambda d: f"depth{d}")
@pytest.mark.parametrize("output,loss", PAIRS, ids=lambda v: str(v))
def test_float32_backprop_equals_autodiff(output, loss, depth):
    nets, params, x, y = _cell(output, loss, depth, jnp.float32)
    # Exact float32 products (a no-op on CPU): at JAX's default precision an
    # NVIDIA GPU rounds matmul inputs to TF32, and both gradients then carry
    # errors of ~1e-4 that belong to TF32, not to either algorithm (seen on an H200).
    with jax.default_matmul_precision("highest"):
        results = _backprop_and_autodiff(nets, params, x, y)
    for net, ((l_bp, g_bp), (l_ad, g_ad)) in zip(nets, results):
        assert g_bp[0]["W"].dtype == jnp.float32
        assert float(l_bp) == pytest.approx(float(l_ad), rel=1e-6)
        assert worst_norm_error(g_bp, g_ad) <= 1e-5, net
