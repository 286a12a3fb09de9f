"""The reference the hand-written backward pass is checked against: JAX's reverse mode.

``autodiff`` is ``jax.value_and_grad`` of the loss. (The other direction,
the loss whose ``jax.grad`` runs fnn's backprop, is
``fnn.loss_with_manual_vjp``.)
"""

from __future__ import annotations

import jax

from fnn.core import dispatch
from fnn.core.forward import loss_core

Array = jax.Array


def autodiff_core(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """``jax.value_and_grad`` of the loss, on validated inputs."""
    return jax.value_and_grad(loss_core, argnums=1)(net, params, x, y, key)


compiled_autodiff = jax.jit(autodiff_core, static_argnums=0)  # for inputs already checked and converted


@dispatch.fast_path(autodiff_core)
def autodiff(net, params, x, y, key=None) -> tuple[Array, list[dict]]:
    """``(loss, grads)`` from ``jax.value_and_grad(fnn.loss)``, compiled with ``jax.jit``
    (``key``: dropout on)."""
    return dispatch.call(autodiff_core, net, params, x, y, key=key)
