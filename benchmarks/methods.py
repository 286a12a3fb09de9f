"""The gradient methods under comparison, each prepared on one network and batch.

Every method computes ``dL/dtheta`` of the same ``fnn.loss`` on the same
parameters and data; they differ in how many passes over the network it takes:

=============  ===========================================  ==================
method         how                                          passes for all P
=============  ===========================================  ==================
forward        the loss alone (the unit of cost)            1 forward
backprop       ``fnn.backprop``: the delta recursion        1 fwd + 1 bwd
backprop_eager ``fnn.backprop(net, params, x, y)`` called   1 fwd + 1 bwd
               as a user's loop calls it: its checks, the
               dispatch of its jitted program, labels as
               given (what a user pays per call)
jax_grad       ``jax.value_and_grad``: JAX's reverse mode   1 fwd + 1 bwd
forward_mode   ``jax.jvp`` along each basis direction e_i   P JVPs (~2-3 fwd)
fd_central     ``fnn.finite_differences``, vectorised       2P forward
fd_naive_loop  Python loop, two jitted loss calls per i     2P forward
analytical     ``fnn.single_unit_gradient`` (1-1-1 only)    closed form
=============  ===========================================  ==================

The O(P) methods are run, when a full gradient would take too long, on an
evenly spaced sample of parameter indices; the time is then multiplied by
``P / evaluated`` and the row marked extrapolated. Their FLOPs come from
XLA's count for one perturbation times ``P``, since XLA counts a loop body
once (see ``benchmarks.xla_cost``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import fnn
from benchmarks.xla_cost import compiled_cost
from fnn.check.analytical import single_unit_gradient
from fnn.check.autodiff import compiled_autodiff
from fnn.check.finite_differences import compiled_finite_differences, default_chunk, default_eps
from fnn.core import dispatch, initializers, losses, validation
from fnn.core.backprop import backprop_core, compiled_backprop
from fnn.core.forward import loss_core
from fnn.core.protocol import Network

JAX_METHODS = (
    "forward",
    "backprop",
    "backprop_eager",
    "jax_grad",
    "forward_mode",
    "fd_central",
    "fd_naive_loop",
    "analytical",
)
PER_PERTURBATION = ("forward_mode", "fd_central", "fd_naive_loop")


@dataclasses.dataclass
class Prepared:
    """A method compiled and ready to time on one case."""

    call: Callable[[], object]  # one run; blocks until the result is ready
    compile_s: float  # trace + compile, measured apart from the run time
    evaluated: int  # gradient entries one call computes (P unless sampled)
    flops: float  # FLOPs of a full gradient (XLA's count)
    temp_bytes: float  # XLA temporary buffer of the executable that is timed
    note: str = ""


def make_inputs(net: Network, batch: int, device, dtype, seed: int = 0):
    """``(params, x, y, targets)`` for ``net`` on ``device``: ``y`` validated for the
    compiled methods (one-hot for a classifier), ``targets`` as a user passes them
    (integer labels for a classifier, else ``y``)."""
    k_params, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = initializers.init(k_params, net, dtype=dtype)
    x = jax.random.normal(k_x, (batch, net.n_in), dtype)
    if losses.kind(net.loss) is losses.Kind.LABELS:
        targets = jax.random.randint(k_y, (batch,), 0, net.n_out)
    else:
        targets = jax.random.normal(k_y, (batch, net.n_out), dtype)
        if net.output == "sigmoid":  # targets in the output's range
            targets = jax.nn.sigmoid(targets)
    params, x, targets = jax.device_put((params, x, targets), device)
    x, y = validation.prepare(net, params, x, targets)
    return params, x, y, targets


def compile_timed(jitted, *args):
    """``(compiled, seconds)``: tracing and compilation, timed apart from any run."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _blocking(compiled, *args) -> Callable[[], object]:
    """A zero-argument run of ``compiled`` (static arguments were fixed at compile time)."""
    return lambda: jax.block_until_ready(compiled(*args))


