"""The single-unit example, differentiated by hand in closed form.

One input, one sigmoid hidden unit, one sigmoid output unit, half squared error:

    h = s(w1 x + b1),   y = s(w2 h + b2),   E = 1/2 (y - t)^2,   s' = s (1 - s)

The chain rule gives every partial derivative explicitly:

    dE/db2 = (y - t) y (1 - y)                      =: d2
    dE/dw2 = d2 h
    dE/db1 = d2 w2 h (1 - h)                        =: d1
    dE/dw1 = d1 x

This is the "analytical" method: exact, but each formula is derived for one
architecture and has to be derived again for any other. Backprop computes the
same numbers for any network by the delta recursion (``d2`` and ``d1`` are its
deltas). Over a batch, E and every derivative are averaged, as in ``fnn.loss``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.core.mlp import MLP

SINGLE_UNIT = MLP((1, 1, 1), activation="sigmoid", output="sigmoid", loss="mse")


def single_unit_gradient(params: list[dict], x: jax.Array, t: jax.Array) -> tuple[jax.Array, list[dict]]:
    """``(E, grads)`` of ``SINGLE_UNIT`` from the closed-form derivatives above.

    ``params`` is in fnn's layout (``fnn.init(key, SINGLE_UNIT)``); ``x`` and
    ``t`` have shape (batch,) or (batch, 1).
    """
    x, t = jnp.reshape(x, (-1,)), jnp.reshape(t, (-1,))
    w1, b1 = params[0]["W"][0, 0], params[0]["b"][0]
    w2, b2 = params[1]["W"][0, 0], params[1]["b"][0]
    h = jax.nn.sigmoid(w1 * x + b1)
    y = jax.nn.sigmoid(w2 * h + b2)
    d2 = (y - t) * y * (1 - y)
    d1 = d2 * w2 * h * (1 - h)
    E = jnp.mean(0.5 * (y - t) ** 2)
    grads = [
        {"W": jnp.mean(d1 * x).reshape(1, 1), "b": jnp.mean(d1).reshape(1)},
        {"W": jnp.mean(d2 * h).reshape(1, 1), "b": jnp.mean(d2).reshape(1)},
    ]
    return E, grads
