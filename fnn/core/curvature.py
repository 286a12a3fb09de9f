"""Curvature by hand: Hessian- and Gauss-Newton-vector products, diagonals and Kronecker factors.

Everything here comes from one forward cache, the delta recursion and its
R-operator twin (``fnn.core.rop``); nothing calls JAX's differentiation.
For the batch-mean loss ``L(w) = (1/B) sum_n l_n`` and a params-shaped
direction ``v``:

* ``hvp``: ``H v``, ``H = d^2 L / dw^2``, exactly (Pearlmutter 1994).
* ``gnvp``: ``G v``, ``G = J^T H_L J`` the generalised Gauss-Newton matrix
  (Schraudolph 2002), ``J = dz_out/dw`` and ``H_L = d^2 L / dz_out^2``, the
  loss's Hessian in the output pre-activation (``fnn.core.losses.output_hvp``).
  ``G`` is positive semi-definite whenever the loss is convex in ``z_out``
  (every canonical pair, and mse after any output).
* ``curvature``: the forward and backward passes run once, and products
  (``.hvp(v)``, ``.gnvp(v)``) and diagonals that reuse them, for solvers that
  multiply many vectors at one point (conjugate gradient).

Diagonals and factors, per weight matrix ``W_j[i]`` (input activations
``a_i``, deltas ``delta_j`` of the batch-mean loss, which carry its ``1/B``;
``g_n`` is the gradient of example ``n``'s own loss ``l_n``):

* ``empirical_fisher_diag``: the diagonal of ``F = (1/B) sum_n g_n g_n^T``.
  Example ``n``'s gradient of ``W_j[i]`` is ``outer(a_{i,n}, B delta_{j,n})``,
  so its diagonal is ``B (a_i^2)^T (delta_j^2)`` and ``B sum_n delta_j^2`` for
  ``b_j``: one pass, from the cache and the deltas the backward pass keeps.
* ``gauss_newton_diag``: the diagonal of ``G`` exactly. Each example's
  ``H_n`` (``n_out x n_out``) is built from the loss's Hessian rule and
  diagonalised, ``H_n = sum_k lambda_k u_k u_k^T``, so that
  ``diag(G) = sum_n sum_k lambda_k (J_n^T u_k)^2``, the per-example backward
  pass seeded with the ``u_k`` as Levenberg-Marquardt's Jacobian is.
* ``sampled_fisher_diag``: the empirical Fisher's formula on the deltas of
  targets drawn from the model's predictive distribution
  (``fnn.core.losses.sample_targets``): one backward pass; its expectation is
  the Fisher's diagonal, ``diag(G)`` for the canonical pairs.
* ``kronecker_factors``: K-FAC's blocks (Martens & Grosse 2015),
  ``A_j[i] = E[a_i a_i^T] = a_i^T a_i / B`` for each input of each node and
  ``G_j = E[dl/dz_j dl/dz_j^T] = B delta_j^T delta_j`` with sampled targets
  (per-example deltas ``B delta``), so that ``F_j[i] ~ A_j[i] (x) G_j``. The
  biases are left out of ``A`` (no homogeneous coordinate): their block is
  ``G_j``'s, since their input is 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn.core import activations, dispatch, losses
from fnn.core.protocol import Network, loss_from_cache, output_delta

Array = jax.Array

__all__ = ["Curvature", "curvature", "gnvp", "hvp"]


def _output_hvp(net: Network, cache, rcache, y: Array) -> Array:
    """``R{delta_out} = H_L R{z_out}`` for the network's output."""
    z, a = net.output_of(cache)
    return losses.output_hvp(
        activations.get(net.output), net.output, net.loss, z, a, y, net.output_tangent_of(rcache)
    )


@jax.tree_util.register_pytree_node_class
class Curvature:
    """The passes of one batch, kept for the products and diagonals at its params (``fnn.curvature``).

    ``loss`` and ``grads`` are ``fnn.backprop``'s. A pytree (its network a
    static part): it goes in and out of ``jax.jit`` and ``jax.lax`` loops.
    """

    def __init__(self, net: Network, params, x, y, cache, deltas, upstream, loss, grads):
        self.net, self.params, self.x, self.y = net, params, x, y
        self.cache, self.deltas, self.upstream, self.loss, self.grads = cache, deltas, upstream, loss, grads

    def tree_flatten(self):
        return (
            self.params,
            self.x,
            self.y,
            self.cache,
            self.deltas,
            self.upstream,
            self.loss,
            self.grads,
        ), self.net

    @classmethod
    def tree_unflatten(cls, net, children):
        return cls(net, *children)

    def hvp(self, v):
        """``H v``: the R-forward and R-backward on the kept passes."""
        return _hvp_at(self, v)

    def gnvp(self, v):
        """``G v = J^T H_L J v``: the R-forward, the loss's Hessian, the plain backward pass."""
        return _gnvp_at(self, v)

    def empirical_fisher_diag(self):
        """``diag((1/B) sum_n g_n g_n^T)``, params-shaped (see the module docstring)."""
        return _empirical_fisher_at(self)

    def gauss_newton_diag(self):
        """``diag(J^T H_L J)`` exactly, params-shaped, through the per-example backward pass."""
        return _gauss_newton_diag(self)

    def sampled_fisher_diag(self, key):
        """The empirical Fisher's diagonal on targets sampled from the model under ``key``."""
        return _sampled_fisher_at(self, key)

    def kronecker_factors(self, key):
        """``[(group name, {"A": A per input, "G": G})]`` per node (layer), ``G`` from targets sampled under
        ``key``; ``A`` is shaped as the group's ``"W"`` (one matrix, or one per input of a graph node)."""
        names = [name for name, _ in self.net.groups(self.grads)]
        return list(zip(names, _kronecker_at(self, key)))


