"""Activation functions, each written beside its hand-derived derivative.

An activation is a pair ``(fn, derivative)``: ``a = fn(z)`` maps a layer's
pre-activation ``z`` to its output ``a``, and ``derivative(z, a)`` returns the
elementwise slope ``da/dz``. The derivative receives ``a`` as well as ``z``
because for several functions the slope is cheapest in terms of the output
already cached by the forward pass:

=============  ====================================  ============================  ===========================
name           a = f(z)                              f'(z)                         f''(z)
=============  ====================================  ============================  ===========================
identity       z                                     1                             0
sigmoid        s = 1 / (1 + exp(-z))                 s (1 - s)                     s (1 - s) (1 - 2 s)
tanh           t = tanh(z)                           1 - t^2                       -2 t (1 - t^2)
relu           max(z, 0)                             1 if z > 0 else 0             0
leaky_relu     z if z > 0 else 0.01 z                1 if z > 0 else 0.01          0
elu            z if z > 0 else exp(z) - 1 (alpha=1)  1 if z > 0 else a + 1         0 if z > 0 else a + 1
softplus       log(1 + exp(z))                       s = sigmoid(z)                s (1 - s)
gelu           z Phi(z)               (erf form)     Phi(z) + z phi(z)             phi(z) (2 - z^2)
exp            exp(z)                 (output)       exp(z) = a                    a
softmax        exp(z_k) / sum_j exp(z_j) (output)    J = diag(a) - a a^T (vjp)     (its jvp, below)
=============  ====================================  ============================  ===========================

``Phi`` and ``phi`` are the standard normal CDF and density. At the kinks of
relu and leaky_relu the slope of the left side is used (0 and 0.01), which is
also what ``jax.grad`` returns there.

``exp`` is the output of Poisson regression (the inverse of its log link, see
``fnn.core.losses``); like softmax it is an output activation only.

Softmax couples its outputs, so it has no elementwise derivative; its backward
rule is the Jacobian-vector product ``J^T g = a * (g - sum_k a_k g_k)``, and it
may only be used as the output activation. ``J`` is symmetric, so the same
formula is its forward (tangent) rule ``J v``.

The second derivative ``f''`` is what the R-operator (``fnn.core.curvature``)
needs beyond the backward pass: differentiating ``delta = f'(z) * g`` along a
tangent gives ``R{delta} = f''(z) R{z} g + f'(z) R{g}``. At the kinks the
one-sided value is used, as for ``f'`` (relu's ``f''`` is 0 everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Activation(NamedTuple):
    """An activation and its local backward rule.

    Attributes:
      fn: ``z -> a``, applied along the last axis for softmax, elementwise otherwise.
      derivative: ``(z, a) -> da/dz`` elementwise, or ``None`` for softmax.
      hidden_ok: whether the activation may be used in a hidden layer.
    """

    fn: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array] | None
    hidden_ok: bool = True
    second_derivative: Callable[[Array, Array], Array] | None = None

    def vjp(self, z: Array, a: Array, g: Array) -> Array:
        """Pull an upstream gradient ``g = dL/da`` back to ``dL/dz``."""
        if self.derivative is None:  # softmax: J^T g with J = diag(a) - a a^T
            return a * (g - jnp.sum(a * g, axis=-1, keepdims=True))
        return g * self.derivative(z, a)

    def jvp(self, z: Array, a: Array, v: Array) -> Array:
        """Push a tangent ``v = R{z}`` forward to ``R{a} = J v``
        (softmax's ``J`` is symmetric: the vjp's formula)."""
        return self.vjp(z, a, v)

    def vjp_tangent(self, z: Array, a: Array, g: Array, rz: Array, rg: Array) -> Array:
        """``R{vjp(z, a, g)}``: the backward rule differentiated along tangents ``rz = R{z}``, ``rg = R{g}``.

        Elementwise: ``R{f'(z) g} = f''(z) rz g + f'(z) rg``. Softmax, with
        ``ra = J rz`` and ``d = a (g - a.g)``:
        ``R{d} = ra (g - a.g) + a (rg - ra.g - a.rg)``.
        """
        if self.derivative is None:
            ra = self.jvp(z, a, rz)
            dot = lambda u, w: jnp.sum(u * w, axis=-1, keepdims=True)
            return ra * (g - dot(a, g)) + a * (rg - dot(ra, g) - dot(a, rg))
        if self.second_derivative is None:
            raise ValueError(
                "this activation has no second derivative (register_activation(..., "
                "second_derivative=...)): fnn.hvp needs it; fnn.gnvp does not"
            )
        return self.second_derivative(z, a) * rz * g + self.derivative(z, a) * rg


def _sigmoid(z):
    return jax.nn.sigmoid(z)


def _sigmoid_derivative(z, a):
    return a * (1 - a)


def _sigmoid_second(z, a):
    return a * (1 - a) * (1 - 2 * a)


def _tanh(z):
    return jnp.tanh(z)


def _tanh_derivative(z, a):
    return 1 - a * a


def _tanh_second(z, a):
    return -2 * a * (1 - a * a)


def _identity(z):
    return z


def _identity_derivative(z, a):
    return jnp.ones_like(z)


def _zero(z, a):
    return jnp.zeros_like(z)


def _relu(z):
    return jax.nn.relu(z)


def _relu_derivative(z, a):
    return (z > 0).astype(z.dtype)


LEAKY_SLOPE = 0.01


def _leaky_relu(z):
    return jnp.where(z > 0, z, LEAKY_SLOPE * z)


def _leaky_relu_derivative(z, a):
    return jnp.where(z > 0, 1, LEAKY_SLOPE).astype(z.dtype)


def _elu(z):
    return jnp.where(z > 0, z, jnp.expm1(jnp.where(z > 0, 0, z)))  # inner where keeps exp finite


def _elu_derivative(z, a):
    return jnp.where(z > 0, 1, a + 1).astype(z.dtype)


def _elu_second(z, a):
    return jnp.where(z > 0, 0, a + 1).astype(z.dtype)


def _softplus(z):
    return jnp.logaddexp(z, 0)


def _softplus_derivative(z, a):
    return jax.nn.sigmoid(z)


def _softplus_second(z, a):
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def _gelu(z):
    return z * 0.5 * (1 + jax.lax.erf(z * _INV_SQRT2))


def _gelu_derivative(z, a):
    cdf = 0.5 * (1 + jax.lax.erf(z * _INV_SQRT2))
    pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * z * z)
    return cdf + z * pdf


def _gelu_second(z, a):
    return _INV_SQRT_2PI * jnp.exp(-0.5 * z * z) * (2 - z * z)


def _exp(z):
    return jnp.exp(z)


def _exp_derivative(z, a):
    return a


def _softmax(z):
    return jax.nn.softmax(z, axis=-1)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(_identity, _identity_derivative, second_derivative=_zero),
    "sigmoid": Activation(_sigmoid, _sigmoid_derivative, second_derivative=_sigmoid_second),
    "tanh": Activation(_tanh, _tanh_derivative, second_derivative=_tanh_second),
    "relu": Activation(_relu, _relu_derivative, second_derivative=_zero),
    "leaky_relu": Activation(_leaky_relu, _leaky_relu_derivative, second_derivative=_zero),
    "elu": Activation(_elu, _elu_derivative, second_derivative=_elu_second),
    "softplus": Activation(_softplus, _softplus_derivative, second_derivative=_softplus_second),
    "gelu": Activation(_gelu, _gelu_derivative, second_derivative=_gelu_second),
    "exp": Activation(_exp, _exp_derivative, hidden_ok=False, second_derivative=_exp_derivative),
    "softmax": Activation(_softmax, None, hidden_ok=False),
}

BUILTIN_ACTIVATIONS = tuple(ACTIVATIONS)

# Points at which a registered derivative is compared with jax.grad: spread over
# the region where activations do their work, and offset so none lands on 0,
# where piecewise functions have a kink.
_CHECK_POINTS = np.linspace(-4.05, 3.95, 81)


def get(name: str) -> Activation:
    """Look up an activation by name (``ValueError`` names the known ones)."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def register_activation(
    name: str,
    fn: Callable[[Array], Array],
    derivative: Callable[[Array], Array],
    *,
    second_derivative: Callable[[Array], Array] | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    overwrite: bool = False,
) -> None:
    """Add an elementwise activation with its hand-written derivative (and, optionally, its second).

    ``derivative(z)`` must return ``f'(z)`` elementwise. At registration it is
    compared in float64 with ``jax.grad(fn)`` on 81 points spread over
    [-4.05, 3.95]; a disagreement beyond ``atol + rtol * |jax.grad|`` raises
    ``ValueError``. ``second_derivative(z)``, ``f''(z)``, is compared the same
    way with ``jax.grad(derivative)``; without it the activation trains and
    gives Gauss-Newton products, but not exact Hessian-vector products
    (``fnn.hvp`` names it). The new name is then accepted by ``fnn.MLP`` in
    hidden and output layers alike.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not callable(fn) or not callable(derivative):
        raise TypeError("fn and derivative must both be callable")
    if second_derivative is not None and not callable(second_derivative):
        raise TypeError(f"second_derivative must be callable or None, got {type(second_derivative).__name__}")
    if name in ACTIVATIONS and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True")
    _check_derivative(name, fn, derivative, rtol, atol)
    second = None
    if second_derivative is not None:
        _check_derivative(name, derivative, second_derivative, rtol, atol, what="second derivative")
        second = lambda z, a: second_derivative(z)
    ACTIVATIONS[name] = Activation(fn, lambda z, a: derivative(z), second_derivative=second)


def check_second_derivative(name: str) -> None:
    """``ValueError`` when activation ``name`` was registered without its second derivative
    (``fnn.hvp`` needs it)."""
    act = get(name)
    if act.derivative is not None and act.second_derivative is None:
        raise ValueError(
            f"activation {name!r} has no second derivative (register_activation(..., "
            f"second_derivative=...)): fnn.hvp needs it; fnn.gnvp does not"
        )


def _check_derivative(name, fn, derivative, rtol, atol, what="derivative") -> None:
    with jax.enable_x64(True):
        z = jnp.asarray(_CHECK_POINTS, dtype=jnp.float64)
        try:
            expected = np.asarray(jax.vmap(jax.grad(fn))(z))
            got = np.asarray(jnp.broadcast_to(derivative(z), z.shape))
        except Exception as err:  # user code: report what failed, whatever it was
            raise ValueError(f"activation {name!r} could not be evaluated: {err}") from err
    bad = ~(np.abs(got - expected) <= atol + rtol * np.abs(expected))
    if bad.any():
        i = int(np.argmax(np.abs(got - expected)))
        raise ValueError(
            f"{what} of activation {name!r} disagrees with jax.grad at "
            f"{int(bad.sum())} of {bad.size} points; worst at z={_CHECK_POINTS[i]:.4g}: "
            f"{what} gives {got[i]:.6g}, jax.grad gives {expected[i]:.6g}"
        )
