"""The references the hand-written backward pass is checked against.

``autodiff`` is ``jax.value_and_grad`` of the loss: JAX's reverse mode.
``loss_with_manual_vjp`` goes the other way: it is the same loss as a
``jax.custom_vjp`` whose backward rule is the hand-written one, so
``jax.grad``, optax or any JAX code runs fnn's backprop without knowing it.
"""

from __future__ import annotations

import functools

import jax

from fnn import dispatch, losses
from fnn.forward import loss_core
from fnn.protocol import loss_from_cache, output_delta

Array = jax.Array


def autodiff_core(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """``jax.value_and_grad`` of the loss, on validated inputs."""
    return jax.value_and_grad(loss_core, argnums=1)(net, params, x, y, key)


compiled_autodiff = jax.jit(autodiff_core, static_argnums=0)  # for inputs already checked and converted


@dispatch.fast_path(autodiff_core)
def autodiff(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """``(loss, grads)`` from ``jax.value_and_grad(fnn.loss)``, compiled with ``jax.jit`` (``key``: dropout on)."""
    return dispatch.call(autodiff_core, net, params, x, y, key=key)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _manual_loss(net, params, x, y, key=None):
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


_manual_loss.defvjp(_manual_loss_fwd, _manual_loss_bwd)


@dispatch.fast_path(_manual_loss)
def loss_with_manual_vjp(net, params, x, y, key=None) -> Array:
    """``fnn.loss`` whose gradient, under ``jax.grad``/``vjp``, is fnn's backprop.

    The backward rule returns ``dL/dparams`` from the delta recursion, ``dL/dx =
    delta_1 @ W_1^T`` and ``dL/dy`` from the loss. It composes with ``jax.jit``
    and ``jax.vmap``; per-example gradients, for instance::

        per_example = jax.vmap(jax.grad(fnn.loss_with_manual_vjp, argnums=1),
                               in_axes=(None, None, 0, 0))
        grads = per_example(net, params, x[:, None], y[:, None])  # leading axis: example

    Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) is not defined for a
    ``custom_vjp`` function. ``key`` turns dropout on, as for ``fnn.loss``.
    """
    return dispatch.call(_manual_loss, net, params, x, y, key=key)
