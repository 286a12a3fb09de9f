"""Gauss-Newton methods for the mse loss: Levenberg-Marquardt and Bayesian regularisation.

Both minimise sums of squares of the residuals ``e = (yhat - y).ravel()``
(every example and output), with steps from the Gauss-Newton matrix
``J^T J``, ``J = de/dw``, whose rows the network's hand-written per-example
backward pass builds (``residuals_and_jacobian``).

Memory. ``J^T J`` is P x P whatever the number of examples, and so is what
the steps need: ``normal_equations`` accumulates ``J^T J = sum_c J_c^T J_c``
and ``J^T e = sum_c J_c^T e_c`` over chunks ``c`` of examples, so that no
more than one chunk's rows of ``J`` (at most ``max(P, CHUNK_ROWS)``) exist
at once. The largest P a device affords follows from its memory
(``fnn.scale.memory``), like MATLAB's ``trainlm`` memory reduction.

Levenberg-Marquardt (``levenberg_marquardt``), for ``E_D = e^T e``::

    dw = -(J^T J + mu I)^-1 J^T e

``mu`` starts at 1e-3; a step that lowers the loss is taken and ``mu *= 0.1``;
one that does not is retried with ``mu *= 10``, until ``mu`` passes
``mu_max = 1e10``, when training stops.

Bayesian regularisation (``bayesian_regularization``, MATLAB's ``trainbr``;
MacKay 1992, "Bayesian interpolation"; Foresee & Hagan 1997, "Gauss-Newton
approximation to Bayesian learning"): the weights get a Gaussian prior, and
training minimises ``F = beta E_D + alpha E_W`` with ``E_W = w^T w`` (every
weight and bias), ``beta`` the inverse noise variance of the data's and
``alpha`` the prior's, both re-estimated as the evidence for them is
maximised. Each epoch takes one Levenberg-Marquardt step on ``F``::

    dw = -(beta J^T J + (mu + alpha) I)^-1 (beta J^T e + alpha w)

then updates them from the effective number of parameters ``gamma``, the
number of directions the data determine rather than the prior::

    gamma = P - alpha tr((beta J^T J + alpha I)^-1) = sum_i beta l_i / (beta l_i + alpha)
    alpha = gamma / (2 E_W),    beta = (N - gamma) / (2 E_D)

(``l_i`` the eigenvalues of ``J^T J``, ``N`` the number of residuals; ``J`` is
that of the step's start, ``E_W`` and ``E_D`` are at its end). They start as
MATLAB's do, from ``gamma = P``: ``alpha = P / (2 E_W)``, ``beta = (N - P) /
(2 E_D)``, or 1 where that is not positive. One eigendecomposition of ``J^T J``
per epoch serves every retried ``mu`` and ``gamma``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn.core import activations
from fnn.optim.method import Method, find_state
from fnn.optim.objective import Objective
from fnn.scale import memory
from fnn.scale.memory import CHUNK_ROWS  # rows of J per chunk when P is smaller: the matmuls stay large

MU_DECREASE, MU_INCREASE, MU_MAX = 0.1, 10.0, 1e10


def residuals_and_jacobian(net, params, x, y, key=None):
    """``(e, J)`` for the mse loss: ``e = (yhat - y).ravel()`` and ``J = de/dparams``.

    ``e`` has ``B * n_out`` entries, example-major; ``J`` is ``(B * n_out, P)``
    with columns in the order of ``jax.flatten_util.ravel_pytree(params)``. Each
    row is built like backprop's gradient, but per example and per output: the
    output delta is seeded with a unit vector ``e_k`` instead of ``dL/dyhat``,
    ``delta_L[n, k] = f_L'(z_L[n]) e_k``, and the network's own delta recursion
    pulls it back (``net.per_example_backward``; for an ``MLP``,
    ``dr_nk/dW_l = outer(a_{l-1,n}, delta_{l,nk})``, ``dr_nk/db_l = delta_{l,nk}``).
    Then ``J^T e / B`` is the gradient of the mse loss ``(1/B) sum 1/2 ||r_n||^2``.
    """
    cache = net.forward(params, x, key=key)
    z, a = net.output_of(cache)
    batch, n_out = y.shape
    seed = jnp.eye(n_out, dtype=z.dtype)[None]  # (1, K, K): one unit vector per output
    delta = activations.get(net.output).vjp(z[:, None, :], a[:, None, :], seed)  # (B, K, n_out)
    rows = net.per_example_backward(params, cache, delta)  # leaves (B, K, *shape)
    J = jnp.concatenate([leaf.reshape(batch, n_out, -1) for leaf in jax.tree_util.tree_leaves(rows)], axis=-1)
    e = (a - y).reshape(-1)
    return e, J.reshape(batch * n_out, -1)


def chunk_examples(n_params: int, n_out: int, batch: int) -> int:
    """Examples per chunk of ``normal_equations``: ``max(P, CHUNK_ROWS)`` rows of ``J``."""
    return max(1, min(batch, max(n_params, CHUNK_ROWS) // n_out))


def normal_equations(net, params, x, y, key=None, chunk: int | None = None):
    """``(J^T J, J^T e, e^T e)`` of the mse residuals, accumulated over chunks of ``chunk`` examples.

    The batch is padded to a whole number of chunks with rows whose residuals
    and Jacobian rows are masked to zero; memory is ``P^2`` plus one chunk's
    ``chunk * n_out * P``, not ``B * n_out * P``.
    """
    batch, n_out = y.shape
    n_params = ravel_pytree(params)[0].size
    chunk = chunk or chunk_examples(n_params, n_out, batch)
    if chunk >= batch:
        e, J = residuals_and_jacobian(net, params, x, y, key)
        return J.T @ J, J.T @ e, e @ e
    steps = -(-batch // chunk)
    pad = lambda t: jnp.pad(t, [(0, steps * chunk - batch)] + [(0, 0)] * (t.ndim - 1)).reshape(
        steps, chunk, *t.shape[1:]
    )
    mask = (jnp.arange(steps * chunk) < batch).reshape(steps, chunk)

    def add(carry, part):
        xc, yc, m = part
        e, J = residuals_and_jacobian(net, params, xc, yc, key)
        keep = jnp.repeat(m, n_out).astype(e.dtype)
        e, J = e * keep, J * keep[:, None]
        H, g, sse = carry
        return (H + J.T @ J, g + J.T @ e, sse + e @ e), None

    dtype = y.dtype
    start = (jnp.zeros((n_params, n_params), dtype), jnp.zeros(n_params, dtype), jnp.zeros((), dtype))
    return jax.lax.scan(add, start, (pad(x), pad(y), mask))[0]


def _n_params(params) -> tuple[int, jnp.dtype]:
    leaves = jax.tree_util.tree_leaves(params)
    return sum(p.size for p in leaves), leaves[0].dtype


def _check_update(method, value, value_fn):
    if not hasattr(value_fn, "normal_equations") or value is None:
        raise ValueError(f"{method} needs value= and value_fn= (an fnn.optimizers.Objective) in update()")
    if not value_fn.least_squares:
        raise ValueError(f"{method} minimises a sum of squared residuals: it needs the mse loss")


def _check_mu(mu, mu_max):
    if mu <= 0 or mu_max <= mu:
        raise ValueError(f"need 0 < mu < mu_max, got mu={mu}, mu_max={mu_max}")


def _damped_search(mu, mu_max, try_step, zero_step, aux):
    """Raise ``mu`` x10 until ``try_step(mu) -> (step, ok, aux)`` succeeds, or until ``mu > mu_max``.

    Returns ``(mu, accepted, step, aux)``: on success ``mu`` is lowered x0.1, and
    ``step`` and ``aux`` are the successful try's; otherwise ``step`` is
    ``zero_step`` and ``aux`` the one given."""

    def body(carry):
        mu, _, step, old = carry
        new, ok, new_aux = try_step(mu)
        return (
            jnp.where(ok, mu * MU_DECREASE, mu * MU_INCREASE),
            ok,
            jnp.where(ok, new, step),
            jnp.where(ok, new_aux, old),
        )

    return jax.lax.while_loop(
        lambda c: (~c[1]) & (c[0] <= mu_max), body, (mu, jnp.asarray(False), zero_step, aux)
    )


# --------------------------------------------------------------------------- Levenberg-Marquardt


class LevenbergMarquardtState(NamedTuple):
    mu: jax.Array
    mu_max: jax.Array
    count: jax.Array


def levenberg_marquardt(mu: float = 1e-3, *, mu_max: float = MU_MAX) -> optax.GradientTransformationExtraArgs:
    """The Levenberg-Marquardt step for the mse loss (see the module docstring).

    Needs ``value`` and an ``Objective`` as ``value_fn`` in ``update``. When no
    ``mu <= mu_max`` lowers the loss, the update is zero and ``state.mu > mu_max``:
    ``fnn.fit`` then stops.
    """
    _check_mu(mu, mu_max)

    def init_fn(params):
        n, dtype = _n_params(params)
        memory.check("levenberg_marquardt", n, dtype)
        return LevenbergMarquardtState(
            jnp.asarray(mu, dtype), jnp.asarray(mu_max, dtype), jnp.zeros((), jnp.int32)
        )

    def update_fn(
        updates, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args
    ):
        del updates, extra_args
        _check_update("levenberg_marquardt", value, value_fn)
        flat, unravel = ravel_pytree(params)
        H, g, _ = value_fn.normal_equations(params)
        eye = jnp.eye(flat.size, dtype=flat.dtype)

        def try_step(mu):
            step = jnp.linalg.solve(H + mu * eye, -g)
            new_value = value_fn(unravel(flat + step))
            return step, new_value < value, new_value  # NaN is not a success

        mu, _, step, _ = _damped_search(state.mu, state.mu_max, try_step, jnp.zeros_like(flat), value)
        return unravel(step), LevenbergMarquardtState(
            mu.astype(state.mu.dtype), state.mu_max, state.count + 1
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- Bayesian regularisation


class BayesianRegularizationState(NamedTuple):
    mu: jax.Array
    mu_max: jax.Array
    alpha: jax.Array  # the prior's precision: weight of E_W = w^T w
    beta: jax.Array  # the noise's precision: weight of E_D = e^T e
    gamma: jax.Array  # the effective number of parameters
    count: jax.Array


def _mackay(gamma, n_errors, ew, ed):
    """MacKay's re-estimates ``(alpha, beta)`` from ``gamma``, ``E_W`` and ``E_D`` (1 where undefined)."""
    alpha = jnp.where(ew > 0, gamma / (2 * ew), 1.0)
    beta = jnp.where((ed > 0) & (n_errors > gamma), (n_errors - gamma) / (2 * ed), 1.0)
    return alpha.astype(ew.dtype), beta.astype(ed.dtype)


