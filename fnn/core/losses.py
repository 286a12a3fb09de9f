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

Curvature. The R-operator (``fnn.core.rop``) starts from the loss's Hessian in
the output pre-activation times a tangent ``v = R{z}``: ``R{delta_L} = H_L v``,
``H_L = d^2 L / dz_L^2`` (the batch mean's, so ``1/B`` again). For the
canonical pairs (``p = yhat``; cross-entropy's rule uses that each target row
sums to 1):

    identity + mse:          H v = v / B
    sigmoid + bce:           H v = p (1 - p) v / B
    softmax + cross_entropy: H v = (p v - p (p . v)) / B
    exp + poisson:           H v = p v / B

Every other pair is the chain rule through ``a = f(z)``, with the residual
losses' second derivatives (they are separable: ``d^2 l / dyhat^2`` is
diagonal): mse 1, mae 0, huber ``1 if |r| <= 1 else 0``. With ``g = dl/dyhat``
and ``R{a} = f'(z) v`` (softmax: its Jacobian times ``v``),

    H v = R{ f'(z)^T g },   R{g} = l''(yhat) R{a},

the activation's ``vjp_tangent``; for an elementwise ``f`` this is
``f''(z) v g + f'(z)^2 l''(yhat) v``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Loss(NamedTuple):
    """A residual loss: per-example value, its gradient
    and its (diagonal) second derivative w.r.t. ``yhat``."""

    value: Callable[[Array, Array], Array]  # (yhat, y) -> (batch,)
    grad: Callable[[Array, Array], Array]  # (yhat, y) -> (batch, n_out)
    hess: Callable[[Array, Array], Array]  # (yhat, y) -> (batch, n_out): d^2 l / dyhat_k^2


def _mse(yhat, y):
    return 0.5 * jnp.sum((yhat - y) ** 2, axis=-1)


def _mse_grad(yhat, y):
    return yhat - y


def _mse_hess(yhat, y):
    return jnp.ones_like(yhat)


def _mae(yhat, y):
    return jnp.sum(jnp.abs(yhat - y), axis=-1)


def _mae_grad(yhat, y):
    return jnp.sign(yhat - y)  # the subgradient 0 at r = 0


def _mae_hess(yhat, y):
    return jnp.zeros_like(yhat)  # piecewise linear (0 also at the kink, as jax.grad of sign gives)


HUBER_DELTA = 1.0


def _huber(yhat, y):
    r = jnp.abs(yhat - y)
    return jnp.sum(jnp.where(r <= HUBER_DELTA, 0.5 * r * r, HUBER_DELTA * (r - 0.5 * HUBER_DELTA)), axis=-1)


def _huber_grad(yhat, y):
    return jnp.clip(yhat - y, -HUBER_DELTA, HUBER_DELTA)


def _huber_hess(yhat, y):
    return (jnp.abs(yhat - y) <= HUBER_DELTA).astype(yhat.dtype)


LOSSES: dict[str, Loss] = {
    "mse": Loss(_mse, _mse_grad, _mse_hess),
    "mae": Loss(_mae, _mae_grad, _mae_hess),
    "huber": Loss(_huber, _huber_grad, _huber_hess),
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


def _identity_mse_hvp(z, a, v):
    return v


def _logistic_hvp(z, a, v):  # sigmoid + bce, exp + poisson: H = diag(f'(z)) with f'(z) = a (1 - a), a
    return a * (1 - a) * v


def _softmax_cross_entropy_hvp(z, a, v):
    return a * v - a * jnp.sum(a * v, axis=-1, keepdims=True)


def _poisson_hvp(z, a, v):
    return a * v


# (output activation, loss) -> per-example Hessian in the logits times v (no 1/B); see the module docstring.
FUSED_HVP: dict[tuple[str, str], Callable[[Array, Array, Array], Array]] = {
    ("identity", "mse"): _identity_mse_hvp,
    ("sigmoid", "bce"): _logistic_hvp,
    ("softmax", "cross_entropy"): _softmax_cross_entropy_hvp,
    ("exp", "poisson"): _poisson_hvp,
}

# Losses that exist only in a fused pair, with the output activation they need.
FUSED_ONLY = {"bce": "sigmoid", "cross_entropy": "softmax", "poisson": "exp"}

LOSS_NAMES = (*LOSSES, *FUSED_ONLY)


class Kind(enum.Enum):
    """What a loss's targets are:
    the one place the rest of fnn asks it (accuracy, label checks, encodings)."""

    LABELS = "labels"  # cross_entropy: one class of K per example, integer labels or one-hot rows
    BINARY = "binary"  # bce: independent 0/1 targets, one per output unit
    REGRESSION = "regression"  # mse, mae, huber: real-valued targets
    COUNTS = "counts"  # poisson: counts or rates y >= 0


KINDS = {
    "mse": Kind.REGRESSION,
    "mae": Kind.REGRESSION,
    "huber": Kind.REGRESSION,
    "bce": Kind.BINARY,
    "cross_entropy": Kind.LABELS,
    "poisson": Kind.COUNTS,
}


def kind(loss: str) -> Kind:
    """The ``Kind`` of the loss named ``loss`` (``ValueError`` for an unknown name)."""
    try:
        return KINDS[loss]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {loss!r}; expected one of {list(LOSS_NAMES)}") from None


def classifies(loss: str) -> bool:
    """Whether the loss is a classifier's (labels or binary targets): it has an accuracy."""
    return kind(loss) in (Kind.LABELS, Kind.BINARY)


def least_squares(loss: str) -> bool:
    """Whether the loss is a sum of squared residuals ``1/2 ||yhat - y||^2`` (``mse``): the Gauss-Newton
    methods' objective, whose Jacobian of residuals they build."""
    return loss == "mse"


def check_pair(output: str, loss: str) -> None:
    """``ValueError`` for an unknown loss, or one that needs another output activation (its fused form)."""
    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {list(LOSS_NAMES)}")
    needed = FUSED_ONLY.get(loss)
    if needed is not None and output != needed:
        raise ValueError(
            f"loss {loss!r} needs output={needed!r} (its stable fused form), got output={output!r}"
        )


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


def example_hvps(output_activation, output: str, loss: str, z: Array, a: Array, y: Array, v: Array) -> Array:
    """``(d^2 l_n / dz_L^2) v_n`` of each example's own loss, shape (batch, n_out): the fused rule, or the
    chain rule through the output activation (``Activation.vjp_tangent``)."""
    if is_fused(output, loss):
        return FUSED_HVP[(output, loss)](z, a, v)
    residual = LOSSES[loss]
    ra = output_activation.jvp(z, a, v)
    return output_activation.vjp_tangent(z, a, residual.grad(a, y), v, residual.hess(a, y) * ra)


def output_hvp(output_activation, output: str, loss: str, z: Array, a: Array, y: Array, v: Array) -> Array:
    """``R{delta_L} = H_L v``, ``H_L = d^2 L / dz_L^2`` of the batch-mean loss,
    for a tangent ``v = R{z_L}``."""
    return example_hvps(output_activation, output, loss, z, a, y, v) / z.shape[0]


def sample_targets(key, output: str, loss: str, z: Array, a: Array) -> Array:
    """Targets drawn from the model's predictive distribution, whose negative log-likelihood is the loss.

    softmax + cross_entropy: a class of ``Categorical(yhat)``, one-hot;
    sigmoid + bce: ``Bernoulli(yhat)``; exp + poisson: ``Poisson(yhat)``;
    mse: ``yhat + N(0, I)`` (``l = ||y - yhat||^2 / 2``); mae: ``yhat +
    Laplace(0, 1)``. With such targets ``E[g g^T]`` of the per-example
    gradients is the Fisher matrix, which for the canonical pairs is the
    Gauss-Newton matrix (Martens 2014, "New insights and perspectives on the
    natural gradient method"). huber is no log-likelihood: ``ValueError``.
    """
    if (output, loss) == ("softmax", "cross_entropy"):
        return jax.nn.one_hot(jax.random.categorical(key, z), z.shape[-1], dtype=a.dtype)
    if loss == "bce":
        return jax.random.bernoulli(key, a).astype(a.dtype)
    if loss == "poisson":
        return jax.random.poisson(key, a).astype(a.dtype)
    if loss == "mse":
        return a + jax.random.normal(key, a.shape, a.dtype)
    if loss == "mae":
        return a + jax.random.laplace(key, a.shape, a.dtype)
    raise ValueError(
        f"loss {loss!r} is not the negative log-likelihood of a distribution to sample targets "
        "from; the sampled Fisher needs one of cross_entropy, bce, poisson, mse, mae"
    )


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
