"""Hessian-free optimisation (Martens 2010, "Deep learning via Hessian-free optimization").

Each step minimises the damped quadratic model of the loss ``f`` around ``w``::

    phi(p) = g^T p + 1/2 p^T (C + lambda I) p,        g = grad f(w)

by truncated, preconditioned conjugate gradient on ``(C + lambda I) p = -g``,
where ``C`` is the generalised Gauss-Newton matrix ``G = J^T H_L J``
(``curvature="gnvp"``, the default: positive semi-definite for every loss
convex in the output pre-activation) or the exact Hessian ``H``
(``curvature="hvp"``: CG then stops at the first direction of non-positive
curvature). The products ``C d`` reuse one forward cache and delta recursion
per step (``fnn.curvature``); the matrix is never formed. Martens' details,
each with its default:

* **Damping** (``damping=1.0``, Martens' initial ``lambda``): Levenberg-
  Marquardt's, adapted by the reduction ratio
  ``rho = (f(w + p) - f(w)) / phi(p)``: ``lambda *= 3/2`` when
  ``rho < 1/4``, ``lambda *= 2/3`` when ``rho > 3/4``.
* **Warm start** (``warm_start=0.95``): CG starts from the previous step's
  last CG iterate times 0.95, so that search directions of low curvature,
  which CG finds late, carry over from step to step.
* **Stopping** (``max_cg_iterations=250``, ``cg_progress=5e-4``,
  ``cg_tol=1e-10``): CG stops at iteration ``i > k = max(10, 0.1 i)`` once
  ``phi(p_i) < 0`` and ``(phi(p_i) - phi(p_{i-k})) / phi(p_i) < k eps``
  (relative progress below ``eps = cg_progress`` per iteration), when the
  preconditioned residual is below ``cg_tol`` times its starting size, or
  at ``max_cg_iterations``.
* **CG backtracking**: the iterates ``p_i`` at ``i = ceil(1.3^j)`` are kept;
  walking back from the last, the one before is taken while it lowers
  ``f`` (the model was fitted to the curvature, the step is judged on the
  loss).
* **Preconditioner** (``preconditioner_exponent=0.75``):
  ``M = (diag(F) + lambda)^(3/4)``, ``F = (1/B) sum_n g_n g_n^T`` the
  empirical Fisher from the same passes (``Curvature.empirical_fisher_diag``);
  ``0`` turns it off.
* **Line search** (``armijo=1e-2``, ``shrink=0.8``, ``max_line_search=60``):
  Armijo's backtracking from ``alpha = 1``, ``f(w + alpha p) <= f(w) +
  c alpha g^T p``; no step at all when none of the tries is accepted.
* **Curvature on a subset** (``curvature_fraction=1.0``): the products use
  ``ceil(fraction B)`` consecutive examples of the batch, a different block
  each step, while the gradient and the loss use the whole batch (Martens
  used a fraction of the data for ``C``; fnn's default is the whole batch,
  whose products are cheap on the data sets fnn is used with).

One ``update`` is one Hessian-free step. Its cost, in gradient-equivalents:
one curvature pass, ``1 + i`` products (about 2 gradients each: an R-forward
and a backward pass), and one loss per backtracking and line-search try.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn.core import validation
from fnn.optim.method import Method, find_state
from fnn.optim.objective import Objective

CURVATURES = ("gnvp", "hvp")
GROWTH = 1.3  # the iterates at ceil(1.3^j) are kept for backtracking


class HessianFreeState(NamedTuple):
    direction: jax.Array  # the last CG iterate of the previous step, flat (the warm start / 0.95)
    damping: jax.Array  # lambda
    rho: jax.Array  # the reduction ratio of the last step
    cg_iterations: jax.Array  # CG iterations of the last step
    count: jax.Array


class CGResult(NamedTuple):
    x: jax.Array  # the last iterate
    phi: jax.Array  # phi at the last iterate
    saved: jax.Array  # (len(schedule), P): the iterates at the schedule's iterations (zeros beyond)
    saved_phi: jax.Array  # phi at them
    n_saved: jax.Array  # how many of the schedule were reached
    iterations: jax.Array


def save_schedule(max_iterations: int) -> tuple[int, ...]:
    """The iterations ``ceil(1.3^j) <= max_iterations`` whose iterates CG keeps, ascending, distinct."""
    its, j = [], 0
    while (i := math.ceil(GROWTH**j)) <= max_iterations:
        if i not in its:
            its.append(i)
        j += 1
    return tuple(its)


class _CG(NamedTuple):
    i: jax.Array
    x: jax.Array
    r: jax.Array  # b - A x
    z: jax.Array  # M^-1 r
    d: jax.Array  # the search direction
    rz: jax.Array
    phis: jax.Array  # phi(x_0), ..., phi(x_i)
    saved: jax.Array
    saved_phi: jax.Array
    n_saved: jax.Array
    done: jax.Array


def linear_cg(
    matvec: Callable,
    b,
    x0,
    *,
    preconditioner=None,
    max_iterations: int = 250,
    tol: float = 1e-10,
    progress: float = 5e-4,
) -> CGResult:
    """Preconditioned CG on ``A x = b`` (``A = matvec``, symmetric) from ``x0``, Martens' way.

    Minimises ``phi(x) = 1/2 x^T A x - b^T x``, kept for every iterate from
    ``phi(x) = -1/2 x^T (b + r)``, ``r = b - A x``. Stops at
    ``max_iterations``; when ``sqrt(r^T M^-1 r) <= tol sqrt(r_0^T M^-1 r_0)``;
    at Martens' relative progress test (``progress > 0``, see the module
    docstring); or before a direction ``d`` with ``d^T A d <= 0`` (the
    iterate so far is kept). ``preconditioner``: the diagonal ``M``
    (``None``: the identity). Iterates at ``save_schedule`` are kept.
    """
    schedule = jnp.asarray(save_schedule(max_iterations), jnp.int32)
    m = jnp.ones_like(b) if preconditioner is None else preconditioner
    r = b - matvec(x0)
    z = r / m
    rz = r @ z
    phis = jnp.zeros(max_iterations + 1, b.dtype).at[0].set(-0.5 * x0 @ (b + r))
    start = _CG(
        jnp.int32(0),
        x0,
        r,
        z,
        z,
        rz,
        phis,
        jnp.zeros((schedule.size, b.size), b.dtype),
        jnp.zeros(schedule.size, b.dtype),
        jnp.int32(0),
        ~(rz > 0),
    )
    stop_at = tol**2 * rz

    def step(s: _CG) -> _CG:
        ad = matvec(s.d)
        curv = s.d @ ad
        bent = ~(curv > 0)  # non-positive (or non-finite) curvature: stop before stepping
        alpha = jnp.where(bent, 0.0, s.rz / jnp.where(bent, 1.0, curv))
        x, r = s.x + alpha * s.d, s.r - alpha * ad
        z = r / m
        rz = r @ z
        i = s.i + 1
        phi = -0.5 * x @ (b + r)
        phis = s.phis.at[i].set(phi)
        keep = (
            (s.n_saved < schedule.size) & (schedule[jnp.minimum(s.n_saved, schedule.size - 1)] == i) & ~bent
        )
        slot = jnp.minimum(s.n_saved, schedule.size - 1)
        saved = jnp.where(keep, s.saved.at[slot].set(x), s.saved)
        saved_phi = jnp.where(keep, s.saved_phi.at[slot].set(phi), s.saved_phi)
        k = jnp.maximum(10, i // 10)
        stalled = (
            (progress > 0) & (i > k) & (phi < 0) & ((phi - phis[jnp.maximum(i - k, 0)]) / phi < k * progress)
        )
        done = bent | (rz <= stop_at) | stalled | (i >= max_iterations)
        new = _CG(i, x, r, z, z + (rz / s.rz) * s.d, rz, phis, saved, saved_phi, s.n_saved + keep, done)
        return optax.tree_utils.tree_where(bent, s._replace(done=jnp.asarray(True)), new)

    end = jax.lax.while_loop(lambda s: ~s.done, step, start)
    return CGResult(end.x, end.phis[end.i], end.saved, end.saved_phi, end.n_saved, end.i)


def backtrack(loss: Callable, w, cg: CGResult):
    """Martens' CG backtracking: ``(p, f(w + p), phi(p))``, walking back over the kept iterates.

    Starts from the last iterate; the one kept before is taken while ``f``
    is lower there (not finite counts as higher).
    """
    f_last = loss(w + cg.x)
    last_is_kept = (cg.n_saved > 0) & jnp.all(cg.saved[jnp.maximum(cg.n_saved - 1, 0)] == cg.x)
    j0 = cg.n_saved - 1 - last_is_kept.astype(jnp.int32)

    def better(state):
        j, _, f, _, going = state
        return going & (j >= 0)

    def step(state):
        j, p, f, phi, _ = state
        f_j = loss(w + cg.saved[j])
        lower = f_j < f  # NaN: not lower
        return (
            j - 1,
            jnp.where(lower, cg.saved[j], p),
            jnp.where(lower, f_j, f),
            jnp.where(lower, cg.saved_phi[j], phi),
            lower,
        )

    _, p, f, phi, _ = jax.lax.while_loop(
        better, step, (j0, cg.x, _finite_or_inf(f_last), cg.phi, jnp.asarray(True))
    )
    return p, f, phi


def _finite_or_inf(f):
    return jnp.where(jnp.isfinite(f), f, jnp.inf)


def armijo(loss: Callable, w, p, f0, slope, f1, *, c: float = 1e-2, shrink: float = 0.8, tries: int = 60):
    """The largest ``alpha = shrink^k`` (``k < tries``) with ``f(w + alpha p) <= f0 + c alpha slope``;
    ``0`` if none.

    ``f1 = f(w + p)``, already known from the backtracking."""

    def not_yet(state):
        k, alpha, f = state
        return (k < tries) & ~(f <= f0 + c * alpha * slope)

    def step(state):
        k, alpha, _ = state
        alpha = alpha * shrink
        return k + 1, alpha, loss(w + alpha * p)

    k, alpha, f = jax.lax.while_loop(not_yet, step, (jnp.int32(1), jnp.ones_like(f0), f1))
    return jnp.where(f <= f0 + c * alpha * slope, alpha, 0.0)


def adapt_damping(damping, rho):
    """Levenberg-Marquardt's rule: ``x 3/2`` when ``rho < 1/4`` (or not finite),
    ``x 2/3`` when ``rho > 3/4``."""
    return jnp.where(~(rho >= 0.25), damping * 1.5, jnp.where(rho > 0.75, damping * (2 / 3), damping))


def hessian_free(
    damping: float = 1.0,
    *,
    curvature: str = "gnvp",
    max_cg_iterations: int = 250,
    cg_tol: float = 1e-10,
    cg_progress: float = 5e-4,
    warm_start: float = 0.95,
    preconditioner_exponent: float = 0.75,
    armijo_c: float = 1e-2,
    curvature_fraction: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    """Martens' Hessian-free optimiser as an optax transform (see the module docstring for the math).

    Needs ``params``, ``value=`` and ``value_fn=`` (an ``fnn.optimizers.Objective``) in ``update``; sees the
    params as one flat vector or as the tree alike.
    """
    if curvature not in CURVATURES:
        raise ValueError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    validation.check_positive_number("damping", damping)
    max_cg_iterations = validation.check_positive_int("max_cg_iterations", max_cg_iterations)
    validation.check_number("cg_tol", cg_tol, lambda v: 0 <= v < 1, "in [0, 1)")
    validation.check_number("cg_progress", cg_progress, lambda v: 0 <= v < 1, "in [0, 1)")
    validation.check_number("warm_start", warm_start, lambda v: 0 <= v <= 1, "in [0, 1]")
    validation.check_number(
        "preconditioner_exponent", preconditioner_exponent, lambda v: 0 <= v <= 1, "in [0, 1]"
    )
    validation.check_number("armijo_c", armijo_c, lambda v: 0 < v < 1, "in (0, 1)")
    validation.check_number("curvature_fraction", curvature_fraction, lambda v: 0 < v <= 1, "in (0, 1]")

    def init_fn(params):
        w = ravel_pytree(params)[0]
        return HessianFreeState(
            jnp.zeros_like(w),
            jnp.asarray(damping, w.dtype),
            jnp.asarray(jnp.nan, w.dtype),
            jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32),
        )

    def update_fn(grads, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args):
        del extra_args
        if params is None or value is None or value_fn is None:
            raise ValueError("hessian_free needs params, value= and value_fn= in update()")
        w, unravel = ravel_pytree(params)
        g = ravel_pytree(grads)[0]
        lam = state.damping
        rows = _rows(value_fn.n_examples, curvature_fraction, state.count)
        c, product = value_fn.curvature_product(params, curvature, rows)
        m = (ravel_pytree(c.empirical_fisher_diag())[0] + lam) ** preconditioner_exponent
        cg = linear_cg(
            lambda v: product(v) + lam * v,
            -g,
            warm_start * state.direction,
            preconditioner=m,
            max_iterations=max_cg_iterations,
            tol=cg_tol,
            progress=cg_progress,
        )
        loss = lambda v: value_fn(unravel(v))
        p, f_p, phi_p = backtrack(loss, w, cg)
        rho = (f_p - value) / phi_p
        rho = jnp.where(jnp.isfinite(rho) & (phi_p < 0), rho, -jnp.inf)
        alpha = armijo(loss, w, p, value, g @ p, f_p, c=armijo_c)
        new = HessianFreeState(
            cg.x, adapt_damping(lam, rho).astype(w.dtype), rho.astype(w.dtype), cg.iterations, state.count + 1
        )
        return unravel(alpha * p), new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _rows(batch: int, fraction: float, count):
    """``(start, size)`` of the curvature's examples this step (``None``: the whole batch)."""
    size = math.ceil(fraction * batch)
    return None if size >= batch else ((count * size) % batch, size)


def _report(state) -> dict:
    """The damping ``lambda``, the reduction ratio ``rho`` and the CG iterations of the epoch's last step."""
    found = find_state(state, HessianFreeState)
    return {"damping": found.damping, "rho": found.rho, "cg_iterations": found.cg_iterations}


METHODS = (
    Method(
        "hessian_free", lambda lr, **_: hessian_free(), None, full_batch=True, own_step=True, report=_report
    ),
)
