"""``MinibatchObjective``: the concrete ``fnn.optimizers.Objective`` that the compiled epoch hands each step.

Every member is a pass of fnn's hand-written network math on the step's
minibatch ``(x, y)`` with its dropout key; ``to_tree`` maps the params as the
method sees them (one flat vector, or the tree itself) to the network's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fnn.core import losses
from fnn.core.curvature import Curvature, curvature_core
from fnn.core.manual_vjp import manual_loss
from fnn.optim import gauss_newton

__all__ = ["MinibatchObjective"]


class MinibatchObjective:
    """The loss of one minibatch as a function of the params (``fnn.optimizers.Objective``)."""

    def __init__(self, net, x, y, to_tree: Callable | None = None, key=None):
        # key: the step's dropout key (None: no dropout), the same for every evaluation
        self.net, self.x, self.y, self.key = net, x, y, key
        self.to_tree = to_tree or (lambda params: params)

    @property
    def n_examples(self) -> int:
        return self.x.shape[0]

    @property
    def n_residuals(self) -> int:
        return self.y.size

    @property
    def least_squares(self) -> bool:
        return losses.least_squares(self.net.loss)

    def __call__(self, params):
        return manual_loss(self.net, self.to_tree(params), self.x, self.y, self.key)

    def residuals_and_jacobian(self, params):
        """``(e, J)``: the residuals and their per-example Jacobian (``fnn.optim.gauss_newton``)."""
        return gauss_newton.residuals_and_jacobian(self.net, self.to_tree(params), self.x, self.y, self.key)

    def normal_equations(self, params):
        return gauss_newton.normal_equations(self.net, self.to_tree(params), self.x, self.y, self.key)

    def curvature(self, params, rows: tuple | None = None) -> Curvature:
        x, y = self.x, self.y
        if rows is not None:
            start, size = rows
            idx = (start + jnp.arange(size)) % x.shape[0]
            x, y = x[idx], y[idx]
        return curvature_core(self.net, self.to_tree(params), x, y, self.key)

    def curvature_product(self, params, curvature: str = "gnvp", rows: tuple | None = None):
        c = self.curvature(params, rows)
        unravel = ravel_pytree(params)[1]
        multiply = c.gnvp if curvature == "gnvp" else c.hvp
        return c, lambda v: ravel_pytree(multiply(self.to_tree(unravel(v))))[0]
