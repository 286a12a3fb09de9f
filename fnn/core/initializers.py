"""Parameter initialisation.

``params`` is a plain list with one dict per layer, ``{"W": (n_in, n_out),
"b": (n_out,)}``, so a batch of row vectors ``x`` of shape (batch, n_in) maps to
``z = x @ W + b``. The textbook writes a column vector ``z = W' a + b`` with
``W'`` of shape (n_out, n_in); the two are transposes, ``W = W'.T``, and
``W[i, j]`` is the weight from input unit ``i`` to output unit ``j``.

==============  =======================================================  ==========
scheme          W                                                         b
==============  =======================================================  ==========
glorot_uniform  U(-a, a), a = sqrt(6 / (n_in + n_out))                    0
glorot_normal   N(0, 2 / (n_in + n_out)), truncated at 2 std             0
he_uniform      U(-a, a), a = sqrt(6 / n_in)                              0
he_normal       N(0, 2 / n_in), truncated at 2 std                        0
lecun_normal    N(0, 1 / n_in), truncated at 2 std                        0
normal          N(0, 1): the unit-normal init of old, which saturates     N(0, 1)
small_uniform   U(-0.05, 0.05): "small random values"                     U(-0.05, 0.05)
nguyen_widrow   U(-1, 1) columns rescaled to norm ``beta``                  U(-beta, beta)
==============  =======================================================  ==========

``nguyen_widrow`` (Nguyen & Widrow 1990, MATLAB's default ``initnw``) spreads
each unit's active region over inputs in [-1, 1]: every unit's incoming weight
vector gets the length ``beta = 0.7 n_out^(1 / n_in)``, its bias a uniform
draw in ``(-beta, beta)``. It assumes inputs scaled to [-1, 1], as MATLAB
scales them by default.

The truncated normals are rescaled so their variance is the one stated, as in
``jax.nn.initializers`` which provides them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fnn.core.protocol import Network

SMALL = 0.05

_WEIGHTS = {
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "he_uniform": jax.nn.initializers.he_uniform(),
    "he_normal": jax.nn.initializers.he_normal(),
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "normal": jax.nn.initializers.normal(stddev=1.0),
    "small_uniform": jax.nn.initializers.uniform(scale=2 * SMALL),  # U(0, 0.1), shifted below
}
_RANDOM_BIAS = {"normal", "small_uniform"}
SCHEMES = (*_WEIGHTS, "nguyen_widrow")


def nguyen_widrow(key, n_in: int, n_out: int, dtype) -> dict:
    """Nguyen-Widrow: columns of norm ``beta = 0.7 n_out^(1/n_in)``, biases ``U(-beta, beta)``."""
    kw, kb = jax.random.split(key)
    beta = 0.7 * n_out ** (1.0 / n_in)
    w = jax.random.uniform(kw, (n_in, n_out), dtype, -1.0, 1.0)
    w = beta * w / jnp.linalg.norm(w, axis=0, keepdims=True)
    return {"W": w, "b": jax.random.uniform(kb, (n_out,), dtype, -beta, beta)}


def _layer(key, n_in: int, n_out: int, scheme: str, dtype) -> dict:
    if scheme == "nguyen_widrow":
        return nguyen_widrow(key, n_in, n_out, dtype)
    kw, kb = jax.random.split(key)
    w = _WEIGHTS[scheme](kw, (n_in, n_out), dtype)
    b = _WEIGHTS[scheme](kb, (1, n_out), dtype)[0] if scheme in _RANDOM_BIAS else jnp.zeros(n_out, dtype)
    if scheme == "small_uniform":
        w, b = w - SMALL, b - SMALL
    return {"W": w, "b": b}


def init(key: jax.Array, net: Network, scheme: str = "glorot_uniform", dtype=jnp.float32):
    """Random parameters for ``net``: for an ``MLP`` a list of ``{"W", "b"}``, one per layer
    (any ``fnn.protocol`` network: its own ``init``)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be an fnn.MLP or another fnn.protocol.Network, got {type(net).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; expected one of {list(SCHEMES)}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype!r}")
    return net.init(key, scheme=scheme, dtype=jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def draw(key, sizes: tuple, scheme: str, dtype) -> list[dict]:
    """A chain's params: one ``{"W", "b"}`` per layer ``sizes[l] -> sizes[l + 1]``."""
    # one compiled program for all layers: drawn op by op, each random draw of
    # each shape would be compiled on its own, a second and more in a new process
    return draw_layers(key, tuple(zip(sizes[:-1], sizes[1:])), scheme, dtype)


def draw_layers(key, shapes: tuple, scheme: str, dtype) -> list[dict]:
    """One ``{"W": (n_in, n_out), "b": (n_out,)}`` per ``(n_in, n_out)`` of ``shapes``,
    each from its own key."""
    keys = jax.random.split(key, len(shapes))
    return [_layer(k, n_in, n_out, scheme, dtype) for k, (n_in, n_out) in zip(keys, shapes)]
