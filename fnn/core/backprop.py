"""Backpropagation: the delta recursion, written by hand, over the adjoint graph.

With ``delta_j = dL/dz_j`` (batch, n_j) and ``g_j = dL/da_j``, the backward
pass visits the nodes of the forward pass in reverse (``fnn.core.forward``), each
node passing its contribution back to the nodes it read (micrograd's
``backward``: a node read by several others receives several contributions):

    delta_J = dL/dz_J                                   (the output; fnn.protocol.output_delta)
    g_j = sum over consumers k of delta_k @ W_k[j]^T  +  sum over nodes k with residual j of g_k
    delta_j = f'_j(z_j) * m_j / (1 - p_j) * g_j         (m_j: the dropout mask, if any)
    dL/dW_j[i] = a_i^T @ delta_j                        (n_i, n_j)
    dL/db_j = sum over the batch of delta_j             (n_j,)

For a chain (``fnn.MLP``, node ``l`` reading node ``l - 1``) each node has one
consumer and this is the textbook recursion

    delta_{l-1} = f'_{l-1}(z_{l-1}) * (delta_l @ W_l^T),   dL/dW_l = a_{l-1}^T @ delta_l;

in column-vector notation, with ``W'_l = W_l^T`` of shape (n_l, n_{l-1}),
``delta_{l-1} = f'(z_{l-1}) ⊙ (W'_l^T delta_l)`` and ``dL/dW'_l = delta_l a_{l-1}^T``.
The MLP runs this same function: there is no second recursion.

The delta of the output node already carries the 1/B of the batch mean, so
the sums above add up to the gradient of the mean loss. Nothing here calls
JAX's differentiation (``grad``, ``vjp``, ``jvp``, ``linearize``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fnn.core import activations, dispatch, protocol
from fnn.core.forward import INPUT, output

Array = jax.Array

NARROW = 32  # layers with at most this many units: weight_gradient transposes the product


def weight_gradient(a_in: Array, delta: Array) -> Array:
    """``dL/dW_l = a_{l-1}^T @ delta_l``, shape (n_{l-1}, n_l).

    The same numbers can be computed as ``(delta_l^T @ a_{l-1})^T``, and for a
    narrow layer (``n_l <= NARROW``, an output layer for instance) that
    orientation is the faster one on CPU. XLA's CPU backend lowers
    ``a_{l-1}^T @ delta_l`` to a strided reduction over the batch for one
    unit, and to a product at half the speed for a few units, while
    ``delta_l^T @ a_{l-1}`` stays a product with a wide output (measured for a
    64x128 ``a_{l-1}``: 10.6 vs 5.0 us for 10 units, 2.5 vs 1.3 us for one).
    ``optimization_barrier`` keeps XLA's simplifier from folding the
    transpose back into the product. For wider layers the direct form is as
    fast or faster (at batch 1 it is an outer product; the other form adds a
    transpose of the whole matrix). Other backends get the direct form: GPU
    matmul libraries take transposed operands as they are, and the barrier
    there only adds a kernel (on an H200 the barrier form was a few us slower
    per product at batch 64). ``platform_dependent`` picks the form when the
    program is compiled; no branch is left in it.
    """
    if delta.shape[1] > NARROW:
        return a_in.T @ delta
    return jax.lax.platform_dependent(a_in, delta, cpu=_transposed_product, default=_direct_product)


def _direct_product(a_in: Array, delta: Array) -> Array:
    return a_in.T @ delta


def _transposed_product(a_in: Array, delta: Array) -> Array:
    return jax.lax.optimization_barrier(delta.T @ a_in).T


def graph_backward(
    net, params: dict, cache: dict, delta: Array, per_example: bool = False
) -> tuple[dict, list[Array]]:
    """The adjoint recursion of the graph ``net`` (an ``fnn.Graph``)
    from the output delta ``delta = dL/dz_J``.

    Returns ``(grads, deltas)``: ``grads`` has the structure of ``params``; ``deltas`` holds ``dL/dz_j`` of
    every node, in node order.

    ``per_example``: ``delta`` is ``(B, K, n_J)``, ``K`` output deltas of each
    example (Levenberg-Marquardt seeds them with the outputs' unit vectors), and
    each gradient is kept per example and seed instead of summed over the
    batch: ``dW_j[i][n, k] = outer(a_{i,n}, delta_{j,nk})``, ``db_j[n, k] =
    delta_{j,nk}``, leaves ``(B, K, *shape)``. The recursion is the same.
    """
    grads, deltas, _ = graph_adjoint(net, params, cache, delta, per_example)
    return grads, deltas


def graph_adjoint(
    net, params: dict, cache: dict, delta: Array, per_example: bool = False
) -> tuple[dict, list[Array], dict]:
    """``graph_backward``'s recursion, also returning each hidden node's ``g_j = dL/da_j`` as its activation
    received it (after the dropout mask): ``{name: g_j}``, what the R-operator's backward pass needs
    (``fnn.core.rop``)."""
    gradient = _per_example_gradient if per_example else _batch_gradient
    seeded = (lambda t: t[:, None]) if per_example else (lambda t: t)  # (B, n) -> (B, 1, n) against (B, K, n)
    out = net.nodes[-1]
    # Mixed precision (fnn.scale.precision): delta_J is float32 like the loss; the
    # recursion runs in the dtype of the nodes' inputs (bfloat16). In full
    # precision both dtypes agree and this is no operation at all.
    delta = delta.astype(output(cache, out.inputs[0]).dtype)
    g = {}  # node -> its contributions to dL/da, from the nodes already visited
    grads, deltas, upstream = {}, {}, {}
    for node in reversed(net.nodes):
        c = cache[node.name]
        if node is not out:
            g_j = functools.reduce(jnp.add, g.pop(node.name))
            if node.residual is not None:  # a_j = ... + a_r passes g_j to r unchanged
                g.setdefault(node.residual, []).append(g_j)
            if c.keep is not None:
                g_j = g_j * seeded(c.keep)
            upstream[node.name] = g_j
            delta = activations.get(node.activation).vjp(seeded(c.z), seeded(c.f), g_j)
        W = params[node.name]["W"]
        grads[node.name] = {
            "W": {i: gradient(output(cache, i), delta) for i in node.inputs},
            "b": delta if per_example else delta.sum(axis=0),
        }
        deltas[node.name] = delta
        for i in node.inputs:
            if i != INPUT:
                g.setdefault(i, []).append(delta @ W[i].T)
    return grads, [deltas[node.name] for node in net.nodes], upstream


def input_gradient(net, params: dict, deltas: list[Array]) -> Array:
    """``dL/dx = sum over the nodes j reading x of delta_j @ W_j[x]^T``."""
    terms = [d @ params[n.name]["W"][INPUT].T for n, d in zip(net.nodes, deltas) if INPUT in n.inputs]
    return functools.reduce(jnp.add, terms)


def _batch_gradient(a_in: Array, delta: Array) -> Array:
    return weight_gradient(a_in, delta)


def _per_example_gradient(a_in: Array, delta: Array) -> Array:
    return a_in[:, None, :, None] * delta[:, :, None, :]


def backprop_core(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """Forward pass with cache, then the backward pass, on validated inputs (any ``fnn.protocol`` network)."""
    cache = net.forward(params, x, key=key)
    grads, _ = net.backward(params, cache, protocol.output_delta(net, cache, y))
    return protocol.loss_from_cache(net, cache, y), grads


compiled_backprop = jax.jit(backprop_core, static_argnums=0)  # for inputs already checked and converted


@dispatch.fast_path(backprop_core)
def backprop(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """``(loss, grads)`` by hand-written backpropagation, compiled with ``jax.jit``.

    Args:
      net: the network description (an ``MLP``, a ``Graph``, any ``fnn.protocol`` network).
      params: as from ``fnn.init``; for an ``MLP``, ``[{"W": (n_in, n_out), "b": (n_out,)}, ...]``.
      x: inputs, (batch, n_in).
      y: targets, (batch, n_out), or integer labels (batch,) with cross_entropy.
      key: a PRNG key turns dropout on (its masks drawn from the key); ``None``: no dropout.
    """
    return dispatch.call(backprop_core, net, params, x, y, key=key)
