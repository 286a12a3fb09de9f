"""The forward pass, and the two public functions built on it alone.

For the nodes ``j = 1..J`` of a graph (``fnn.Graph``; an ``fnn.MLP`` is the
chain whose node ``l`` takes node ``l - 1``), with ``a_x = x``:

    z_j = sum over i in inputs_j of a_i @ W_j[i] + b_j       (batch, n_j)
    a_j = f_j(z_j) * m_j / (1 - p_j) + a_r                   (dropout p_j, residual r)
    yhat = a_J

For a chain this is ``z_l = a_{l-1} @ W_l + b_l``, ``a_l = f_l(z_l)``. The
dropout mask ``m_j`` (Bernoulli, keep with probability ``1 - p_j``) is drawn
only when a key is given; without one, dropout is off and ``a_j = f_j(z_j) + a_r``.

``forward`` keeps, per node, exactly what the backward pass needs: the
pre-activation ``z_j``, the activation ``f_j(z_j)``, the output ``a_j`` (which
its consumers read as their input) and the scaled mask ``m_j / (1 - p_j)``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import activations, dispatch
from fnn.core.protocol import loss_from_cache

Array = jax.Array
INPUT = "x"


class NodeCache(NamedTuple):
    """What node ``j`` saves on the way forward."""

    z: Array  # z_j, (batch, n_j)
    f: Array  # f_j(z_j), (batch, n_j)
    a: Array  # a_j: f_j(z_j), dropped out and with the residual added; what its consumers read
    keep: Array | None  # m_j / (1 - p_j), the scaled dropout mask (None: no dropout in this pass)


def graph_forward(net, params: dict, x: Array, output_dtype=None, key=None) -> dict:
    """Run the graph ``net`` (an ``fnn.Graph``) on ``x`` (batch, n_in); return ``{"x": x, name: NodeCache}``.

    ``output_dtype`` (mixed precision, see ``fnn.scale.precision``): the output
    node's logits ``z_J`` are cast to it before the output activation, so that
    softmax and the loss run in float32 while the hidden nodes run in bfloat16.
    ``key``: draw the dropout masks (each node its own ``fold_in(key, j)``).
    """
    cache = {INPUT: x}
    last = len(net.nodes) - 1
    for j, node in enumerate(net.nodes):
        p = params[node.name]
        z = functools.reduce(jnp.add, [output(cache, i) @ p["W"][i] for i in node.inputs]) + p["b"]
        if j == last and output_dtype is not None:
            z = z.astype(output_dtype)
        f = activations.get(node.activation).fn(z)
        keep = (
            _keep(jax.random.fold_in(key, j), node.dropout, f) if key is not None and node.dropout else None
        )
        a = f if keep is None else f * keep
        if node.residual is not None:
            a = a + output(cache, node.residual)
        cache[node.name] = NodeCache(z, f, a, keep)
    return cache


def output(cache: dict, name: str) -> Array:
    """``a_i`` of node ``name`` (``"x"``: the input) from a forward cache."""
    return cache[name] if name == INPUT else cache[name].a


def _keep(key, p: float, f: Array) -> Array:
    """The scaled keep-mask ``m / (1 - p)``, ``m ~ Bernoulli(1 - p)``, shaped and typed as ``f``."""
    return jax.random.bernoulli(key, 1.0 - p, f.shape).astype(f.dtype) / jnp.asarray(1.0 - p, f.dtype)


def predict_core(net, params, x) -> Array:
    """The network's output on inputs that have already passed validation (any ``fnn.protocol`` network)."""
    return net.output_of(net.forward(params, x))[1]


def loss_core(net, params, x, y, key=None) -> Array:
    """The batch-mean loss on inputs that have already passed validation (``key``: with dropout)."""
    return loss_from_cache(net, net.forward(params, x, key=key), y)


@dispatch.fast_path(predict_core)
def predict(net, params, x) -> Array:
    """The network's output ``yhat = a_L``, shape (batch, n_out) (dropout off: the trained network)."""
    return dispatch.call(predict_core, net, params, x)


@dispatch.fast_path(loss_core)
def loss(net, params, x, y, key=None) -> Array:
    """The loss averaged over the batch, ``L = (1/B) sum_n l(yhat_n, y_n)`` (``key``: with dropout on)."""
    return dispatch.call(loss_core, net, params, x, y, key=key)