# --------------------------------------------------------------------------- the cores


def _passes(net: Network, params, x, y, key=None):
    cache = net.forward(params, x, key=key)
    grads, deltas, upstream = net.adjoint(params, cache, output_delta(net, cache, y))
    return cache, deltas, upstream, loss_from_cache(net, cache, y), grads


@dispatch.takes_tangent
def hvp_core(net: Network, params, v, x, y, key=None):
    """``(loss, grads, H v)`` on validated inputs."""
    cache, deltas, upstream, loss, grads = _passes(net, params, x, y, key)
    rcache = net.tangent_forward(params, v, cache)
    hv = net.tangent_backward(params, v, cache, rcache, deltas, upstream, _output_hvp(net, cache, rcache, y))
    return loss, grads, hv


@dispatch.takes_tangent
def gnvp_core(net: Network, params, v, x, y, key=None):
    """``(loss, grads, G v)`` on validated inputs."""
    cache = net.forward(params, x, key=key)
    grads, _ = net.backward(params, cache, output_delta(net, cache, y))
    rcache = net.tangent_forward(params, v, cache)
    gv, _ = net.backward(params, cache, _output_hvp(net, cache, rcache, y))
    return loss_from_cache(net, cache, y), grads, gv


def curvature_core(net: Network, params, x, y, key=None) -> Curvature:
    """The kept passes on validated inputs."""
    return Curvature(net, params, x, y, *_passes(net, params, x, y, key))


@jax.jit
def _hvp_at(state: Curvature, v):
    net, params, cache = state.net, state.params, state.cache
    rcache = net.tangent_forward(params, v, cache)
    rdelta = _output_hvp(net, cache, rcache, state.y)
    return net.tangent_backward(params, v, cache, rcache, state.deltas, state.upstream, rdelta)


@jax.jit
def _gnvp_at(state: Curvature, v):
    net, params, cache = state.net, state.params, state.cache
    rcache = net.tangent_forward(params, v, cache)
    return net.backward(params, cache, _output_hvp(net, cache, rcache, state.y))[0]


# --------------------------------------------------------------------------- diagonals and factors


def sampled_deltas(state: Curvature, key) -> list[Array]:
    """The deltas of the batch-mean loss on targets sampled from the model's predictive distribution."""
    net, cache = state.net, state.cache
    z, a = net.output_of(cache)
    y = losses.sample_targets(key, net.output, net.loss, z, a)
    return net.backward(state.params, cache, output_delta(net, cache, y))[1]


def _inputs_and_deltas(net: Network, inputs, deltas) -> list[tuple[str, object, Array]]:
    """``(group name, its weight matrices' inputs, delta_j)`` per group of
    ``inputs = net.weight_inputs(cache)``, in the deltas' order; the inputs are shaped as the group's
    ``"W"`` (one ``a_i`` per ``W_j[i]``)."""
    return [(name, group["W"], d) for (name, group), d in zip(net.groups(inputs), deltas)]


def _fisher_diag(net: Network, cache, deltas):
    """``B (a_i^2)^T (delta_j^2)`` for each ``W_j[i]``, ``B sum_n delta_j^2`` for ``b_j``: params-shaped."""
    batch, inputs = deltas[0].shape[0], net.weight_inputs(cache)
    groups = [
        (
            name,
            {
                "W": jax.tree_util.tree_map(lambda a: batch * ((a * a).T @ (d * d)), w),
                "b": batch * jnp.sum(d * d, axis=0),
            },
        )
        for name, w, d in _inputs_and_deltas(net, inputs, deltas)
    ]
    return dict(groups) if isinstance(inputs, dict) else [g for _, g in groups]


def _kronecker_factors(net: Network, cache, deltas):
    """``{"A": a_i^T a_i / B per input, "G": B delta_j^T delta_j}`` per group."""
    batch = deltas[0].shape[0]
    return [
        {"A": jax.tree_util.tree_map(lambda a: a.T @ a / batch, w), "G": batch * d.T @ d}
        for _, w, d in _inputs_and_deltas(net, net.weight_inputs(cache), deltas)
    ]


