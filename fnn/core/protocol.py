"""The network protocol: what every part of fnn needs from a network, and nothing more.

``fit``, ``evaluate``, Levenberg-Marquardt's per-example Jacobian, the
diagnostics, the precision policy, checkpoints, ``check_gradients`` and
``finite_differences`` use a network only through the members below. ``fnn.MLP``
implements them for a chain of dense layers and ``fnn.Graph`` for any feed-forward
connectivity; any other network that subclasses
``Network`` and implements them trains with ``fnn.fit`` (every optimizer),
passes ``fnn.check_gradients``, resumes from checkpoints and so on
(``tests/test_protocol.py`` defines one inside the test).

A network is a frozen, hashable description holding no arrays (a frozen
dataclass): it is a static argument of ``jax.jit``, so one description
compiles once. Its params are a pytree of **groups** (an MLP's layers), each a
dict ``{"W": ..., "b": ...}`` whose ``"W"`` is one matrix or a dict of them.

Required members
================

==========================================  ===================================================
``n_in``, ``n_out``                         input and output widths
``output``, ``loss``                        the output activation and the loss taken on it
                                            (``fnn.core.activations``, ``fnn.core.losses`` names)
``init(key, *, scheme, dtype)``             random params
``forward(params, x, output_dtype=None,``   the cache the backward pass needs (any pytree);
``key=None)``                               ``output_dtype`` casts the output pre-activation
                                            before the output activation (``fnn.scale.precision``);
                                            ``key``: dropout on (a network without any: ignore it)
``output_of(cache)``                        ``(z, a)`` of the output: pre-activation and ``yhat``
``backward(params, cache, delta)``          the delta recursion from ``delta = dL/dz_out``
                                            ``(B, n_out)``: ``(grads, deltas)``, ``grads``
                                            shaped like ``params``, ``deltas`` one
                                            ``dL/dz`` ``(B, n)`` per group
``input_gradient(params, deltas)``          ``dL/dx`` from ``backward``'s deltas (for
                                            ``loss_with_manual_vjp``, whose rule the
                                            line searches differentiate)
``units(cache)``                            one ``(activation name, a)`` per group
``describe()``                              a JSON description (checked on resume)
==========================================  ===================================================

Curvature (``fnn.hvp``, ``fnn.gnvp``, ``fnn.curvature``; the R-operator, ``fnn.core.rop``)
=========================================================================================

==================================================  ==========================================
``tangent_forward(params, v, cache)``               the R-forward along ``v`` (params-shaped):
                                                    ``R{...}`` of the cache (any pytree)
``output_tangent_of(rcache)``                       ``R{z_out} = J v``, ``(B, n_out)``
``adjoint(params, cache, delta)``                   ``backward``'s ``(grads, deltas)`` and what
                                                    the R-backward needs of it (``upstream``);
                                                    provided: ``upstream = None``
``tangent_backward(params, v, cache, rcache,``      ``R{grads} = H v`` from ``R{delta_out}``
``deltas, upstream, rdelta)``                       (only ``fnn.hvp`` needs this)
``weight_inputs(cache)``                            params-shaped but for the biases: each
                                                    weight matrix's input ``a`` ``(B, n_in)``,
                                                    for the diagonals and Kronecker factors
==================================================  ==========================================

A network without them trains and passes every first-order check; ``fnn.gnvp``
needs the first three, ``fnn.hvp`` all but the last.

Provided here, overridable
==========================

* ``per_example_backward(params, cache, delta)``: ``delta`` of shape
  ``(B, K, n_out)``, one output delta per example and seed ``k``; returns the
  grads of each example and seed, leaves ``(B, K, *leaf shape)``. The default
  runs ``backward`` on each example by ``jax.vmap``; ``MLP`` runs its recursion
  once with per-example outer products instead of batch sums. Levenberg-
  Marquardt seeds ``delta`` with the unit vectors of the outputs (``K = n_out``).
* ``groups(tree)``: ``[(name, group)]`` of a params-shaped tree, in the
  order of ``backward``'s deltas and of ``units``.
* ``check_params(params)``: the params' dtype, after checking them against
  ``init``'s structure and shapes (``ValueError``/``TypeError``).
* ``n_params``, ``n_units`` (activations held per example, for memory
  budgets), ``step_flops(batch)`` (model FLOPs of one training step, for
  MFU).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fnn.core import activations, losses

__all__ = ["Network", "group_norms", "loss_from_cache", "norm", "output_delta", "weights"]

Array = jax.Array


class Network:
    """Base class of networks; see the module docstring for the members to implement."""

    n_in: int
    n_out: int
    output: str
    loss: str

    def init(self, key, *, scheme: str = "glorot_uniform", dtype=jnp.float32):
        raise NotImplementedError

    def forward(self, params, x: Array, output_dtype=None, key=None):
        raise NotImplementedError

    def output_of(self, cache) -> tuple[Array, Array]:
        raise NotImplementedError

    def backward(self, params, cache, delta: Array) -> tuple[Any, list[Array]]:
        raise NotImplementedError

    def input_gradient(self, params, deltas: list[Array]) -> Array:
        raise NotImplementedError

    def units(self, cache) -> list[tuple[str, Array]]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError

    def tangent_forward(self, params, v, cache):
        raise NotImplementedError

    def output_tangent_of(self, rcache) -> Array:
        raise NotImplementedError

    def tangent_backward(self, params, v, cache, rcache, deltas, upstream, rdelta):
        raise NotImplementedError

    def weight_inputs(self, cache):
        raise NotImplementedError

    # ------------------------------------------------------------------ provided

    def adjoint(self, params, cache, delta: Array):
        """``(grads, deltas, upstream)``: ``backward``'s, with nothing kept for the R-backward (``None``)."""
        grads, deltas = self.backward(params, cache, delta)
        return grads, deltas, None

    def per_example_backward(self, params, cache, delta: Array):
        """Grads per example and seed, leaves ``(B, K, *shape)``, by ``vmap`` of ``backward``."""

        def one(cache_n, delta_nk):  # one example (a batch of 1) and one seed
            return self.backward(params, cache_n, delta_nk[None])[0]

        per_seed = jax.vmap(one, in_axes=(None, 0))  # over the K seeds of one example
        rows = jax.tree_util.tree_map(lambda t: t[:, None], cache)  # each example a batch of one
        return jax.vmap(per_seed)(rows, delta)

    def groups(self, tree) -> list[tuple[str, Any]]:
        """The groups of a params-shaped ``tree``: ``[(name, {"W", "b"})]``, in the deltas' order."""
        if isinstance(tree, dict):
            return list(tree.items())
        return [(f"layer {i + 1}", g) for i, g in enumerate(tree)]

    def check_params(self, params):
        """The params' dtype, after checking their structure and shapes against ``init``'s."""
        expected = self._param_shapes()
        got, structure = jax.tree_util.tree_flatten(params)
        if structure != jax.tree_util.tree_structure(expected):
            raise ValueError(
                f"params must have the structure of {type(self).__name__}.init's "
                f"{jax.tree_util.tree_structure(expected)}, got {structure}"
            )
        dtypes = set()
        for (path, want), leaf in zip(jax.tree_util.tree_flatten_with_path(expected)[0], got):
            name = f"params{jax.tree_util.keystr(path)}"
            shape = getattr(leaf, "shape", None)
            if shape is None or tuple(shape) != want.shape:
                raise ValueError(f"{name} must have shape {want.shape}, got {shape}")
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise TypeError(f"{name} must be floating point, got {leaf.dtype}")
            dtypes.add(jnp.dtype(leaf.dtype))
        if len(dtypes) > 1:
            raise TypeError(f"params must share one dtype, got {sorted(map(str, dtypes))}")
        return dtypes.pop()

    def _param_shapes(self):
        return _shapes_of_init(self)

    @property
    def n_params(self) -> int:
        return sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(self._param_shapes()))

    @property
    def n_units(self) -> int:
        """Activation entries held per example by the forward cache."""
        x = jax.ShapeDtypeStruct((1, self.n_in), jnp.float32)
        cache = jax.eval_shape(self.forward, self._param_shapes(), x)
        return sum(math.prod(c.shape) for c in jax.tree_util.tree_leaves(cache))

    def step_flops(self, batch: int) -> int:
        """Model FLOPs of a training step: about 6 per weight and example (forward, two backward products)."""
        return 6 * batch * self.n_params

    @property
    def label(self) -> str:
        """How error messages name the network's shape."""
        return type(self).__name__

    @property
    def stochastic(self) -> bool:
        """Whether a key changes the forward pass (dropout); ``fit`` then passes one each step."""
        return False

    def __getstate__(self):
        # fnn.core.dispatch keeps the compiled programs of the public functions on the
        # net; they are a cache, not part of the description, and do not pickle.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=64)
