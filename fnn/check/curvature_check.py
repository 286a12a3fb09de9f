"""``check_curvature``: the hand-written curvature products against JAX and finite differences.

For a direction ``v`` (random, of unit norm, unless one is given):

==========  ==================================================================
``hvp``     against autodiff: ``jax.jvp(jax.grad(L), (w,), (v,))``, forward-over-reverse;
            against finite differences of the hand-written gradient,
            ``(g(w + eps v) - g(w - eps v)) / (2 eps)``, error ``O(eps^2)``
``gnvp``    against autodiff: ``J v`` by ``jax.jvp`` of the logits, ``H_L J v``
            by ``jax.jvp(jax.grad)`` of the loss in the logits, ``J^T`` by ``jax.vjp``
==========  ==================================================================

Each leaf is judged as in ``check_gradients`` (``fnn.check.gradcheck``): the
largest error relative to the leaf's largest entry, floored at ``FLOOR`` times
the largest entry of the whole product.

==========  ========  =====================
dtype       autodiff  finite differences
==========  ========  =====================
float64     1e-10     1e-6
float32     1e-4      1e-1
==========  ========  =====================
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn.check.finite_differences import default_eps
from fnn.check.gradcheck import GradientReport, cast, checked_dtype, gradient_floor, report_rows
from fnn.core import activations, losses, validation
from fnn.core.backprop import backprop
from fnn.core.curvature import gnvp, hvp
from fnn.core.forward import loss_core
from fnn.core.protocol import Network

TOLERANCES = {
    "float64": {"autodiff": 1e-10, "finite_differences": 1e-6},
    "float32": {"autodiff": 1e-4, "finite_differences": 1e-1},
}


@dataclasses.dataclass(frozen=True)
class CurvatureReport:
    """The per-leaf reports of ``hvp`` and ``gnvp``, with a verdict."""

    hvp: GradientReport
    gnvp: GradientReport

    @property
    def passed(self) -> bool:
        return self.hvp.passed and self.gnvp.passed

    def __str__(self) -> str:
        return f"{self.hvp}\n\n{self.gnvp}"


@functools.partial(jax.jit, static_argnums=0)
def _autodiff_products(net: Network, params, v, x, y, key):
    """``(H v, G v)`` by JAX's differentiation: the references."""
    hv = jax.jvp(jax.grad(lambda w: loss_core(net, w, x, y, key)), (params,), (v,))[1]
    logits = lambda w: net.output_of(net.forward(w, x, key=key))[0]
    z, jv = jax.jvp(logits, (params,), (v,))
    act = activations.get(net.output)
    loss_in_logits = lambda zz: losses.mean_loss(net.output, net.loss, zz, act.fn(zz), y)
    h_jv = jax.jvp(jax.grad(loss_in_logits), (z,), (jv,))[1]
    return hv, jax.vjp(logits, params)[1](h_jv)[0]


def _unit_direction(params, seed: int):
    flat, unravel = ravel_pytree(params)
    d = jax.random.normal(jax.random.key(seed), flat.shape, flat.dtype)
    return unravel(d / jnp.linalg.norm(d))


def check_curvature(
    net: Network, params, x, y, *, v=None, dtype="float64", eps: float | None = None, key=None, seed: int = 0
) -> CurvatureReport:
    """Compare ``fnn.hvp`` and ``fnn.gnvp`` with JAX's products and ``hvp`` with finite differences.

    Args:
      v: the direction (params-shaped); default: random (``seed``), of unit norm.
      dtype: ``"float64"`` (default; 64-bit JAX for the duration) or ``"float32"``.
      eps: the finite-difference step along ``v`` (default: ``eps_mach^(1/3)``).
      key: with dropout on, the same masks for all.

    ``print(report)`` shows both tables; ``report.passed`` is the verdict.
    """
    dtype = checked_dtype(dtype)
    validation.check_inputs(net, params, x, y)
    with jax.enable_x64(dtype == "float64"):
        params, x, y = cast(dtype, params, x, y)
        v = (
            _unit_direction(params, seed)
            if v is None
            else jax.tree_util.tree_map(lambda t: jnp.asarray(t, dtype), v)
        )
        loss, _, hv = hvp(net, params, x, y, v, key=key)
        _, _, gv = gnvp(net, params, x, y, v, key=key)
        xc, yc = validation.prepare(net, params, x, y)
        ref_hv, ref_gv = _autodiff_products(net, params, v, xc, yc, key)
        step = default_eps(dtype) if eps is None else eps
        shifted = lambda s: backprop(net, optax.tree_utils.tree_add_scale(params, s, v), x, y, key=key)[1]
        difference = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * step), shifted(step), shifted(-step))
        tol = TOLERANCES[dtype]
        hv_rows = report_rows(
            net, hv, {"autodiff": ref_hv, "finite_differences": difference}, gradient_floor(hv, 0.0), tol
        )
        gv_rows = report_rows(net, gv, {"autodiff": ref_gv}, gradient_floor(gv, 0.0), tol)
        return CurvatureReport(
            GradientReport(hv_rows, dtype, float(loss), "Hessian-vector product (fnn.hvp)"),
            GradientReport(gv_rows, dtype, float(loss), "Gauss-Newton product (fnn.gnvp)"),
        )
