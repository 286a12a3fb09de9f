"""Training methods as optax ``GradientTransformation``s, selectable by name.

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
levenberg_marquardt ``-(J^T J + mu I)^-1 J^T e`` with adaptive mu (below)        (mu)        full
==================  ===========================================================  ==========  ==========

"full" methods take one step per epoch on the whole training set when
``fnn.fit`` is given no ``batch_size``; the others default to minibatches.

The interface with the loss. ``fnn.fit`` calls every optimizer as::

    updates, state = tx.update(grads, state, params, value=loss, grad=grads, value_fn=objective)

the extra arguments of optax's ``GradientTransformationExtraArgs`` (transforms
that do not use them ignore them). ``grads`` come from fnn's hand-written
backprop; ``value`` is the loss of the current minibatch at ``params``;
``objective`` is an ``fnn.optimizers.Objective``: ``objective(params)`` is that
minibatch's loss at other params (differentiable, with backprop as its
gradient rule, which is what ``lbfgs``'s line search uses), and
``objective.residuals_and_jacobian(params)`` gives Levenberg-Marquardt its
residuals and their per-example Jacobian, built by the hand-written backward
pass. Methods written here (not in optax):

* ``adaptive_lr``: try ``params - lr * g``; if the loss rises by more than 4 %
  the step is rejected and ``lr *= 0.7``; otherwise it is taken, and if the
  loss fell ``lr *= 1.05``. With ``momentum`` the step uses the velocity
  ``v = momentum * v + g``, reset to zero when a step is rejected.
* ``levenberg_marquardt``: for the mse loss, with ``e`` the residuals
  ``yhat - y`` of every example and output and ``J = de/dparams``, the step is
  ``-(J^T J + mu I)^-1 J^T e``. ``mu`` starts at 1e-3; a step that lowers the
  loss is taken and ``mu *= 0.1``; one that does not is retried with
  ``mu *= 10``, until ``mu`` passes ``mu_max = 1e10``, when training stops.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from fnn import activations
from fnn.autodiff import _manual_loss

# Levenberg-Marquardt solves a P x P system each step and holds the (B * n_out) x P
# Jacobian: these are the sizes it accepts.
LM_MAX_PARAMS = 4096
LM_MAX_JACOBIAN = 2**26  # entries of J (256 MiB in float32)


class Objective:
    """The loss of one minibatch as a function of the params (see the module docstring)."""

    def __init__(self, net, x, y, to_tree: Callable | None = None, key=None):
        # to_tree: maps the params as the optimizer sees them (e.g. one flat
        # vector, see fnn.train.make_epoch) to the network's params;
        # key: the step's dropout key (None: no dropout), the same for every evaluation
        self.net, self.x, self.y, self.key = net, x, y, key
        self.to_tree = to_tree or (lambda params: params)

    def __call__(self, params):
        return _manual_loss(self.net, self.to_tree(params), self.x, self.y, self.key)

    def residuals_and_jacobian(self, params):
        return residuals_and_jacobian(self.net, self.to_tree(params), self.x, self.y, self.key)


def residuals_and_jacobian(net, params, x, y, key=None):
    """``(e, J)`` for the mse loss: ``e = (yhat - y).ravel()`` and ``J = de/dparams``.

    ``e`` has ``B * n_out`` entries, example-major; ``J`` is ``(B * n_out, P)``
    with columns in the order of ``jax.flatten_util.ravel_pytree(params)``. Each
    row is built like backprop's gradient, but per example and per output: the
    output delta is seeded with a unit vector ``e_k`` instead of ``dL/dyhat``,
    ``delta_L[n, k] = f_L'(z_L[n]) e_k``, and the network's own delta recursion
    pulls it back (``net.per_example_backward``; for an ``MLP``,
    ``dr_nk/dW_l = outer(a_{l-1,n}, delta_{l,nk})``, ``dr_nk/db_l = delta_{l,nk}``).
    Then ``J^T e / B`` is the gradient of the mse loss ``(1/B) sum 1/2 ||r_n||^2``.
    """
    cache = net.forward(params, x, key=key)
    z, a = net.output_of(cache)
    batch, n_out = y.shape
    seed = jnp.eye(n_out, dtype=z.dtype)[None]  # (1, K, K): one unit vector per output
    delta = activations.get(net.output).vjp(z[:, None, :], a[:, None, :], seed)  # (B, K, n_out)
    rows = net.per_example_backward(params, cache, delta)  # leaves (B, K, *shape)
    J = jnp.concatenate([leaf.reshape(batch, n_out, -1) for leaf in jax.tree_util.tree_leaves(rows)], axis=-1)
    e = (a - y).reshape(-1)
    return e, J.reshape(batch * n_out, -1)


# --------------------------------------------------------------------------- adaptive_lr


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
    """Gradient descent with an adaptive learning rate (and optional momentum).

    Needs ``value`` and ``value_fn`` in ``update`` (see the module docstring).
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")

    def init_fn(params):
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return AdaptiveLRState(
            learning_rate=jnp.asarray(learning_rate, dtype),
            velocity=jax.tree_util.tree_map(jnp.zeros_like, params),
            rejected=jnp.asarray(False),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, **extra_args):
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