def bayesian_regularization(
    mu: float = 5e-3, *, mu_max: float = MU_MAX
) -> optax.GradientTransformationExtraArgs:
    """Bayesian regularisation (MATLAB's ``trainbr``) for the mse loss (see the module docstring).

    ``mu`` starts at 5e-3 as in ``trainbr``. The state holds ``alpha``, ``beta``
    and ``gamma`` after each epoch (``fnn.fit`` records them in its history).
    Needs ``value`` and an ``Objective`` as ``value_fn`` in ``update``.
    """
    _check_mu(mu, mu_max)

    def init_fn(params):
        n, dtype = _n_params(params)
        memory.check("br", n, dtype)
        nan = jnp.asarray(jnp.nan, dtype)
        return BayesianRegularizationState(
            jnp.asarray(mu, dtype),
            jnp.asarray(mu_max, dtype),
            nan,
            nan,
            jnp.asarray(n, dtype),
            jnp.zeros((), jnp.int32),
        )

    def update_fn(
        updates, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args
    ):
        del updates, extra_args
        _check_update("br", value, value_fn)
        w, unravel = ravel_pytree(params)
        H, g, ed = value_fn.normal_equations(params)
        # E_D = 2 B loss: mse is (1/B) sum 1/2 e^2
        n_errors, scale = value_fn.n_residuals, 2 * value_fn.n_examples
        fresh = _mackay(jnp.asarray(w.size, w.dtype), n_errors, w @ w, ed)  # the start: gamma = P
        alpha, beta = (jnp.where(state.count == 0, f, s) for f, s in zip(fresh, (state.alpha, state.beta)))
        lam, V = jnp.linalg.eigh(H)
        lam = jnp.maximum(lam, 0.0)
        F = beta * ed + alpha * (w @ w)
        rhs = V.T @ (beta * g + alpha * w)

        def try_step(mu):
            step = -V @ (rhs / (beta * lam + mu + alpha))
            new = w + step
            ed_new = scale * value_fn(unravel(new))
            return step, beta * ed_new + alpha * (new @ new) < F, ed_new  # NaN is not a success

        mu, accepted, step, ed_new = _damped_search(state.mu, state.mu_max, try_step, jnp.zeros_like(w), ed)
        new = w + step
        gamma = jnp.sum(jnp.where(beta * lam > 0, beta * lam / (beta * lam + alpha), 0.0))
        a_new, b_new = _mackay(gamma, n_errors, new @ new, ed_new)
        keep = lambda old, updated: jnp.where(accepted, updated, old).astype(old.dtype)
        state = BayesianRegularizationState(
            mu.astype(state.mu.dtype),
            state.mu_max,
            keep(alpha, a_new),
            keep(beta, b_new),
            keep(state.gamma, gamma),
            state.count + 1,
        )
        return unravel(step), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- the records


