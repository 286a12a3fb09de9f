"""Property test: backprop equals autodiff on random architectures (float64).

Both gradients of an example are compiled in one program (one compile per
drawn architecture instead of two), and the example's data come from NumPy:
drawn with ``jax.random``, every new shape would compile a handful of small
random-number programs, which cost more than the gradients themselves. The
public ``fnn.backprop`` path is the same ``backprop_core`` under ``jax.jit``.
Compiling dominates each example, so XLA compiles these programs without its
backend optimizations and with its older, quicker-to-compile loop emitters
(0.19 s instead of 0.35 s an example): the test is about the math on many
shapes; the optimized code is checked by the gradient grid.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import QUICK_COMPILE, chain_params, host_targets, networks, worst_over_examples, worst_rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from fnn.core import validation
from fnn.core.backprop import backprop_core
from fnn.core.forward import loss_core


@functools.partial(jax.jit, static_argnums=0, compiler_options=QUICK_COMPILE)
def _both(net, params, x, y):
    return backprop_core(net, params, x, y), jax.value_and_grad(loss_core, argnums=1)(net, params, x, y)


def _errors(net_and_scale, batch, seed) -> tuple[float, float]:
    """The relative errors of backprop's loss and gradient against ``jax.value_and_grad``'s."""
    net, scale = net_and_scale
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, chain_params(rng, net, scale))
        x, y = rng.normal(size=(batch, net.sizes[0])), host_targets(rng, net.loss, batch, net.sizes[-1])
        x, y = validation.prepare(net, params, x, y)
        (loss_bp, g_bp), (loss_ad, g_ad) = _both(net, params, x, y)
        assert jax.tree_util.tree_structure(g_bp) == jax.tree_util.tree_structure(params)
        loss_error = abs(float(loss_bp) - float(loss_ad)) / max(1.0, abs(float(loss_ad)))
        return loss_error, worst_rel_error(g_bp, g_ad, loss_bp)


EXAMPLE = (networks(), st.integers(1, 8), st.integers(0, 2**31 - 1))


@settings(max_examples=200, deadline=None)
@given(*EXAMPLE)
def test_backprop_equals_autodiff_on_random_networks(net_and_scale, batch, seed):
    loss_error, gradient_error = _errors(net_and_scale, batch, seed)
    assert loss_error <= 1e-13 and gradient_error <= 1e-12


@pytest.mark.slow
def test_the_worst_errors_over_many_random_networks(capsys):
    """``pytest -m slow -s tests/test_properties.py -k worst``: 500 networks, the worst errors printed."""
    worst = worst_over_examples(500, EXAMPLE, _errors)
    with capsys.disabled():
        print(f"\nworst rel error over 500 random networks: loss {worst[0]:.2e}, gradient {worst[1]:.2e}")
    assert worst[0] <= 1e-13 and worst[1] <= 1e-12
