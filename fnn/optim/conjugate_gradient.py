"""Conjugate-gradient training: Fletcher-Reeves, Polak-Ribiere, Powell-Beale restarts, and Moller's scaled CG.

Each step moves along a direction ``d_k`` built from the gradient ``g_k``
(fnn's hand-written backprop) and the direction before::

    d_k = -g_k + beta_k d_{k-1}

``cgf`` (Fletcher & Reeves 1964)   ``beta_k = g_k^T g_k / g_{k-1}^T g_{k-1}``
``cgp`` (Polak & Ribiere 1969)     ``beta_k = g_k^T (g_k - g_{k-1}) / g_{k-1}^T g_{k-1}``
``cgb`` (Powell 1977, Beale's restarts) the Hestenes-Stiefel
``beta_k = g_k^T y_k / d_{k-1}^T y_k`` (``y_k = g_k - g_{k-1}``) plus Beale's
term along the direction ``d_t`` of the last restart,
``gamma_k d_t`` with ``gamma_k = g_k^T y_t / d_t^T y_t`` (``y_t = g_{t+1} - g_t``;
zero at ``k = t + 1``). It restarts with ``d = -g`` when successive gradients
are far from orthogonal, ``|g_{k-1}^T g_k| >= 0.2 |g_k|^2``, or when ``d_k``
is not downhill enough, outside ``-1.2 |g|^2 <= d_k^T g_k <= -0.8 |g|^2``.

Every method restarts with steepest descent after P steps and whenever
``d_k`` is not a descent direction. The step length along ``d_k`` comes from
optax's zoom line search (strong Wolfe conditions, ``c1 = 1e-4``,
``c2 = 0.1``, as conjugate gradients need ``c2 < 1/2``; the first trial is
the previous step length). For a quadratic and exact line searches the three
coincide and reach the minimum in at most P steps.

``scg`` (Moller 1993, "A scaled conjugate gradient algorithm for fast
supervised learning", MATLAB's ``trainscg``) avoids the line search: a
Levenberg-Marquardt-like scale ``lambda`` keeps a finite-difference estimate
(or, with ``curvature="gnvp"`` or ``"hvp"``, the exact product by hand) of
the curvature along ``p_k`` positive, ``s_k = (g(w + sigma_k p_k) - g(w)) /
sigma_k``, and the step ``alpha_k = mu_k / delta_k`` is the minimum of the
quadratic model, accepted when the comparison ``Delta_k`` of the model's and
the loss's decrease is ``>= 0`` (see ``scaled_conjugate_gradient``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn.core import validation
from fnn.optim.method import Method
from fnn.optim.objective import Objective

RULES = ("fletcher_reeves", "polak_ribiere", "powell_beale")


def _finite(x):
    return jnp.where(jnp.isfinite(x), x, 0.0)


class ConjugateDirectionState(NamedTuple):
    direction: jax.Array  # d_{k-1}, flat
    grad: jax.Array  # g_{k-1}, flat
    restart_direction: jax.Array  # d_t, the direction of the last restart (Powell-Beale)
    restart_grad_change: jax.Array  # y_t = g_{t+1} - g_t (Powell-Beale)
    since_restart: jax.Array  # k - t of the last step
    count: jax.Array


def _beta(rule, g, g_prev, d_prev):
    y = g - g_prev
    if rule == "fletcher_reeves":
        return _finite((g @ g) / (g_prev @ g_prev))
    if rule == "polak_ribiere":
        return _finite((g @ y) / (g_prev @ g_prev))
    return _finite((g @ y) / (d_prev @ y))  # Hestenes-Stiefel, the two-term part of Powell-Beale


def conjugate_direction(rule: str) -> optax.GradientTransformation:
    """The descent direction ``d_k`` of the conjugate-gradient ``rule`` (see the module docstring).

    Its output is the direction itself (downhill, not a gradient): chain a line
    search after it, as ``conjugate_gradient`` does.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")

    def init_fn(params):
        zeros = jnp.zeros_like(ravel_pytree(params)[0])
        return ConjugateDirectionState(
            zeros, zeros, zeros, zeros, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
        )

    def update_fn(grads, state, params=None):
        del params
        g, unravel = ravel_pytree(grads)
        gg = g @ g
        since = state.since_restart + 1  # k - t of this step
        d = -g + _beta(rule, g, state.grad, state.direction) * state.direction
        restart = (state.count == 0) | (since >= g.size)
        y_t = jnp.where(since == 1, g - state.grad, state.restart_grad_change)
        if rule == "powell_beale":
            later = since >= 2
            d_t = state.restart_direction
            d = d + jnp.where(later, _finite((g @ y_t) / (d_t @ y_t)), 0.0) * d_t
            slope = d @ g
            restart |= jnp.abs(g @ state.grad) >= 0.2 * gg
            restart |= later & ((slope > -0.8 * gg) | (slope < -1.2 * gg))
        restart |= ~(d @ g < 0)  # not downhill (or not finite)
        d = jnp.where(restart, -g, d)
        state = ConjugateDirectionState(
            d,
            g,
            jnp.where(restart, d, state.restart_direction),
            jnp.where(restart, 0.0, y_t),
            jnp.where(restart, 0, since),
            state.count + 1,
        )
        return unravel(d), state

    return optax.GradientTransformation(init_fn, update_fn)


