"""Pearlmutter's R-operator: the forward and backward passes
differentiated along a direction in parameter space.

For params ``w`` and a direction ``v`` (params-shaped: ``V_j[i]`` beside each
``W_j[i]``, ``V_b_j`` beside each ``b_j``), ``R{q} = d/dt q(w + t v)`` at
``t = 0`` for any quantity ``q`` of the passes (Pearlmutter 1994, "Fast exact
multiplication by the Hessian"). ``R`` obeys the rules of differentiation, so
each line of the forward pass (``fnn.core.forward``) and of the delta
recursion (``fnn.core.backprop``) gains a twin. With ``R{a_x} = 0``:

**R-forward** (``graph_tangent_forward``), node by node:

    R{z_j} = sum over i in inputs_j of (R{a_i} @ W_j[i] + a_i @ V_j[i]) + V_b_j
    R{f_j} = f'_j(z_j) * R{z_j}                      (softmax: its Jacobian times R{z_j})
    R{a_j} = R{f_j} * m_j / (1 - p_j) + R{a_r}       (the dropout mask m_j fixed by the key)

**R-backward** (``graph_tangent_backward``), in reverse, from
``R{delta_J} = H_L R{z_J}`` (``fnn.core.losses.output_hvp``):

    R{g_j}     = sum over consumers k of (R{delta_k} @ W_k[j]^T + delta_k @ V_k[j]^T)
                 + sum over nodes k with residual j of R{g_k}
    R{delta_j} = f''_j(z_j) R{z_j} g_j + f'_j(z_j) R{g_j}     (g_j, R{g_j} after the mask)
    R{dW_j[i]} = R{a_i}^T @ delta_j + a_i^T @ R{delta_j}
    R{db_j}    = sum over the batch of R{delta_j}

``R{grads}`` is the Hessian of the loss times ``v``, exactly: ``H v``. For a
chain (``fnn.MLP``) this is the textbook pair of recursions; in column-vector
notation, ``R{delta_{l-1}} = f''(z_{l-1}) R{z_{l-1}} (W'_l^T delta_l) +
f'(z_{l-1}) (W'_l^T R{delta_l} + V'_l^T delta_l)``.

**Cost.** Each weight matrix meets its tangent in three pairs, ``{a W,
R{a} W + a V}`` (forward), ``{delta W^T, R{delta} W^T + delta V^T}``
(backward) and ``{a^T delta, R{a}^T delta + a^T R{delta}}`` (the weight
gradient). Each pair is one product in the dual numbers, ``(a + e R{a})(W + e
V)`` with ``e^2 = 0``, whose multiplication has bilinear rank 3: three matrix
products, where the gradient needs one. So ``H v`` with its gradient takes 9
products per weight matrix against the gradient's 3 (the first layer, with
``R{x} = 0`` and no delta for ``x``: 4 against 2), and no algorithm built
from matrix products takes fewer; JAX's forward-over-reverse takes the same 9.

**Gauss-Newton** (Schraudolph 2002): drop every second-order term of the
network, keep the loss's. ``R{z_J} = J v`` from the R-forward, ``H_L J v`` at
the output, and the plain delta recursion from there gives ``J^T H_L J v``:
``graph_backward`` run on ``R{delta_J}``, nothing new. Nothing here calls
JAX's differentiation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnn.core import activations
from fnn.core.forward import INPUT, output

Array = jax.Array


class NodeTangent(NamedTuple):
    """What the R-forward keeps of node ``j``."""

    z: Array  # R{z_j}
    a: Array  # R{a_j}: what its consumers read


def tangent_of(rcache: dict, name: str) -> Array:
    """``R{a_i}`` of node ``name`` (``"x"``: the input, whose tangent is 0: ``None``)."""
    return None if name == INPUT else rcache[name].a


def graph_tangent_forward(net, params: dict, v: dict, cache: dict) -> dict:
    """The R-forward of the graph ``net`` along ``v``: ``{name: NodeTangent}`` (see the module docstring)."""
    rcache = {}
    for node in net.nodes:
        c, p, t = cache[node.name], params[node.name], v[node.name]
        terms = [output(cache, i) @ t["W"][i] for i in node.inputs]
        terms += [tangent_of(rcache, i) @ p["W"][i] for i in node.inputs if i != INPUT]
        rz = functools.reduce(jnp.add, terms) + t["b"]
        rf = activations.get(node.activation).jvp(c.z, c.f, rz)
        ra = rf if c.keep is None else rf * c.keep
        if node.residual is not None and node.residual != INPUT:
            ra = ra + tangent_of(rcache, node.residual)
        rcache[node.name] = NodeTangent(rz, ra)
    return rcache


def graph_tangent_backward(
    net, params: dict, v: dict, cache: dict, rcache: dict, deltas: list[Array], upstream: dict, rdelta: Array
) -> dict:
    """``R{grads} = H v``: the R-backward of the graph ``net`` from ``R{delta_J} = rdelta``.

    ``deltas`` and ``upstream`` are the plain backward pass's ``dL/dz_j`` (node
    order) and ``g_j`` (``fnn.core.backprop.graph_adjoint``), reused here.
    """
    delta_of = {node.name: d for node, d in zip(net.nodes, deltas)}
    out = net.nodes[-1]
    rg = {}  # node -> its contributions to R{g_j}
    rgrads = {}
    for node in reversed(net.nodes):
        c, delta = cache[node.name], delta_of[node.name]
        if node is not out:
            rg_j = functools.reduce(jnp.add, rg.pop(node.name))
            if node.residual is not None:
                rg.setdefault(node.residual, []).append(rg_j)
            if c.keep is not None:
                rg_j = rg_j * c.keep
            act = activations.get(node.activation)
            rdelta = act.vjp_tangent(c.z, c.f, upstream[node.name], rcache[node.name].z, rg_j)
        rgrads[node.name] = {
            "W": {i: _weight_tangent(cache, rcache, i, delta, rdelta) for i in node.inputs},
            "b": rdelta.sum(axis=0),
        }
        for i in node.inputs:
            if i != INPUT:
                W, V = params[node.name]["W"][i], v[node.name]["W"][i]
                rg.setdefault(i, []).append(rdelta @ W.T + delta @ V.T)
    return rgrads


def _weight_tangent(cache: dict, rcache: dict, i: str, delta: Array, rdelta: Array) -> Array:
    """``R{dW_j[i]} = R{a_i}^T delta_j + a_i^T R{delta_j}`` (the first term vanishes for ``x``)."""
    grad = output(cache, i).T @ rdelta
    return grad if i == INPUT else grad + tangent_of(rcache, i).T @ delta