# --------------------------------------------------------------------------- Levenberg-Marquardt


class LevenbergMarquardtState(NamedTuple):
    mu: jax.Array
    mu_max: jax.Array
    count: jax.Array


def levenberg_marquardt(
    mu: float = 1e-3, *, mu_decrease: float = 0.1, mu_increase: float = 10.0, mu_max: float = 1e10
) -> optax.GradientTransformationExtraArgs:
    """The Levenberg-Marquardt step for the mse loss (see the module docstring).

    Needs ``value`` and an ``Objective`` as ``value_fn`` in ``update``. When no
    ``mu <= mu_max`` lowers the loss, the update is zero and ``state.mu > mu_max``:
    ``fnn.fit`` then stops.
    """
    if mu <= 0 or mu_max <= mu:
        raise ValueError(f"need 0 < mu < mu_max, got mu={mu}, mu_max={mu_max}")

    def init_fn(params):
        n = sum(p.size for p in jax.tree_util.tree_leaves(params))
        if n > LM_MAX_PARAMS:
            raise ValueError(
                f"levenberg_marquardt solves a P x P system each step and accepts at most "
                f"P = {LM_MAX_PARAMS} parameters; this network has P = {n} (use a smaller network or another optimizer)"
            )
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return LevenbergMarquardtState(jnp.asarray(mu, dtype), jnp.asarray(mu_max, dtype), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, **extra_args):
        del updates, extra_args
        if not hasattr(value_fn, "residuals_and_jacobian") or value is None:
            raise ValueError("levenberg_marquardt needs value= and value_fn=fnn.optimizers.Objective(...) in update()")
        if value_fn.net.loss != "mse":
            raise ValueError(f"levenberg_marquardt needs the mse loss, got {value_fn.net.loss!r}")
        flat, unravel = ravel_pytree(params)
        e, J = value_fn.residuals_and_jacobian(params)
        g = J.T @ e
        H = J.T @ J
        eye = jnp.eye(flat.size, dtype=flat.dtype)

        def cond(carry):
            mu, accepted, _ = carry
            return (~accepted) & (mu <= mu_max)

        def body(carry):
            mu, _, _ = carry
            step = jnp.linalg.solve(H + mu * eye, -g)
            new_value = value_fn(unravel(flat + step))
            ok = new_value < value  # NaN is not a success
            return jnp.where(ok, mu * mu_decrease, mu * mu_increase), ok, step

        mu, accepted, step = jax.lax.while_loop(cond, body, (state.mu, jnp.asarray(False), jnp.zeros_like(flat)))
        step = jnp.where(accepted, step, jnp.zeros_like(step))
        return unravel(step), LevenbergMarquardtState(mu.astype(state.mu.dtype), state.mu_max, state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------- the registry


@dataclasses.dataclass(frozen=True)
class Spec:
    factory: Callable[..., optax.GradientTransformation]
    default_lr: float | None
    full_batch: bool
    description: str


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


def _lm(lr, **_):
    return levenberg_marquardt()


OPTIMIZERS: dict[str, Spec] = {
    "gd": Spec(_sgd, 0.1, True, "full-batch gradient descent"),
    "sgd": Spec(_sgd, 0.01, False, "minibatch stochastic gradient descent"),
    "momentum": Spec(_momentum, 0.01, False, "gradient descent with momentum 0.9 (optionally Nesterov)"),
    "adaptive_lr": Spec(_adaptive, 0.01, True, "gradient descent with adaptive learning rate"),
    "adaptive_momentum": Spec(_adaptive_momentum, 0.01, True, "adaptive learning rate and momentum 0.9"),
    "adam": Spec(_adam, 1e-3, False, "Adam"),
    "rmsprop": Spec(_rmsprop, 1e-3, False, "RMSProp"),
    "rprop": Spec(_rprop, 0.01, True, "resilient backpropagation (lr = initial step size)"),
    "lbfgs": Spec(_lbfgs, None, True, "L-BFGS with zoom line search (lr: fixed step instead of the search)"),
    "levenberg_marquardt": Spec(_lm, None, True, "Levenberg-Marquardt, mse loss only, P <= %d" % LM_MAX_PARAMS),
}
NAMES = tuple(OPTIMIZERS)


def spec(name: str) -> Spec:
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}") from None


