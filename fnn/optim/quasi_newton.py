"""Quasi-Newton training: dense BFGS and the one-step secant method.

Both move along ``d_k = -H_k g_k``, ``H_k`` an approximation of the inverse
Hessian built from the steps ``s = w_k - w_{k-1}`` and the gradient changes
``y = g_k - g_{k-1}`` (fnn's hand-written backprop), with the BFGS update
(Broyden, Fletcher, Goldfarb, Shanno 1970; Nocedal & Wright, "Numerical
Optimization", eq. 6.17), ``rho = 1 / y^T s``::

    H_{k+1} = (I - rho s y^T) H_k (I - rho y s^T) + rho s s^T

``bfgs`` (MATLAB's ``trainbfg``) keeps the dense P x P matrix, starting from
``H_0 = I`` as scipy's and MATLAB's BFGS do, and skips the update when
``y^T s`` is not positive; its memory grows as P^2 (``fnn.scale.memory`` bounds P).
``oss``, the one-step secant method (Battiti 1992, "First- and second-order
methods for learning", MATLAB's ``trainoss``), applies the update to
``H = I`` each step, keeping only the last ``(s, y)``::

    d_k = -g_k + A s + B y,   B = s^T g_k / y^T s,
    A = -(1 + y^T y / y^T s) s^T g_k / y^T s + y^T g_k / y^T s

which is L-BFGS with memory 1 and no initial scaling: it is
``optax.scale_by_lbfgs(memory_size=1, scale_init_precond=False)``. Both take
their step length from optax's zoom line search (strong Wolfe conditions,
``c1 = 1e-4``, ``c2 = 0.9``, which keep ``y^T s > 0``; the first trial is 1,
the quasi-Newton step).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn.optim.method import Method
from fnn.scale import memory


def _linesearch(max_steps: int):
    return optax.scale_by_zoom_linesearch(max_steps, initial_guess_strategy="one")


class BFGSState(NamedTuple):
    inverse_hessian: jax.Array  # H_k, (P, P)
    params: jax.Array  # w_{k-1}, flat
    grad: jax.Array  # g_{k-1}, flat
    count: jax.Array


def bfgs_update(H, s, y):
    """``(I - rho s y^T) H (I - rho y s^T) + rho s s^T`` for symmetric ``H``, as rank-two terms."""
    rho = 1.0 / (y @ s)
    Hy = H @ y
    return H - rho * (jnp.outer(s, Hy) + jnp.outer(Hy, s)) + (rho**2 * (y @ Hy) + rho) * jnp.outer(s, s)


def scale_by_bfgs() -> optax.GradientTransformation:
    """``H_k g_k`` with the dense BFGS inverse-Hessian approximation (see the module docstring)."""

    def init_fn(params):
        w = ravel_pytree(params)[0]
        memory.check("bfgs", w.size, w.dtype)
        return BFGSState(
            jnp.eye(w.size, dtype=w.dtype), jnp.zeros_like(w), jnp.zeros_like(w), jnp.zeros((), jnp.int32)
        )

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("bfgs needs params in update()")
        g, unravel = ravel_pytree(grads)
        w = ravel_pytree(params)[0]
        s, y = w - state.params, g - state.grad
        curved = (state.count > 0) & (
            y @ s > jnp.finfo(w.dtype).eps * jnp.linalg.norm(s) * jnp.linalg.norm(y)
        )
        H = jnp.where(curved, bfgs_update(state.inverse_hessian, s, y), state.inverse_hessian)
        return unravel(H @ g), BFGSState(H, w, g, state.count + 1)

    return optax.GradientTransformation(init_fn, update_fn)


def bfgs(*, max_linesearch_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    """Dense BFGS with optax's zoom line search (MATLAB's ``trainbfg``)."""
    return optax.chain(scale_by_bfgs(), optax.scale(-1.0), _linesearch(max_linesearch_steps))


def one_step_secant(*, max_linesearch_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    """Battiti's one-step secant method (MATLAB's ``trainoss``): L-BFGS of memory 1 from ``H = I``."""
    return optax.chain(
        optax.scale_by_lbfgs(memory_size=1, scale_init_precond=False),
        optax.scale(-1.0),
        _linesearch(max_linesearch_steps),
    )


METHODS = (
    Method(
        "bfgs", lambda lr, **_: bfgs(), None, full_batch=True, own_step=True, matrices=memory.MATRICES["bfgs"]
    ),
    Method("oss", lambda lr, **_: one_step_secant(), None, full_batch=True, own_step=True),
)