def _shapes_of_init(net: Network):
    return jax.eval_shape(lambda key: net.init(key), jax.random.key(0))


def output_delta(net: Network, cache, y: Array) -> Array:
    """``delta_out = dL/dz_out`` of the batch-mean loss (``fnn.core.losses.output_delta``)."""
    z, a = net.output_of(cache)
    return losses.output_delta(activations.get(net.output), net.output, net.loss, z, a, y)


def loss_from_cache(net: Network, cache, y: Array) -> Array:
    """The batch-mean loss of the output held in ``cache``."""
    z, a = net.output_of(cache)
    return losses.mean_loss(net.output, net.loss, z, a, y)


def weights(group) -> list[Array]:
    """The weight matrices of one group (its ``"W"``, one matrix or a tree of them), biases left out."""
    return jax.tree_util.tree_leaves(group["W"])


def group_norms(net: Network, tree) -> Array:
    """``||group||_F`` of each group of a params-shaped ``tree`` (an MLP: ``||(dW_l, db_l)||`` per layer)."""
    return jnp.stack([norm(group) for _, group in net.groups(tree)])


def norm(tree) -> Array:
    """The Frobenius norm of all the leaves of ``tree`` together (``optax.tree_utils.tree_norm``)."""
    return optax.tree_utils.tree_norm(tree)
