"""``Objective``: what a training method may ask of the minibatch loss that ``fnn.fit`` hands it.

``fnn.fit`` calls every transform as optax's ``GradientTransformationExtraArgs``::

    updates, state = tx.update(grads, state, params, value=loss, grad=grads, value_fn=objective)

``grads`` come from fnn's hand-written backprop, ``value`` is the minibatch's
loss at ``params``, and ``objective`` is the minibatch's loss as a function of
the params, declared here member by member. Transforms that use none of it
(optax's own) ignore ``value_fn``; fnn's line searches, Gauss-Newton,
scaled conjugate gradient, Hessian-free and K-FAC type against this protocol
and nothing more. ``params`` (and every vector the members take or return)
are in the form the method sees them: one flat vector or the network's tree,
as its ``fnn.optimizers.Method`` record's ``flat`` says; the objective maps
them to the network's params itself.

The concrete objective is ``fnn.training.objective.MinibatchObjective``.

Imports ``fnn.core`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import jax

from fnn.core.curvature import Curvature

__all__ = ["Objective"]


@runtime_checkable
class Objective(Protocol):
    """The loss of one minibatch as a function of the params (see the module docstring)."""

    @property
    def n_examples(self) -> int:
        """``B``, the examples of the minibatch (static)."""
        ...

    @property
    def n_residuals(self) -> int:
        """``B n_out``, the residuals ``e = yhat - y`` of a least-squares loss (static)."""
        ...

    @property
    def least_squares(self) -> bool:
        """Whether the loss is a sum of squared residuals, ``(1/B) sum_i 1/2 ||e_i||^2`` (``mse``): what the
        Gauss-Newton methods minimise."""
        ...

    def __call__(self, params) -> jax.Array:
        """The minibatch's mean loss at ``params``; differentiable, its gradient rule fnn's backprop (the line
        searches differentiate it)."""
        ...

    def normal_equations(self, params) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(J^T J, J^T e, e^T e)`` at ``params`` over the residuals of every example and output, ``J =
        de/dparams`` flattened as ``ravel_pytree(params)`` (``fnn.optim.gauss_newton.normal_equations``:
        accumulated in chunks of examples, ``J`` never whole)."""
        ...

    def curvature(self, params, rows: tuple | None = None) -> Curvature:
        """The kept forward and backward passes at ``params`` (``fnn.curvature``): curvature products,
        diagonals and Kronecker factors. ``rows``: ``(start, size)``, the passes of ``size`` consecutive
        examples from ``start`` (a traced integer; wraps around); ``None``: the whole minibatch."""
        ...

    def curvature_product(
        self, params, curvature: str = "gnvp", rows: tuple | None = None
    ) -> tuple[Curvature, Callable[[jax.Array], jax.Array]]:
        """``(c, product)``: ``c = self.curvature(params, rows)`` and ``product(v)``, the Gauss-Newton
        (``"gnvp"``) or Hessian (``"hvp"``) product with ``v`` flattened as ``ravel_pytree(params)``,
        flattened the same way; every product reuses ``c``'s passes."""
        ...
