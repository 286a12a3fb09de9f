"""Numerical gradients: one perturbation per parameter.

For each parameter ``theta_i``, with step ``h_i = eps * max(1, |theta_i|)``:

    forward:     g_i = (L(theta + h_i e_i) - L(theta)) / h_i                   error O(h)
    central:     g_i = (L(theta + h_i e_i) - L(theta - h_i e_i)) / (2 h_i)      error O(h^2)
    five_point:  g_i = (8 [L(+h_i) - L(-h_i)] - [L(+2h_i) - L(-2h_i)]) / (12 h_i)  error O(h^4)

(``L(+h_i)`` short for ``L(theta + h_i e_i)``.) The schemes cost one, two or four
full forward passes per parameter, so ``P``
parameters need O(P) passes, where backprop needs one forward and one backward
pass for all of them. The passes are vectorised with ``jax.vmap`` and run in
chunks (``jax.lax.map(..., batch_size=chunk)``) so memory stays bounded.

The denominators use the step actually taken, ``fl(theta_i + h_i) - theta_i``,
which removes the rounding of ``theta_i + h_i`` from the error. The default
``eps`` balances truncation against rounding error, ``eps_mach^(1/(k+1))``
for a scheme of order ``k``: about 1.5e-8, 6.1e-6 and 7.4e-4 in float64 for
forward, central and five_point (3.5e-4, 4.9e-3 and 4.2e-2 in float32). The
rounding error left is about ``eps_mach |L| / h``: roughly 4e-11 |L| for central
and 3e-13 |L| for five_point in float64. five_point is the most accurate on
smooth networks, but its wider stencil (up to 2h) more often straddles a kink of
relu, leaky_relu or mae, where no difference quotient is a derivative.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fnn.core import validation
from fnn.core.forward import loss_core
from fnn.core.protocol import Network

Array = jax.Array
ORDER = {"forward": 1, "central": 2, "five_point": 4}
SCHEMES = tuple(ORDER)
# Elements of perturbed parameters and activations held at once, per chunk.
MEMORY_BUDGET = 2**25


def default_eps(dtype, scheme: str = "central") -> float:
    """The step that balances truncation and rounding error for ``dtype``."""
    return float(jnp.finfo(dtype).eps) ** (1 / (ORDER[scheme] + 1))


def default_chunk(net: Network, batch: int) -> int:
    """Perturbations per vectorised chunk, so one chunk fits ``MEMORY_BUDGET``."""
    per_perturbation = net.n_params + batch * net.n_units
    return int(max(1, min(net.n_params, MEMORY_BUDGET // per_perturbation)))


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def compiled_finite_differences(net, params, x, y, eps, scheme, chunk, key=None):
    theta, unravel = ravel_pytree(params)
    loss_at = lambda t: loss_core(net, unravel(t), x, y, key)  # the same dropout masks at every theta
    loss_0 = loss_at(theta) if scheme == "forward" else None
    step = eps * jnp.maximum(1, jnp.abs(theta))

    def partial_derivative(i):
        up = theta.at[i].add(step[i])
        if scheme == "forward":
            return (loss_at(up) - loss_0) / (up[i] - theta[i])
        down = theta.at[i].add(-step[i])
        central = (loss_at(up) - loss_at(down)) / (up[i] - down[i])
        if scheme == "central":
            return central
        up2, down2 = theta.at[i].add(2 * step[i]), theta.at[i].add(-2 * step[i])
        wide = (loss_at(up2) - loss_at(down2)) / (up2[i] - down2[i])
        return (4 * central - wide) / 3  # Richardson: cancels the h^2 error term

    return unravel(jax.lax.map(partial_derivative, jnp.arange(theta.size), batch_size=chunk))


def finite_differences(
    net: Network,
    params,
    x,
    y,
    eps: float | None = None,
    scheme: str = "central",
    chunk_size: int | None = None,
    key=None,
):
    """Gradient of ``fnn.loss`` by finite differences, with the structure of ``params``.

    Args:
      eps: relative step; ``None`` picks ``default_eps(dtype, scheme)``.
      scheme: ``"central"``, ``"forward"`` or ``"five_point"``.
      chunk_size: perturbations evaluated together; ``None`` sizes chunks to
        about ``MEMORY_BUDGET`` elements.
      key: dropout on, with the masks of this key at every perturbation (as ``fnn.loss(..., key=)``).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown finite-difference scheme {scheme!r}; expected one of {list(SCHEMES)}")
    eps = validation.check_positive_number("eps", eps, allow_none=True)
    chunk_size = validation.check_positive_int("chunk_size", chunk_size, allow_none=True)
    x, y = validation.prepare(net, params, x, y)
    eps = default_eps(x.dtype, scheme) if eps is None else eps
    chunk = chunk_size or default_chunk(net, x.shape[0])
    key = None if key is None else validation.check_key(key)
    return compiled_finite_differences(net, params, x, y, eps, scheme, chunk, key)