def get(
    name: str,
    learning_rate: float | Callable | None = None,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer ``name`` as an optax transform.

    Args:
      learning_rate: a positive float, or an optax schedule ``step -> lr``
        (e.g. ``optax.cosine_decay_schedule``); ``None`` takes the default in the
        table above. Not used by ``levenberg_marquardt``.
      momentum, nesterov: for ``momentum`` (and ``adaptive_momentum``'s momentum).
      weight_decay: L2 penalty ``weight_decay * params`` added to the gradient
        (``optax.add_decayed_weights``); ``0`` for none.
      clip_norm: clip the gradient to this global norm first
        (``optax.clip_by_global_norm``); ``None`` for none.
    """
    s = spec(name)
    lr = s.default_lr if learning_rate is None else learning_rate
    if lr is not None and not callable(lr):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning rate must be a positive number, got {lr!r}")
        lr = float(lr)
    if name in ("adaptive_lr", "adaptive_momentum", "rprop") and callable(lr):
        raise ValueError(f"{name} adapts its own step size; give a number as learning rate, not a schedule")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if weight_decay < 0 or not math.isfinite(weight_decay):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}")
    if name == "levenberg_marquardt" and (weight_decay or clip_norm is not None):
        raise ValueError("levenberg_marquardt takes no weight_decay or clip_norm")
    return _build(name, lr, momentum, nesterov, weight_decay, clip_norm)


@functools.lru_cache(maxsize=64)
def _build(name, lr, momentum, nesterov, weight_decay, clip_norm) -> optax.GradientTransformationExtraArgs:
    """One transform object per configuration: optax transforms are pure, so
    reusing the object lets ``fnn.fit`` reuse the epoch it compiled for it."""
    base = spec(name).factory(lr, momentum=momentum, nesterov=nesterov)
    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    if not parts:
        return optax.with_extra_args_support(base)
    return optax.chain(*parts, base)


def learning_rate(state) -> float | None:
    """The current learning rate found in an optimizer state, or ``None``."""
    found = optax.tree_utils.tree_get_all_with_path(state, "learning_rate")
    for _, v in found:
        if hasattr(v, "shape") and v.shape == ():
            return v
    return None


def mu(state):
    """``(mu, mu_max)`` of Levenberg-Marquardt in an optimizer state, or ``None``."""
    found = optax.tree_utils.tree_get_all_with_path(state, "LevenbergMarquardtState")
    return (found[0][1].mu, found[0][1].mu_max) if found else None
