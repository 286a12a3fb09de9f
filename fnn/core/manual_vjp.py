"""The loss as a ``jax.custom_vjp`` whose backward rule is the hand-written backprop.

``jax.grad``, ``jax.vjp``, optax's line searches and any JAX code that
differentiates ``manual_loss`` run fnn's delta recursion (``fnn.core.backprop``)
without knowing it. The rule returns, for an incoming cotangent ``g`` of the
scalar loss,

    dL/dparams   from the delta recursion (backward)
    dL/dx        = sum over the nodes j reading x of delta_j @ W_j[x]^T
    dL/dy        from the loss (``fnn.core.losses.target_gradient``)

each times ``g``. It lives in the core, not beside ``jax.grad`` in
``fnn.check``: it is no reference, but backprop itself handed to JAX, and the
optimizers' line searches (``fnn.optim``) differentiate it.
"""

from __future__ import annotations

import functools

import jax

from fnn.core import dispatch, losses
from fnn.core.forward import loss_core
from fnn.core.protocol import loss_from_cache, output_delta

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def manual_loss(net, params, x, y, key=None):
    """The batch-mean loss on validated inputs, differentiated by backprop."""
    return loss_core(net, params, x, y, key)


def _manual_loss_fwd(net, params, x, y, key=None):
    cache = net.forward(params, x, key=key)
    return loss_from_cache(net, cache, y), (params, cache, y, key)


def _manual_loss_bwd(net, residuals, g):
    params, cache, y, key = residuals
    grads, deltas = net.backward(params, cache, output_delta(net, cache, y))
    dx = net.input_gradient(params, deltas)
    z, a = net.output_of(cache)
    dy = losses.target_gradient(net.output, net.loss, z, a, y)
    scale = lambda t: g * t
    return jax.tree_util.tree_map(scale, grads), scale(dx), scale(dy), None  # the key has no cotangent


manual_loss.defvjp(_manual_loss_fwd, _manual_loss_bwd)


@dispatch.fast_path(manual_loss)
def loss_with_manual_vjp(net, params, x, y, key=None) -> Array:
    """``fnn.loss`` whose gradient, under ``jax.grad``/``vjp``, is fnn's backprop.

    The backward rule returns ``dL/dparams`` from the delta recursion, ``dL/dx =
    delta_1 @ W_1^T`` and ``dL/dy`` from the loss. It composes with ``jax.jit``
    and ``jax.vmap``; per-example gradients, for instance:

        per_example = jax.vmap(jax.grad(fnn.loss_with_manual_vjp, argnums=1),
                               in_axes=(None, None, 0, 0))
        grads = per_example(net, params, x[:, None], y[:, None])  # leading axis: example

    Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) is not defined for a
    ``custom_vjp`` function. ``key`` turns dropout on, as for ``fnn.loss``.
    """
    return dispatch.call(manual_loss, net, params, x, y, key=key)
