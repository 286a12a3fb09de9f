"""Property test: backprop equals autodiff on random architectures (float64).

Both gradients of an example are compiled in one program (one compile per
drawn architecture instead of two), which halves the test's time; the public
``fnn.backprop`` path is the same ``backprop_core`` under ``jax.jit``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from hypothesis import given, settings, strategies as st

import fnn
from fnn import validation
from fnn.backprop import backprop_core
from fnn.forward import loss_core
from helpers import HIDDEN, PAIRS, targets, worst_rel_error


@st.composite
def networks(draw):
    n_hidden = draw(st.integers(0, 4))
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=n_hidden + 2, max_size=n_hidden + 2)))
    output, loss = draw(st.sampled_from(PAIRS))
    if output == "softmax" and sizes[-1] == 1:
        sizes = sizes[:-1] + (2,)  # a one-class softmax is constant: nothing to learn
    hidden = tuple(draw(st.sampled_from(HIDDEN)) for _ in range(n_hidden))
    scheme = draw(st.sampled_from(["glorot_uniform", "he_normal", "lecun_normal", "small_uniform", "normal"]))
    return fnn.MLP(sizes, hidden, output, loss), scheme


@functools.partial(jax.jit, static_argnums=0)
def _both(net, params, x, y):
    return backprop_core(net, params, x, y), jax.value_and_grad(loss_core, argnums=1)(net, params, x, y)


@settings(max_examples=200, deadline=None)
@given(networks(), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_backprop_equals_autodiff_on_random_networks(net_and_scheme, batch, seed):
    net, scheme = net_and_scheme
    with jax.enable_x64(True):
        kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
        params = fnn.init(kp, net, scheme=scheme, dtype=jnp.float64)
        x = jax.random.normal(kx, (batch, net.sizes[0]), jnp.float64)
        y = targets(ky, net.loss, batch, net.sizes[-1], jnp.float64)
        x, y = validation.prepare(net, params, x, y)
        (loss_bp, g_bp), (loss_ad, g_ad) = _both(net, params, x, y)
        assert jax.tree_util.tree_structure(g_bp) == jax.tree_util.tree_structure(params)
        assert abs(float(loss_bp) - float(loss_ad)) <= 1e-13 * max(1.0, abs(float(loss_ad)))
        assert worst_rel_error(g_bp, g_ad, loss_bp) <= 1e-12
