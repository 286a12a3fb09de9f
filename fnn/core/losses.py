"""Losses, each written beside its gradient with respect to the network output.

Every loss is a per-example value ``l(yhat, y)``, summed over the output units,
and the network's loss is its mean over the batch of ``B`` examples:

    L = (1/B) sum_n l(yhat_n, y_n)

==============  =====================================================  ===========================
name            l(yhat, y) per example                                  dl/dyhat
==============  =====================================================  ===========================
mse             1/2 ||yhat - y||^2              (the seeds' half SSE)  yhat - y
mae             sum_k |yhat_k - y_k|                                    sign(yhat - y)
huber           sum_k h(yhat_k - y_k), h(r) = r^2/2 if |r| <= 1         clip(yhat - y, -1, 1)
                                              else |r| - 1/2
bce             -sum_k [y_k log yhat_k + (1 - y_k) log(1 - yhat_k)]     (fused only, see below)
cross_entropy   -sum_k y_k log yhat_k                                   (fused only, see below)
poisson         sum_k [y_k log(y_k / yhat_k) - y_k + yhat_k]            (fused only, see below)
==============  =====================================================  ===========================

``mse``, ``mae`` and ``huber`` depend on the residual ``r = yhat - y`` only and
may follow any output activation; the backward pass then applies the chain rule
through the output activation (including softmax's Jacobian-vector product).

``poisson`` is half the Poisson deviance: 0 where ``yhat = y``, for counts or
rates ``y >= 0`` (``y log y`` is 0 at ``y = 0``).

Canonical pairs. For ``identity + mse``, ``sigmoid + bce``,
``softmax + cross_entropy`` and ``exp + poisson`` the output activation and the loss fold into one
function of the logits ``z`` whose gradient is simply

    dl/dz = yhat - y

(for softmax this needs each target row to sum to 1, which input validation
enforces). These pairs compute both the loss and the delta from the logits, so
saturated units never take ``log(0)`` or divide by ``yhat (1 - yhat)``:

    bce:            l = sum_k softplus(z_k) - y_k z_k
    cross_entropy:  l = -sum_k y_k log_softmax(z)_k
    poisson:        l = sum_k exp(z_k) - y_k z_k + y_k log y_k - y_k

``bce`` is accepted only after ``sigmoid``, ``cross_entropy`` only after
``softmax`` and ``poisson`` only after ``exp``, where these stable forms exist.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Loss(NamedTuple):
    """A residual loss: per-example value and its gradient w.r.t. ``yhat``."""

    value: Callable[[Array, Array], Array]  # (yhat, y) -> (batch,)
    grad: Callable[[Array, Array], Array]  # (yhat, y) -> (batch, n_out)


def _mse(yhat, y):
    return 0.5 * jnp.sum((yhat - y) ** 2, axis=-1)


def _mse_grad(yhat, y):
    return yhat - y


def _mae(yhat, y):
    return jnp.sum(jnp.abs(yhat - y), axis=-1)


def _mae_grad(yhat, y):
    return jnp.sign(yhat - y)  # the subgradient 0 at r = 0


HUBER_DELTA = 1.0


def _huber(yhat, y):
    r = jnp.abs(yhat - y)
    return jnp.sum(jnp.where(r <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (r - 0.5 * HUBER_DELTA)), axis=-1)


def _huber_grad(yhat, y):
    return jnp.clip(yhat - y, -HUBER_DELTA, HUBER_DELTA)


LOSSES: dict[str, Loss] = {
    "mse": Loss(_mse, _mse_grad),
    "mae": Loss(_mae, _mae_grad),
    "huber": Loss(_huber, _huber_grad),
}


def _bce_from_logits(z, y):
    return jnp.sum(jnp.logaddexp(z, 0) - y * z, axis=-1)


def _cross_entropy_from_logits(z, y):
    return -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1)


def _poisson_from_logits(z, y):
    return jnp.sum(jnp.exp(z) - y * z + jax.scipy.special.xlogy(y, y) - y, axis=-1)


def _mse_from_logits(z, y):
    return _mse(z, y)


# (output activation, loss) -> per-example loss computed from the logits z.
# For each of these pairs dl/dz = activation(z) - y (see the module docstring).
FUSED: dict[tuple[str, str], Callable[[Array, Array], Array]] = {
    ("identity", "mse"): _mse_from_logits,
    ("sigmoid", "bce"): _bce_from_logits,
    ("softmax", "cross_entropy"): _cross_entropy_from_logits,
    ("exp", "poisson"): _poisson_from_logits,
}

# Losses that exist only in a fused pair, with the output activation they need.
FUSED_ONLY = {"bce": "sigmoid", "cross_entropy": "softmax", "poisson": "exp"}

LOSS_NAMES = (*LOSSES, *FUSED_ONLY)


def check_pair(output: str, loss: str) -> None:
    """``ValueError`` for an unknown loss, or one that needs another output activation (its fused form)."""
    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {list(LOSS_NAMES)}")
    needed = FUSED_ONLY.get(loss)
    if needed is not None and output != needed:
        raise ValueError(f"loss {loss!r} needs output={needed!r} (its stable fused form), got output={output!r}")


def is_fused(output: str, loss: str) -> bool:
    return (output, loss) in FUSED


def per_example(output: str, loss: str, z: Array, a: Array, y: Array) -> Array:
    """Per-example loss ``l_n``, from the logits for canonical pairs."""
    if is_fused(output, loss):
        return FUSED[(output, loss)](z, y)
    return LOSSES[loss].value(a, y)


def mean_loss(output: str, loss: str, z: Array, a: Array, y: Array) -> Array:
    """``L = (1/B) sum_n l_n``: the only place the loss is averaged."""
    return jnp.mean(per_example(output, loss, z, a, y))


def example_deltas(output_activation, output: str, loss: str, z: Array, a: Array, y: Array) -> Array:
    """``dl_n/dz_L`` of each example's own loss, shape (batch, n_out).

    Canonical pairs use the fused ``yhat - y``; every other pair applies the
    chain rule ``f'(z_L)^T (dl/dyhat)`` through the output activation's
    backward rule.
    """
    if is_fused(output, loss):
        return a - y
    return output_activation.vjp(z, a, LOSSES[loss].grad(a, y))


def output_delta(output_activation, output: str, loss: str, z: Array, a: Array, y: Array) -> Array:
    """``delta_L = dL/dz_L = (1/B) dl_n/dz_L`` of the output layer, shape (batch, n_out).

    The division by the batch size ``B`` happens here and nowhere else in the
    backward pass.
    """
    return example_deltas(output_activation, output, loss, z, a, y) / z.shape[0]


def target_gradient(output: str, loss: str, z: Array, a: Array, y: Array) -> Array:
    """``dL/dy``, for differentiating the loss with respect to its targets."""
    if (output, loss) == ("sigmoid", "bce"):
        dl_dy = -z
    elif (output, loss) == ("softmax", "cross_entropy"):
        dl_dy = -jax.nn.log_softmax(z, axis=-1)
    elif (output, loss) == ("exp", "poisson"):
        dl_dy = jnp.log(y) - z
    else:  # residual losses: l depends on yhat - y, so dl/dy = -dl/dyhat
        dl_dy = -LOSSES[loss].grad(a, y)
    return dl_dy / z.shape[0]
