"""Backpropagation: the delta recursion, written by hand.

With ``delta_l = dL/dz_l`` (batch, n_l), the backward pass mirrors the forward
pass layer by layer, last layer first:

    delta_L = dL/dz_L                                  (fnn.protocol.output_delta)
    dL/dW_l = a_{l-1}^T @ delta_l                      (n_{l-1}, n_l)
    dL/db_l = sum over the batch of delta_l            (n_l,)
    delta_{l-1} = f'_{l-1}(z_{l-1}) * (delta_l @ W_l^T)

In the textbook's column-vector notation, with ``W'_l = W_l^T`` of shape
(n_l, n_{l-1}), the same recursion reads
``delta_{l-1} = f'(z_{l-1}) ⊙ (W'_l^T delta_l)`` and ``dL/dW'_l = delta_l a_{l-1}^T``.

The delta of the output layer already carries the 1/B of the batch mean, so
the sums above add up to the gradient of the mean loss. Nothing here calls
JAX's differentiation (``grad``, ``vjp``, ``jvp``, ``linearize``).
"""

from __future__ import annotations

import jax

from fnn import activations, dispatch, protocol
from fnn.forward import LayerCache
from fnn.network import MLP

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


def backward(net: MLP, params: list[dict], cache: list[LayerCache], delta: Array,
             per_example: bool = False) -> tuple[list[dict], list[Array]]:
    """The delta recursion from the output delta ``delta = dL/dz_L``. Returns ``(grads, deltas)``.

    ``grads`` has the structure of ``params`` and ``deltas[l] = dL/dz_{l+1}``,
    one per layer; ``dL/dx = deltas[0] @ W_1^T``.

    ``per_example``: ``delta`` is ``(B, K, n_L)``, ``K`` output deltas of each
    example (Levenberg-Marquardt seeds them with the outputs' unit vectors), and
    each gradient is kept per example and seed instead of summed over the
    batch: ``dW_l[n, k] = outer(a_{l-1,n}, delta_{l,nk})``, ``db_l[n, k] =
    delta_{l,nk}``, leaves ``(B, K, *shape)``. The recursion is the same.
    """
    names = net.layer_activations
    # Mixed precision (fnn.precision): delta_L is float32 like the loss; the
    # recursion below runs in the dtype of the layers' inputs (bfloat16). In
    # full precision both dtypes agree and this is no operation at all.
    delta = delta.astype(cache[-1].a_in.dtype)
    gradient = _per_example_gradient if per_example else _batch_gradient
    seeded = (lambda t: t[:, None]) if per_example else (lambda t: t)  # (B, n) -> (B, 1, n) against (B, K, n)
    grads, deltas = [None] * net.n_layers, [None] * net.n_layers
    for l in reversed(range(net.n_layers)):
        grads[l], deltas[l] = gradient(cache[l].a_in, delta), delta
        if l > 0:
            below = cache[l - 1]
            delta = activations.get(names[l - 1]).vjp(seeded(below.z), seeded(below.a), delta @ params[l]["W"].T)
    return grads, deltas


def _batch_gradient(a_in: Array, delta: Array) -> dict:
    return {"W": weight_gradient(a_in, delta), "b": delta.sum(axis=0)}


def _per_example_gradient(a_in: Array, delta: Array) -> dict:
    return {"W": a_in[:, None, :, None] * delta[:, :, None, :], "b": delta}


def backprop_core(net, params, x, y) -> tuple[Array, list[dict]]:
    """Forward pass with cache, then the backward pass, on validated inputs (any ``fnn.protocol`` network)."""
    cache = net.forward(params, x)
    grads, _ = net.backward(params, cache, protocol.output_delta(net, cache, y))
    return protocol.loss_from_cache(net, cache, y), grads


compiled_backprop = jax.jit(backprop_core, static_argnums=0)  # for inputs already checked and converted


@dispatch.fast_path(backprop_core)
def backprop(net: MLP, params: list[dict], x, y) -> tuple[Array, list[dict]]:
    """``(loss, grads)`` by hand-written backpropagation, compiled with ``jax.jit``.

    Args:
      net: the network description.
      params: ``[{"W": (n_in, n_out), "b": (n_out,)}, ...]`` as from ``fnn.init``.
      x: inputs, (batch, n_in).
      y: targets, (batch, n_out), or integer labels (batch,) with cross_entropy.
    """
    return dispatch.call(backprop_core, net, params, x, y)
