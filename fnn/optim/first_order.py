"""The first-order methods: optax's, by name, and the adaptive learning rate written here.

==================  ===========================================================  ==========  ==========
name                method                                                       default lr  batch
==================  ===========================================================  ==========  ==========
gd                  gradient descent, ``optax.sgd``                              0.1         full
sgd                 minibatch stochastic gradient descent, ``optax.sgd``         0.01        minibatch
momentum            ``optax.sgd(momentum=0.9, nesterov=...)``                    0.01        minibatch
adaptive_lr         gradient descent whose rate adapts to the loss (below)       0.01        full
adaptive_momentum   the same with momentum 0.9                                   0.01        full
adam                ``optax.adam``                                               1e-3        minibatch
rmsprop             ``optax.rmsprop``                                            1e-3        minibatch
rprop               resilient backprop, ``optax.rprop`` (lr = first step size)   0.01        full
lbfgs               ``optax.lbfgs`` with its zoom line search                    (search)    full
==================  ===========================================================  ==========  ==========

``adaptive_lr`` (MATLAB's ``traingda``; with momentum ``traingdx``): try
``params - lr * g``; if the loss rises by more than 4 % the step is rejected
and ``lr *= 0.7``; otherwise it is taken, and if the loss fell ``lr *= 1.05``.
With ``momentum`` the step uses the velocity ``v = momentum * v + g``, reset
to zero when a step is rejected.

Imports ``fnn.core`` and ``fnn.optim.method``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnn.core import validation
from fnn.optim.method import Method
from fnn.optim.objective import Objective

__all__ = ["METHODS", "AdaptiveLRState", "adaptive_lr"]


class AdaptiveLRState(NamedTuple):
    learning_rate: jax.Array
    velocity: Any
    rejected: jax.Array  # whether the last step was rejected
    count: jax.Array


def adaptive_lr(
    learning_rate: float = 0.01,
    *,
    momentum: float = 0.0,
    increase: float = 1.05,
    decrease: float = 0.7,
    max_increase: float = 1.04,
) -> optax.GradientTransformationExtraArgs:
    """Gradient descent with an adaptive learning rate (and optional momentum), see the module docstring.

    Needs ``value`` and ``value_fn`` in ``update`` (``fnn.optimizers.Objective``).
    """
    validation.check_positive_number("learning_rate", learning_rate)
    validation.check_number("momentum", momentum, lambda m: 0 <= m < 1, "in [0, 1)")

    def init_fn(params):
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return AdaptiveLRState(
            learning_rate=jnp.asarray(learning_rate, dtype),
            velocity=jax.tree_util.tree_map(jnp.zeros_like, params),
            rejected=jnp.asarray(False),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(
        updates, state, params=None, *, value=None, value_fn: Objective | None = None, **extra_args
    ):
        del extra_args
        if params is None or value is None or value_fn is None:
            raise ValueError("adaptive_lr needs params, value= and value_fn= in update()")
        lr = state.learning_rate
        v = jax.tree_util.tree_map(lambda m, g: momentum * m + g, state.velocity, updates)
        step = jax.tree_util.tree_map(lambda m: -lr * m, v)
        new_value = value_fn(optax.apply_updates(params, step))
        rejected = ~(new_value <= value * max_increase)  # NaN counts as a rise
        new_lr = jnp.where(rejected, lr * decrease, jnp.where(new_value < value, lr * increase, lr))
        keep = lambda t: jnp.where(rejected, jnp.zeros_like(t), t)
        step = jax.tree_util.tree_map(keep, step)
        v = jax.tree_util.tree_map(keep, v)
        return step, AdaptiveLRState(new_lr.astype(lr.dtype), v, rejected, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _sgd(lr, **_):
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)


def _momentum(lr, momentum=0.9, nesterov=False, **_):
    return optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
        learning_rate=lr, momentum=momentum, nesterov=nesterov
    )


def _adaptive(lr, **_):
    return adaptive_lr(lr)


def _adaptive_momentum(lr, momentum=0.9, **_):
    return adaptive_lr(lr, momentum=momentum)


def _adam(lr, **_):
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


def _rmsprop(lr, **_):
    return optax.inject_hyperparams(optax.rmsprop)(learning_rate=lr)


def _rprop(lr, **_):
    return optax.rprop(lr)


def _lbfgs(lr, **_):
    return optax.lbfgs(learning_rate=lr)


METHODS = (
    Method("gd", _sgd, 0.1, full_batch=True),
    Method("sgd", _sgd, 0.01),
    Method("momentum", _momentum, 0.01),
    Method("adaptive_lr", _adaptive, 0.01, full_batch=True, schedule=False),
    Method("adaptive_momentum", _adaptive_momentum, 0.01, full_batch=True, schedule=False),
    Method("adam", _adam, 1e-3),
    Method("rmsprop", _rmsprop, 1e-3),
    Method("rprop", _rprop, 0.01, full_batch=True, schedule=False),
    Method("lbfgs", _lbfgs, None, full_batch=True),
)