@jax.jit
def _empirical_fisher_at(state: Curvature):
    return _fisher_diag(state.net, state.cache, state.deltas)


@jax.jit
def _sampled_fisher_at(state: Curvature, key):
    return _fisher_diag(state.net, state.cache, sampled_deltas(state, key))


@jax.jit
def _kronecker_at(state: Curvature, key):
    return _kronecker_factors(state.net, state.cache, sampled_deltas(state, key))


def output_hessian_eigen(net: Network, cache, y: Array, rule=losses.output_hvp) -> tuple[Array, Array]:
    """``(lam, u)``, ``(B, n_out)`` and ``(B, n_out, n_out)``: each example's
    ``H_n = sum_k lam_nk u_nk u_nk^T``, the loss's Hessian in the output pre-activation built column by
    column from its Hessian rule (``rule``: ``losses.output_hvp``, the batch mean's, which carries
    ``1/B``; ``losses.example_hvps``, each example's own)."""
    z, a = net.output_of(cache)
    act = activations.get(net.output)

    def column(e):  # H_n e for every example n, for one unit vector e
        return rule(act, net.output, net.loss, z, a, y, jnp.broadcast_to(e, z.shape))

    hessians = jax.vmap(column, out_axes=2)(jnp.eye(z.shape[-1], dtype=z.dtype))  # [n, :, k] = H_n e_k
    return jnp.linalg.eigh((hessians + jnp.swapaxes(hessians, 1, 2)) / 2)


@jax.jit
def _gauss_newton_diag(state: Curvature):
    """``sum_n sum_k lambda_nk (J_n^T u_nk)^2``
    with ``(1/B) d^2 l_n / dz^2 = sum_k lambda_nk u_nk u_nk^T``."""
    lam, u = output_hessian_eigen(state.net, state.cache, state.y)
    # seeds u_nk
    per_example = state.net.per_example_backward(state.params, state.cache, jnp.swapaxes(u, 1, 2))
    weight = lambda g: jnp.einsum("nk,nk...->...", lam, g * g)
    return jax.tree_util.tree_map(weight, per_example)


# --------------------------------------------------------------------------- public functions


def _check_second_derivatives(net: Network) -> None:
    """A ``ValueError`` before anything is traced when an activation of the net has no ``f''``."""
    nodes = getattr(getattr(net, "graph", net), "nodes", ())
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        if not (last and losses.is_fused(net.output, net.loss)):
            activations.check_second_derivative(node.activation)


def hvp(net: Network, params, x, y, v, key=None):
    """``(loss, grads, H v)``: the exact Hessian of the batch-mean loss times ``v``, by the R-operator.

    Args:
      net: as for ``fnn.backprop``, and so are ``params``, ``x`` and ``y``.
      key: as for ``fnn.backprop`` (dropout on, the same masks for the gradient
        and the product).
      v: a direction in parameter space, shaped and typed as ``params``.

    The forward pass, the delta recursion and their R-operator twins
    (``fnn.core.rop``), compiled once per network; nothing calls JAX's
    differentiation. For many products at one point, ``fnn.curvature``.
    """
    _check_second_derivatives(net)
    return dispatch.call(hvp_core, net, params, x, y, key=key, tangent=v)


def gnvp(net: Network, params, x, y, v, key=None):
    """``(loss, grads, G v)``: the generalised Gauss-Newton matrix ``J^T H_L J`` times ``v``.

    ``J = dz_out/dparams``, ``H_L`` the loss's Hessian in the output
    pre-activation (``fnn.core.losses.output_hvp``): the R-forward gives
    ``J v``, the loss's rule ``H_L J v``, and the plain delta recursion from
    there ``J^T H_L J v``. Arguments as for ``fnn.hvp``.
    """
    return dispatch.call(gnvp_core, net, params, x, y, key=key, tangent=v)


def curvature(net: Network, params, x, y, key=None) -> Curvature:
    """The forward and backward passes of one batch, run once and kept, for the curvature at ``params``.

        c = fnn.curvature(net, params, x, y)
        c.loss, c.grads                         # fnn.backprop's
        c.hvp(v), c.gnvp(v)                     # H v and G v, reusing the passes
        c.empirical_fisher_diag(), c.gauss_newton_diag(), c.sampled_fisher_diag(key)
        c.kronecker_factors(key)                # K-FAC's A and G per weight matrix

    Usable inside a user's ``jax.jit`` (the result is a pytree); the passes
    are compiled once per network, like ``fnn.backprop``'s.
    """
    if y is None:
        raise TypeError("curvature needs targets y")
    return dispatch.call(curvature_core, net, params, x, y, key=key)
