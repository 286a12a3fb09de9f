"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse 2015), as an optax transform.

The curvature of the batch-mean loss ``h`` is approximated block-diagonally,
one block per weight matrix ``W_j[i]`` of every node ``j`` (an MLP layer; an
input ``i`` of a graph node), each block a Kronecker product::

    F_j[i] ~ A_j[i] (x) G_j,   A_j[i] = E[abar_i abar_i^T],   G_j = E[Dz_j Dz_j^T]

with ``a_i`` the input of ``W_j[i]`` cached by the forward pass
(``net.weight_inputs``) and ``Dz_j = dl/dz_j`` the deltas of one example's
loss. No registration and no tracing: everything comes from the kept passes
of ``Objective.curvature`` (``fnn.core.curvature``), dropout masks included
(the Objective's key). With ``W`` shaped ``(n_i, n_j)`` and ``vec`` the
row-major flattening of ``ravel_pytree``, ``(A (x) G)^-1 vec(X) =
vec(A^-1 X G^-1)``, so each block's step is two small solves. Each choice,
with its default:

* **Biases folded in** (the paper's homogeneous coordinate): ``abar_i =
  [a_i, 1]``, so ``[W_j[i]; b_j]`` is one block. Kept separate, ``b_j`` would
  have a ``G_j``-only block and lose its correlation with ``W_j[i]``; folded,
  a one-layer linear model's Gauss-Newton matrix *is* ``A (x) G`` and K-FAC is
  exact there (``tests/test_kfac.py``). A graph node with several inputs
  carries ``b_j`` with its first weight matrix in the pytree's order
  (``jax.tree_util.tree_leaves(group["W"])``, input names sorted): ``b_j``
  belongs to one block only, and any one of them captures its
  correlations with that input; the others' ``abar_i = a_i``.
* **The G factor** (``estimator="sampled"``, the paper's): the deltas of
  targets drawn from the model's predictive distribution
  (``fnn.core.losses.sample_targets``), ``G_j = (1/B) sum_n Dz_{j,n}
  Dz_{j,n}^T``: one backward pass. Its key is ``fold_in(PRNGKey(seed),
  count)``, from the state, not the Objective's dropout key (which may be
  ``None``). ``estimator="exact"`` takes the expectation over the
  predictive distribution exactly: each example's Hessian of its loss in the
  logits ``H_n = sum_k lam_nk u_nk u_nk^T`` (``fnn.core.losses.example_hvps``,
  diagonalised as ``Curvature.gauss_newton_diag`` does) seeds ``K = n_out``
  backward passes per example with ``sqrt(lam_nk) u_nk``, and ``G_j = (1/B)
  sum_n sum_k b_{j,nk} b_{j,nk}^T`` over the resulting deltas ``b``: one
  backward pass over ``B n_out`` rows. Negative ``lam_nk`` (a loss not convex
  in the logits, e.g. mse after a sigmoid) are clipped to 0, so that ``G_j``
  stays positive semi-definite.
* **Moving averages** (``factor_decay=0.95``): ``F <- eps F + (1 - eps) F_batch``
  with ``eps = min(1 - 1/k, factor_decay)`` at step ``k = 1, 2, ...`` (the
  paper's): the first step uses its batch alone.
* **Factored Tikhonov damping**, with ``gamma = sqrt(lambda + eta)``
  (``eta = weight_decay``)::

      (A + pi gamma I) (x) (G + gamma/pi I),   pi = sqrt((tr A / dim A) / (tr G / dim G))

  whose excess over ``A (x) G`` is ``A (x) (gamma/pi) I + pi gamma I (x) G +
  (lambda + eta) I``. The paper adapts ``gamma`` by its own rule (every ``T2``
  steps); here it is tied to ``lambda`` as above, one damping to adapt.
* **Eigendecompositions** (``inverse_every=20``, the paper's ``T3``):
  ``A = Q_A diag(s_A) Q_A^T`` and ``G = Q_G diag(s_G) Q_G^T`` are refreshed on
  steps ``0, T3, 2 T3, ...`` (``jax.lax.cond``: only those steps pay for
  ``eigh``) and held in the state between. The step's damping is applied to
  the held eigenvalues every step, ``(A + c I)^-1 X (G + d I)^-1 = Q_A [(Q_A^T
  X Q_G) / ((s_A + c) (s_G + d)^T)] Q_G^T``, so an adapted ``lambda`` acts at
  once rather than at the next refresh (two more small products per block
  than held inverses; ``pi`` from the held ``s``, whose sums are the traces).
* **Damping** (``damping=0.01``): ``lambda``, Levenberg-Marquardt's rule on
  the reduction ratio every ``T1`` steps (``damping_every=5``, the paper's),
  ``rho = (h(theta + delta) - h(theta)) / M(delta)``; ``rho < 1/4`` (or not
  finite): ``lambda /= omega1``, ``rho > 3/4``: ``lambda *= omega1``,
  ``omega1 = (19/20)^T1``. ``M(delta) = grad h^T delta + 1/2 delta^T (G_GN +
  (lambda + eta) I) delta`` with the exact Gauss-Newton products
  (``Curvature.gnvp``). The paper starts at 150 for its deep autoencoders,
  whose loss sums over hundreds of outputs; fnn's losses are batch means,
  whose Gauss-Newton eigenvalues are of order 1 and below. The rule moves
  ``lambda`` by only ``omega1 ~ 0.77`` every 5 steps (150 -> 0.01 takes ~190
  rule applications), while a ``lambda`` on the low side costs little as the
  model-chosen ``alpha`` shortens an over-long proposal: on a small tanh
  regression MLP (20 full-batch steps) and a softmax classifier (30), a
  start of 1 ended at 6x and 160x the loss of a start of 0.01 (0.1 in
  between), lambda falling all the way in every run.
  **A floor, ``min_damping=1e-6``** (not in the paper): where the model fits
  each step well, ``rho`` stays near 1 and the rule lowers ``lambda`` without
  end. On the deep autoencoder of digits (``scripts/autoencoder.py``,
  batch 512) it fell below 1e-12 in 400 epochs, under float32's resolution of
  the factors' eigenvalues, and every run then climbed from its best error
  (0.03-0.08) back to the mean image's plateau or above (4-15). With the
  floor (1e-6 or 1e-4 alike) every run kept going down, to 0.002-0.010 at the
  end of its 45 s.
* **Step size and momentum** (``learning_rate=None``, ``momentum=None``:
  chosen by the model, the paper's section 7): ``delta = alpha Delta + mu
  delta_prev``, with ``Delta = -F_hat^-1 grad h`` the K-FAC proposal, and
  ``(alpha, mu)`` the minimiser of ``M``::

      [Delta^T C Delta    Delta^T C dprev] [alpha]     [grad h^T Delta]
      [dprev^T C Delta    dprev^T C dprev] [ mu  ] = - [grad h^T dprev],   C = G_GN + (lambda + eta) I

  two exact Gauss-Newton products per step. On the first step (``dprev = 0``)
  and whenever the 2 x 2 matrix is singular it is 1-D: ``mu = 0``, ``alpha =
  -grad h^T Delta / Delta^T C Delta``. A float given for either fixes it (the
  other, if ``None``, is then the 1-D minimiser given it).
  **Unlike the paper, the model's ``mu`` is kept in ``[0, 0.999]``**
  (``MAX_MOMENTUM``; the exact minimiser of ``M`` under that bound,
  ``model_step``). The paper's minibatches hold thousands of examples; on a
  few hundred, ``C`` is the curvature of that minibatch alone, nearly flat
  along much of ``dprev``, and the unconstrained ``mu`` reached 7, 55 and
  -153 on digits (64-128-128-10, batch 64) on the way to a loss of 1e10. At
  K-FAC's default minibatch of 256, 30 epochs on digits diverged for 1 of 8
  seeds unconstrained and for none constrained, at the same test accuracy
  (97.6-98.4%). At batch 64 it still diverged for 2 of 3 seeds: K-FAC needs
  large minibatches (``fnn.fit`` and ``fnn train`` default to 256).
* **Weight decay** (``weight_decay=0.0``): ``eta``; ``h`` gains ``eta/2
  ||theta||^2`` (its gradient ``eta theta``, its curvature ``eta I``).

The state holds the scalars ``damping``, ``learning_rate`` (``alpha``) and
``momentum`` (``mu``) of the last step, the reduction ratio ``rho`` last
measured, the step count, the seed, the factors and their eigendecompositions
and the previous step ``delta_prev``.

One ``update`` costs one curvature pass (forward and backward), one backward
pass for the sampled deltas (``B n_out`` rows with ``"exact"``), two
Gauss-Newton products (none with both ``alpha`` and ``mu`` fixed, but one on
the ``T1`` steps), one loss every ``T1`` steps and ``eigh`` of every factor
every ``T3`` steps.

``update`` needs ``params`` and ``value_fn=`` (an ``fnn.optimizers.Objective``);
``params`` and ``grads`` are the network's params tree, whose weight matrices
are the blocks (its ``fnn.optimizers.Method`` record says ``flat=False``, so
``fnn.fit`` hands it the tree).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.tree_utils import tree_add_scale, tree_scale, tree_vdot

from fnn.core import losses, validation
from fnn.core.curvature import output_hessian_eigen, sampled_deltas
from fnn.optim.method import Method, find_state
from fnn.optim.objective import Objective

__all__ = [
    "ESTIMATORS",
    "KfacState",
    "adapt_damping",
    "block_update",
    "eigen",
    "kfac",
    "kronecker_factors",
    "model_step",
    "pi_correction",
]

Array = jax.Array
ESTIMATORS = ("sampled", "exact")
OMEGA_BASE = 19 / 20  # omega1 = (19/20)^T1 (the paper's)
MAX_MOMENTUM = 0.999  # the model-chosen mu lies in [0, MAX_MOMENTUM] (see "Step size and momentum")


class KfacState(NamedTuple):
    count: Array  # steps taken, int32
    seed: Array  # the target sampling's seed: step k samples under fold_in(PRNGKey(seed), k)
    damping: Array  # lambda
    learning_rate: Array  # alpha of the last step
    momentum: Array  # mu of the last step
    rho: Array  # the reduction ratio last measured (nan before)
    factors: Any  # per group (as the params' groups): {"A": [A per weight matrix], "G": G}
    eigens: Any  # the same, each factor as (eigenvalues, eigenvectors), from the last refresh
    previous: Any  # delta_prev, shaped as the network's params


# --------------------------------------------------------------------------- the pure pieces


def eigen(factor: Array) -> tuple[Array, Array]:
    """``(s, Q)`` with ``factor = Q diag(s) Q^T``; ``s`` clipped at 0 (the factors are positive semi-definite,
    rounding aside)."""
    s, q = jnp.linalg.eigh((factor + factor.T) / 2)
    return jnp.maximum(s, 0), q


def pi_correction(s_a: Array, s_g: Array) -> Array:
    """``pi = sqrt((tr A / dim A) / (tr G / dim G))`` from the eigenvalues;
    a vanishing trace counts as ``tiny``."""
    tiny = jnp.finfo(s_a.dtype).tiny
    return jnp.sqrt(jnp.maximum(jnp.mean(s_a), tiny) / jnp.maximum(jnp.mean(s_g), tiny))


def block_update(grad: Array, eig_a, eig_g, damping) -> Array:
    """``(A + pi gamma I)^-1 grad (G + gamma/pi I)^-1``, ``gamma = sqrt(damping)``,
    from ``eigen(A)``, ``eigen(G)``.

    ``grad`` is ``(dim A, dim G)``; the product is
    ``Q_A [(Q_A^T grad Q_G) / ((s_A + pi gamma)(s_G + gamma/pi)^T)] Q_G^T``."""
    (s_a, q_a), (s_g, q_g) = eig_a, eig_g
    pi, gamma = pi_correction(s_a, s_g), jnp.sqrt(damping)
    inner = (q_a.T @ grad @ q_g) / jnp.outer(s_a + pi * gamma, s_g + gamma / pi)
    return q_a @ inner @ q_g.T


def adapt_damping(damping, rho, every: int, floor=0.0):
    """Levenberg-Marquardt's rule: ``/ omega1`` when ``rho < 1/4`` (or not finite), ``x omega1`` when
    ``rho > 3/4``, ``omega1 = (19/20)^every``; never below ``floor``."""
    omega, rho = OMEGA_BASE**every, jnp.asarray(rho)
    new = jnp.where(~(rho >= 0.25), damping / omega, jnp.where(rho > 0.75, damping * omega, damping))
    return jnp.maximum(new, floor)


def model_step(b: Array, m: Array, alpha=None, mu=None) -> tuple[Array, Array]:
    """``(alpha, mu)`` minimising ``M = b^T x + 1/2 x^T m x`` over ``x = (alpha, mu)`` with ``0 <= mu <=
    MAX_MOMENTUM``, those given held fixed.

    ``b = (grad^T Delta, grad^T dprev)``, ``m`` the 2 x 2 ``C``-Gram matrix of ``(Delta, dprev)``. The 2-D
    solve falls back to ``mu = 0`` where ``m`` is singular (``dprev = 0`` or parallel to ``Delta``). ``M`` is
    convex, so minimising it over ``alpha`` leaves a convex parabola in ``mu`` whose minimiser is the 2-D
    solve's ``mu``: clipped into the interval it is the constrained minimiser, and ``alpha`` the 1-D minimiser
    given it."""
    if alpha is not None and mu is not None:
        return jnp.asarray(alpha, b.dtype), jnp.asarray(mu, b.dtype)
    if alpha is not None:
        alpha = jnp.asarray(alpha, b.dtype)
        return alpha, jnp.clip(_minimiser(b[1] + alpha * m[0, 1], m[1, 1]), 0.0, MAX_MOMENTUM)
    if mu is not None:
        mu = jnp.asarray(mu, b.dtype)
        return _minimiser(b[0] + mu * m[0, 1], m[0, 0]), mu
    det = m[0, 0] * m[1, 1] - m[0, 1] ** 2
    solvable = det > 1e3 * jnp.finfo(b.dtype).eps * m[0, 0] * m[1, 1]
    mu2 = (-b[1] * m[0, 0] + b[0] * m[0, 1]) / jnp.where(solvable, det, 1.0)
    mu = jnp.where(solvable, jnp.clip(mu2, 0.0, MAX_MOMENTUM), 0.0)
    return _minimiser(b[0] + mu * m[0, 1], m[0, 0]), mu


def _minimiser(slope: Array, curvature: Array) -> Array:
    """``-slope / curvature``, the minimiser of ``slope t + 1/2 curvature t^2``
    (0 where ``curvature <= 0``)."""
    return jnp.where(curvature > 0, -slope / jnp.where(curvature > 0, curvature, 1.0), 0.0)


def model_value(b: Array, m: Array, x: Array) -> Array:
    """``M(x) = b^T x + 1/2 x^T m x``."""
    return b @ x + 0.5 * x @ m @ x


# --------------------------------------------------------------------------- groups and blocks


def _map_groups(fn, tree):
    """``fn`` on each group of a params-shaped ``tree``
    (a dict or a list of groups, as ``Network.groups``)."""
    if isinstance(tree, dict):
        return {name: fn(group) for name, group in tree.items()}
    return [fn(group) for group in tree]


def _regroup(net, like, values: list):
    """``values`` (one per group, in ``net.groups`` order) in the group structure of ``like``."""
    names = [name for name, _ in net.groups(like)]
    return dict(zip(names, values)) if isinstance(like, dict) else list(values)


def _factor_shapes(group) -> dict:
    """Zero factors of one params group: ``A`` per weight matrix (the first with the bias row), ``G``."""
    ws, b = jax.tree_util.tree_leaves(group["W"]), group["b"]
    dims = [w.shape[0] + (k == 0) for k, w in enumerate(ws)]
    return {"A": [jnp.zeros((d, d), b.dtype) for d in dims], "G": jnp.zeros((b.shape[0],) * 2, b.dtype)}


def _join_bias(group) -> list[Array]:
    """The group's blocks ``[[W_0; b], W_1, ...]`` (weight matrices in pytree order)."""
    ws = jax.tree_util.tree_leaves(group["W"])
    return [jnp.concatenate([ws[0], group["b"][None]], axis=0), *ws[1:]]


def _split_bias(like, blocks: list[Array]) -> dict:
    """The inverse of ``_join_bias``, in the structure of the group ``like``."""
    ws = [blocks[0][:-1], *blocks[1:]]
    return {
        "W": jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like["W"]), ws),
        "b": blocks[0][-1],
    }


def _with_ones(a: Array) -> Array:
    return jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)


# --------------------------------------------------------------------------- the factors of one batch


def _sampled_deltas(c, key) -> tuple[list[Array], Array]:
    """Per group, the per-example deltas ``B delta_j`` of targets sampled from the model,
    and their weight ``1/B`` (``G_j = (1/B) sum_n Dz_n Dz_n^T``)."""
    batch = c.net.output_of(c.cache)[0].shape[0]
    return [batch * d for d in sampled_deltas(c, key)], 1.0 / batch


def _exact_deltas(c) -> tuple[list[Array], Array]:
    """Per group, the rows ``b_{j,nk}`` seeded by ``sqrt(lam_nk) u_nk``
    (``H_n = sum_k lam_nk u_nk u_nk^T``, the Hessian of example ``n``'s loss in the logits),
    ``(B n_out, n_j)``, and their weight ``1/B``."""
    lam, u = output_hessian_eigen(c.net, c.cache, c.y, losses.example_hvps)
    batch, n_out = lam.shape
    seeds = jnp.sqrt(jnp.maximum(lam, 0))[:, :, None] * jnp.swapaxes(u, 1, 2)  # [n, k] = sqrt(lam_nk) u_nk
    rows = jax.tree_util.tree_map(lambda t: jnp.repeat(t, n_out, axis=0), c.cache)  # example n, K times
    return c.net.backward(c.params, rows, seeds.reshape(batch * n_out, n_out))[1], 1.0 / batch


def kronecker_factors(c, key, estimator: str = "sampled") -> list[dict]:
    """``{"A": [abar^T abar / B per weight matrix], "G": G_j}`` per group of the kept passes ``c``
    (an ``fnn.core.curvature.Curvature``), in ``net.groups`` order; see the module docstring."""
    net = c.net
    deltas, weight = _exact_deltas(c) if estimator == "exact" else _sampled_deltas(c, key)
    out = []
    for (_, group), d in zip(net.groups(net.weight_inputs(c.cache)), deltas):
        inputs = jax.tree_util.tree_leaves(group["W"])
        inputs = [_with_ones(inputs[0]), *inputs[1:]]
        out.append({"A": [a.T @ a / a.shape[0] for a in inputs], "G": weight * (d.T @ d)})
    return out


# --------------------------------------------------------------------------- the transform


def _check_options(
    damping,
    learning_rate,
    momentum,
    estimator,
    factor_decay,
    damping_every,
    inverse_every,
    weight_decay,
    seed,
) -> None:
    """A ``ValueError`` naming the first bad option."""
    validation.check_positive_number("damping", damping)
    validation.check_positive_number("learning_rate", learning_rate, allow_none=True)
    if momentum is not None:
        validation.check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1) or None")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    validation.check_number("factor_decay", factor_decay, lambda v: 0 <= v < 1, "in [0, 1)")
    validation.check_positive_int("damping_every", damping_every)
    validation.check_positive_int("inverse_every", inverse_every)
    validation.check_number(
        "weight_decay", weight_decay, lambda v: math.isfinite(v) and v >= 0, "a number >= 0"
    )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")


def _check_tree(params) -> None:
    """K-FAC's blocks are the network's weight matrices: it takes the params tree, never one flat vector."""
    if not isinstance(params, (dict, list, tuple)):
        raise ValueError(
            f"kfac takes the network's params tree (a list or dict of {{'W', 'b'}}), got "
            f"{type(params).__name__}; as a Method it is declared flat=False"
        )


def _init_state(tree, damping, learning_rate, momentum, seed) -> KfacState:
    dtype = jax.tree_util.tree_leaves(tree)[0].dtype
    factors = _map_groups(_factor_shapes, tree)
    eigens = jax.tree_util.tree_map(
        lambda f: (jnp.zeros(f.shape[0], dtype), jnp.eye(f.shape[0], dtype=dtype)), factors
    )
    scalar = lambda v: jnp.asarray(v, dtype)
    return KfacState(
        jnp.zeros((), jnp.int32),
        jnp.asarray(seed, jnp.uint32),
        scalar(damping),
        scalar(learning_rate or 1.0),
        scalar(momentum or 0.0),
        scalar(jnp.nan),
        factors,
        eigens,
        jax.tree_util.tree_map(jnp.zeros_like, tree),
    )


def _refreshed(state: KfacState, c, estimator, factor_decay, inverse_every):
    """``(factors, eigens)``: the moving averages with this batch's factors, decomposed every ``T3`` steps."""
    dtype = state.damping.dtype
    key = jax.random.fold_in(jax.random.PRNGKey(state.seed), state.count)
    k = (state.count + 1).astype(dtype)
    eps = jnp.minimum(1 - 1 / k, factor_decay)
    batch_factors = _regroup(c.net, state.factors, kronecker_factors(c, key, estimator))
    factors = jax.tree_util.tree_map(
        lambda old, new: eps * old + (1 - eps) * new, state.factors, batch_factors
    )
    eigens = jax.lax.cond(
        state.count % inverse_every == 0,
        lambda f: jax.tree_util.tree_map(eigen, f),
        lambda f: state.eigens,
        factors,
    )
    return factors, eigens


def _proposal(net, grad, eigens, damping):
    """``Delta = -F_hat^-1 grad``, block by block (``block_update``)."""

    def propose(g, e):
        return _split_bias(g, [-block_update(w, ea, e["G"], damping) for w, ea in zip(_join_bias(g), e["A"])])

    return _regroup(
        net, grad, [propose(g, e) for (_, g), (_, e) in zip(net.groups(grad), net.groups(eigens))]
    )


def _model_terms(c, grad, directions, shift):
    """``(b, m)`` of the quadratic model along ``directions`` (Delta, dprev): ``b_i = grad^T d_i``,
    ``m_ij = d_i^T (G_GN + shift I) d_j`` with exact Gauss-Newton products."""
    cv = [tree_add_scale(c.gnvp(v), shift, v) for v in directions]
    b = jnp.stack([tree_vdot(grad, d) for d in directions])
    m = jnp.array([[tree_vdot(d, v) for v in cv] for d in directions])
    dtype = jax.tree_util.tree_leaves(grad)[0].dtype
    return b.astype(dtype), m.astype(dtype)


def _reduction_ratio(value_fn, params, updates, theta, delta, h0, predicted, weight_decay):
    """``rho = (h(theta + delta) - h(theta)) / M(delta)``;
    ``-inf`` when not finite or no decrease was predicted."""
    h1 = value_fn(optax.apply_updates(params, updates))
    if weight_decay:
        h0 = h0 + 0.5 * weight_decay * tree_vdot(theta, theta)
        moved = optax.apply_updates(theta, delta)
        h1 = h1 + 0.5 * weight_decay * tree_vdot(moved, moved)
    rho = (h1 - h0) / predicted
    return jnp.where(jnp.isfinite(rho) & (predicted < 0), rho, -jnp.inf).astype(predicted.dtype)


def kfac(
    damping: float = 0.01,
    *,
    learning_rate: float | None = None,
    momentum: float | None = None,
    estimator: str = "sampled",
    factor_decay: float = 0.95,
    damping_every: int = 5,
    inverse_every: int = 20,
    weight_decay: float = 0.0,
    min_damping: float = 1e-6,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """K-FAC (Martens & Grosse 2015) as an optax transform;
    the math and every default in the module docstring.

    Args:
      damping: the initial ``lambda`` (> 0), adapted every ``damping_every`` steps (``T1``).
      learning_rate: ``alpha`` (> 0) fixed; ``None``: chosen by the model.
      momentum: ``mu`` (in [0, 1)) fixed; ``None``: chosen by the model.
      estimator: ``"sampled"`` or ``"exact"``, the G factor's expectation over the predictive distribution.
      factor_decay: the largest ``eps`` of the factors' moving averages, in [0, 1).
      inverse_every: ``T3``, steps between eigendecompositions of the factors.
      weight_decay: ``eta >= 0``, an L2 term ``eta/2 ||theta||^2`` in the loss.
      min_damping: the floor under the adapted ``lambda``, in ``[0, damping]``.
      seed: of the targets sampled for ``G``.
    """
    _check_options(
        damping,
        learning_rate,
        momentum,
        estimator,
        factor_decay,
        damping_every,
        inverse_every,
        weight_decay,
        seed,
    )
    validation.check_number(
        "min_damping",
        min_damping,
        lambda v: math.isfinite(v) and 0 <= v <= damping,
        f"in [0, damping={damping}]",
    )
    both_fixed = learning_rate is not None and momentum is not None

    def init_fn(params):
        _check_tree(params)
        return _init_state(params, damping, learning_rate, momentum, seed)

    def update_fn(grads, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args):
        del extra_args
        if params is None or value_fn is None:
            raise ValueError("kfac needs params and value_fn= in update()")
        _check_tree(params)
        theta, grad = params, grads
        grad = tree_add_scale(grad, weight_decay, theta) if weight_decay else grad
        c = value_fn.curvature(params)
        factors, eigens = _refreshed(state, c, estimator, factor_decay, inverse_every)
        shift = state.damping + weight_decay
        proposal = _proposal(c.net, grad, eigens, shift)
        directions = (proposal, state.previous)
        dtype = state.damping.dtype
        b, m = (
            (jnp.zeros(2, dtype), jnp.zeros((2, 2), dtype))
            if both_fixed
            else _model_terms(c, grad, directions, shift)
        )
        alpha, mu = model_step(b, m, learning_rate, momentum)
        delta = tree_add_scale(tree_scale(mu, state.previous), alpha, proposal)
        updates = delta

        def measure(_):  # the reduction ratio, every T1 steps
            bm = _model_terms(c, grad, directions, shift) if both_fixed else (b, m)
            predicted = model_value(*bm, jnp.stack([alpha, mu]))
            h0 = c.loss if value is None else value
            return _reduction_ratio(value_fn, params, updates, theta, delta, h0, predicted, weight_decay)

        due = state.count % damping_every == 0
        rho = jax.lax.cond(due, measure, lambda _: state.rho, None)
        new_lam = jnp.where(due, adapt_damping(state.damping, rho, damping_every, min_damping), state.damping)
        return updates, KfacState(
            state.count + 1,
            state.seed,
            new_lam.astype(dtype),
            alpha.astype(dtype),
            mu.astype(dtype),
            rho,
            factors,
            eigens,
            delta,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _report(state) -> dict:
    """The damping ``lambda``, the reduction ratio ``rho`` last measured and the momentum ``mu``
    of the epoch's last step (its ``alpha`` is the state's ``learning_rate``, which ``fnn.fit`` records
    for every method)."""
    found = find_state(state, KfacState)
    return {"damping": found.damping, "rho": found.rho, "momentum": found.momentum}


METHODS = (
    Method("kfac", lambda lr, **_: kfac(), None, batch_size=256, own_step=True, flat=False, report=_report),
)