def nonlinear_cg(rule: str, *, max_linesearch_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    """``cgf``, ``cgp`` or ``cgb``: ``conjugate_direction(rule)`` and optax's zoom line search."""
    return optax.chain(
        conjugate_direction(rule),
        optax.scale_by_zoom_linesearch(max_linesearch_steps, curv_rtol=0.1, initial_guess_strategy="keep"),
    )


# --------------------------------------------------------------------------- scaled conjugate gradient


class ScaledConjugateGradientState(NamedTuple):
    direction: jax.Array  # p_k, flat
    residual: jax.Array  # r_k = -g(w_k)
    mu: jax.Array  # p_k^T r_k
    delta: jax.Array  # p_k^T s_k, scaled by lambda
    lam: jax.Array  # lambda_k, the scale
    lam_bar: jax.Array  # lambda-bar_k
    success: jax.Array  # whether the last step was taken
    count: jax.Array


CURVATURES = ("finite_difference", "gnvp", "hvp")


def scaled_conjugate_gradient(
    sigma: float = 5e-5, lam: float = 5e-7, *, curvature: str = "finite_difference"
) -> optax.GradientTransformationExtraArgs:
    """Moller's scaled conjugate gradient (MATLAB's ``trainscg``; its ``sigma`` and ``lambda``).

    ``curvature``: how ``s = C p`` is found. ``"finite_difference"`` (the
    default, Moller's and MATLAB's) differences two gradients as below;
    ``"gnvp"`` and ``"hvp"`` compute it exactly by hand, the Gauss-Newton
    product ``G p`` or the Hessian product ``H p`` from one forward cache
    (``fnn.curvature``), at about the cost of the gradient the difference
    needs, with no step ``sigma`` to choose. ``G`` is positive semi-definite
    (for losses convex in the output), so the scale ``lambda`` then only
    has to make up for the model's misfit, not for negative curvature.

    One ``update`` is one iteration of Moller's algorithm, with ``r = -g``:

    1. after a taken step, the new direction ``p = r`` (first step, and every
       P-th) or ``p = r + beta p_old``, ``beta = (|r|^2 - r^T r_old) / mu_old``;
       the curvature along it ``delta = p^T s``,
       ``s = (g(w + sigma_k p) - g(w)) / sigma_k``, ``sigma_k = sigma / |p|``;
    2. scale: ``delta += (lambda - lambda_bar) |p|^2``; if ``delta <= 0``
       (negative curvature) ``lambda_bar = 2 (lambda - delta / |p|^2)``,
       ``delta = -delta + lambda |p|^2``, ``lambda = lambda_bar``;
    3. the step ``alpha = mu / delta``, ``mu = p^T r``, and the comparison
       ``Delta = 2 delta (E(w) - E(w + alpha p)) / mu^2``;
    4. ``Delta >= 0``: take it, ``lambda_bar = 0``, and ``lambda /= 4`` if
       ``Delta >= 0.75``; otherwise stay, ``lambda_bar = lambda``;
    5. if ``Delta < 0.25``: ``lambda += delta (1 - Delta) / |p|^2``.

    The new gradient of step 1 is the next ``update``'s (``fnn.fit`` computes
    it anyway); each iteration evaluates one more gradient (``s``) and one
    loss. Needs ``value`` and ``value_fn`` in ``update``.
    """
    validation.check_positive_number("sigma", sigma)
    validation.check_positive_number("lam", lam)
    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")

    def init_fn(params):
        w = ravel_pytree(params)[0]
        zero = jnp.zeros((), w.dtype)
        return ScaledConjugateGradientState(
            jnp.zeros_like(w),
            jnp.zeros_like(w),
            zero,
            zero,
            jnp.asarray(lam, w.dtype),
            zero,
            jnp.asarray(True),
            jnp.zeros((), jnp.int32),
        )

    def update_fn(grads, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args):
        del extra_args
        if params is None or value is None or value_fn is None:
            raise ValueError("scg needs params, value= and value_fn= in update()")
        g, unravel = ravel_pytree(grads)
        w = ravel_pytree(params)[0]
        r = -g
        moved = state.success  # the last step was taken (or this is the first): a new direction
        restart = state.count % r.size == 0
        beta = _finite((r @ r - r @ state.residual) / state.mu)
        p = jnp.where(moved, jnp.where(restart, r, r + beta * state.direction), state.direction)
        pp = p @ p

        def along_p():  # p^T C p
            if curvature != "finite_difference":
                return p @ value_fn.curvature_product(params, curvature)[1](p)
            sigma_k = sigma / jnp.sqrt(pp)
            return p @ (jax.grad(lambda v: value_fn(unravel(v)))(w + sigma_k * p) - g) / sigma_k

        delta = jax.lax.cond(moved & (pp > 0), along_p, lambda: state.delta)
        lam_k, lam_bar = state.lam, jnp.where(moved, 0.0, state.lam_bar)
        delta = delta + (lam_k - lam_bar) * pp
        negative = delta <= 0
        lam_bar = jnp.where(negative, 2 * (lam_k - delta / pp), lam_bar)
        delta = jnp.where(negative, -delta + lam_k * pp, delta)
        lam_k = jnp.where(negative, lam_bar, lam_k)
        mu = p @ r
        alpha = mu / delta
        comparison = 2 * delta * (value - value_fn(unravel(w + alpha * p))) / mu**2
        comparison = jnp.where(jnp.isfinite(comparison), comparison, -1.0)  # a non-finite loss: a failed step
        ok = (comparison >= 0) & (pp > 0)
        lam_bar = jnp.where(ok, 0.0, lam_k)
        lam_k = jnp.where(ok & (comparison >= 0.75), lam_k / 4, lam_k)
        lam_k = jnp.where(comparison < 0.25, lam_k + _finite(delta * (1 - comparison) / pp), lam_k)
        step = jnp.where(ok, alpha * p, jnp.zeros_like(p))
        dtype = w.dtype
        state = ScaledConjugateGradientState(
            p,
            r,
            mu.astype(dtype),
            delta.astype(dtype),
            lam_k.astype(dtype),
            lam_bar.astype(dtype),
            ok,
            state.count + 1,
        )
        return unravel(step), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


scg = scaled_conjugate_gradient  # MATLAB's name for it (trainscg), public as fnn.optimizers.scg

METHODS = (
    Method("scg", lambda lr, **_: scaled_conjugate_gradient(), None, full_batch=True, own_step=True),
    Method("cgf", lambda lr, **_: nonlinear_cg("fletcher_reeves"), None, full_batch=True, own_step=True),
    Method("cgp", lambda lr, **_: nonlinear_cg("polak_ribiere"), None, full_batch=True, own_step=True),
    Method("cgb", lambda lr, **_: nonlinear_cg("powell_beale"), None, full_batch=True, own_step=True),
)