def sample_indices(n_params: int, n: int) -> jax.Array:
    """``n`` parameter indices spread evenly over all layers (all of them when ``n >= P``)."""
    if n >= n_params:
        return jnp.arange(n_params)
    return jnp.asarray(np.unique(np.linspace(0, n_params - 1, n).round().astype(np.int64)))


def sample_size(n_params: int, unit_flops: float, budget_flops: float, chunk: int) -> int:
    """Perturbations to run: all ``P`` if they fit ``budget_flops``, else a whole number
    of vectorised chunks that does (at least one), so the sample runs at the full
    run's vector width and its time per perturbation carries over."""
    n = int(budget_flops // max(unit_flops, 1.0))
    if n >= n_params:
        return n_params
    return max(chunk, n // chunk * chunk) if n >= chunk else max(1, min(chunk, n_params))


# -- the methods ------------------------------------------------------------

_loss = jax.jit(loss_core, static_argnums=0)


def forward(net, params, x, y, **_) -> Prepared:
    compiled, seconds = compile_timed(_loss, net, params, x, y)
    cost = compiled_cost(compiled)
    return Prepared(
        _blocking(compiled, params, x, y), seconds, net.n_params, cost["flops"], cost["temp_bytes"]
    )


def backprop(net, params, x, y, **_) -> Prepared:
    compiled, seconds = compile_timed(compiled_backprop, net, params, x, y)
    cost = compiled_cost(compiled)
    return Prepared(
        _blocking(compiled, params, x, y), seconds, net.n_params, cost["flops"], cost["temp_bytes"]
    )


def backprop_eager(net, params, x, y, targets=None, **_) -> Prepared:
    """The public call, timed whole; its cost and memory are those of the program it dispatches."""
    targets = y if targets is None else targets
    start = time.perf_counter()
    jax.block_until_ready(fnn.backprop(net, params, x, targets))  # checks, traces and compiles
    seconds = time.perf_counter() - start
    cost = compiled_cost(dispatch.program(backprop_core, net).lower(params, x, targets).compile())
    return Prepared(
        lambda: jax.block_until_ready(fnn.backprop(net, params, x, targets)),
        seconds,
        net.n_params,
        cost["flops"],
        cost["temp_bytes"],
    )


def jax_grad(net, params, x, y, **_) -> Prepared:
    compiled, seconds = compile_timed(compiled_autodiff, net, params, x, y)
    cost = compiled_cost(compiled)
    return Prepared(
        _blocking(compiled, params, x, y), seconds, net.n_params, cost["flops"], cost["temp_bytes"]
    )


@functools.partial(jax.jit, static_argnums=(0, 5))
def jvp_partials(net, params, x, y, indices, chunk):
    """``dL/dtheta_i`` for ``i`` in ``indices``: one forward-mode JVP along ``e_i`` each."""
    theta, unravel = ravel_pytree(params)
    loss_at = lambda t: loss_core(net, unravel(t), x, y)
    along = lambda i: jax.jvp(loss_at, (theta,), (jnp.zeros_like(theta).at[i].set(1),))[1]
    return jax.lax.map(along, indices, batch_size=chunk)


@functools.partial(jax.jit, static_argnums=(0, 6))
def fd_partials(net, params, x, y, indices, eps, chunk):
    """Central differences for the parameters in ``indices``: the computation of
    ``fnn.finite_differences`` restricted to a sample of its perturbations."""
    theta, unravel = ravel_pytree(params)
    loss_at = lambda t: loss_core(net, unravel(t), x, y)
    step = eps * jnp.maximum(1, jnp.abs(theta))

    def partial_derivative(i):
        up, down = theta.at[i].add(step[i]), theta.at[i].add(-step[i])
        return (loss_at(up) - loss_at(down)) / (up[i] - down[i])

    return jax.lax.map(partial_derivative, indices, batch_size=chunk)


def _sample(partials, extra_args, net, params, x, y, budget_flops) -> tuple[float, jax.Array]:
    """XLA's FLOPs for one perturbation, and the indices to run within ``budget_flops``."""
    one, _ = compile_timed(partials, net, params, x, y, jnp.arange(1), *extra_args, 1)
    unit_flops = compiled_cost(one)["flops"]
    n = sample_size(net.n_params, unit_flops, budget_flops, default_chunk(net, x.shape[0]))
    return unit_flops, sample_indices(net.n_params, n)


def _per_perturbation(partials, extra_args, net, params, x, y, unit_flops, indices) -> Prepared:
    chunk = min(default_chunk(net, x.shape[0]), int(indices.size))
    compiled, seconds = compile_timed(partials, net, params, x, y, indices, *extra_args, chunk)
    return Prepared(
        _blocking(compiled, params, x, y, indices, *extra_args),
        seconds,
        int(indices.size),
        unit_flops * net.n_params,
        compiled_cost(compiled)["temp_bytes"],
    )


def forward_mode(net, params, x, y, budget_flops=float("inf"), **_) -> Prepared:
    unit_flops, indices = _sample(jvp_partials, (), net, params, x, y, budget_flops)
    return _per_perturbation(jvp_partials, (), net, params, x, y, unit_flops, indices)


def fd_central(net, params, x, y, budget_flops=float("inf"), **_) -> Prepared:
    eps = default_eps(x.dtype, "central")
    unit_flops, indices = _sample(fd_partials, (eps,), net, params, x, y, budget_flops)
    if indices.size < net.n_params:
        return _per_perturbation(fd_partials, (eps,), net, params, x, y, unit_flops, indices)
    # All P fit the budget: time the library function itself.
    chunk = default_chunk(net, x.shape[0])
    compiled, seconds = compile_timed(compiled_finite_differences, net, params, x, y, eps, "central", chunk)
    return Prepared(
        _blocking(compiled, params, x, y, eps),
        seconds,
        net.n_params,
        unit_flops * net.n_params,
        compiled_cost(compiled)["temp_bytes"],
    )


def fd_naive_loop(net, params, x, y, sample=300, **_) -> Prepared:
    """One parameter at a time, as a first attempt would: perturb ``theta`` eagerly,
    call the jitted loss twice, bring the difference back to Python."""
    theta, unravel = ravel_pytree(params)
    loss_flat = jax.jit(lambda t, x, y: loss_core(net, unravel(t), x, y))
    compiled, seconds = compile_timed(loss_flat, theta, x, y)
    indices = [int(i) for i in np.asarray(sample_indices(net.n_params, sample))]
    eps = default_eps(x.dtype, "central")
    steps = [eps * max(1.0, abs(float(v))) for v in np.asarray(theta[np.asarray(indices)], dtype=np.float64)]

    def loop():
        return [
            float(compiled(theta.at[i].add(h), x, y) - compiled(theta.at[i].add(-h), x, y)) / (2 * h)
            for i, h in zip(indices, steps)
        ]

    return Prepared(
        loop,
        seconds,
        len(indices),
        2 * net.n_params * compiled_cost(compiled)["flops"],
        compiled_cost(compiled)["temp_bytes"],
    )


def analytical(net, params, x, y, **_) -> Prepared:
    compiled, seconds = compile_timed(jax.jit(single_unit_gradient), params, x, y)
    cost = compiled_cost(compiled)
    return Prepared(
        _blocking(compiled, params, x, y), seconds, net.n_params, cost["flops"], cost["temp_bytes"]
    )


PREPARE = {
    "forward": forward,
    "backprop": backprop,
    "backprop_eager": backprop_eager,
    "jax_grad": jax_grad,
    "forward_mode": forward_mode,
    "fd_central": fd_central,
    "fd_naive_loop": fd_naive_loop,
    "analytical": analytical,
}