def _mu_report(state) -> dict:
    """``mu`` and its ceiling, from either method's state."""
    found = find_state(state, LevenbergMarquardtState) or find_state(state, BayesianRegularizationState)
    return {"mu": found.mu, "mu_max": found.mu_max}


def _bayesian_report(state) -> dict:
    """``mu``, ``mu_max`` and MacKay's ``gamma``, ``alpha`` and ``beta`` at the end of the epoch."""
    found = find_state(state, BayesianRegularizationState)
    return {**_mu_report(state), "gamma": found.gamma, "alpha": found.alpha, "beta": found.beta}


def _mu_stop(reports: dict) -> str | None:
    """MATLAB's stop: ``mu`` passed ``mu_max`` without a step that lowered the loss."""
    if reports["mu"] > reports["mu_max"]:
        return f"mu exceeded {reports['mu_max']:g} without lowering the loss"
    return None


def _mu_halt(reports: dict):
    """``_mu_stop`` on the device."""
    return reports["mu"] > reports["mu_max"]


METHODS = (
    Method(
        "levenberg_marquardt",
        lambda lr, **_: levenberg_marquardt(),
        None,
        full_batch=True,
        own_step=True,
        least_squares=True,
        matrices=memory.MATRICES["levenberg_marquardt"],
        report=_mu_report,
        stop=_mu_stop,
        halt=_mu_halt,
        aliases=("lm",),
    ),
    Method(
        "br",
        lambda lr, **_: bayesian_regularization(),
        None,
        full_batch=True,
        own_step=True,
        least_squares=True,
        matrices=memory.MATRICES["br"],
        report=_bayesian_report,
        stop=_mu_stop,
        halt=_mu_halt,
    ),
)
