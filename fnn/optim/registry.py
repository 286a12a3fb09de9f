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
br                  Bayesian regularisation: LM on ``beta E_D + alpha E_W``      (mu)        full
scg                 scaled conjugate gradient (Moller 1993)                      (model)     full
hessian_free        Hessian-free: truncated CG on ``(G + lambda I) p = -g``      (model)     full
kfac                K-FAC: ``F ~ A (x) G`` per weight matrix, model-chosen step  (model)     256
cgf                 conjugate gradient, Fletcher-Reeves                          (search)    full
cgp                 conjugate gradient, Polak-Ribiere                            (search)    full
cgb                 conjugate gradient, Powell-Beale restarts                    (search)    full
bfgs                dense BFGS quasi-Newton                                      (search)    full
oss                 one-step secant (memoryless BFGS)                            (search)    full
==================  ===========================================================  ==========  ==========

The last seven are MATLAB's ``trainbr``, ``trainscg``, ``traincgf``,
``traincgp``, ``traincgb``, ``trainbfg`` and ``trainoss``: ``fnn.optim.gauss_newton``
(``levenberg_marquardt``, ``br``), ``fnn.optim.conjugate_gradient`` (``scg``,
``cg*``) and ``fnn.optim.quasi_newton`` (``bfgs``, ``oss``) hold their math. The
methods that choose their own step (line search, trust region or model) take
no learning rate, ``weight_decay`` or ``clip_norm``: their steps are made for
the loss itself. ``levenberg_marquardt``, ``br`` and ``bfgs`` hold P x P
matrices; the largest P they accept follows from the device's memory
(``fnn.scale.memory``).

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
* ``levenberg_marquardt``: for the mse loss, the step
  ``-(J^T J + mu I)^-1 J^T e`` over the residuals ``e = yhat - y`` of every
  example and output, ``J = de/dparams`` (see ``fnn.optim.gauss_newton``).
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

from fnn.core.curvature import Curvature, curvature_core
from fnn.core.manual_vjp import manual_loss
from fnn.optim import conjugate_gradient, gauss_newton, quasi_newton
from fnn.optim.hessian_free import HessianFreeState, hessian_free
from fnn.optim.kfac import KfacState, kfac
from fnn.optim.gauss_newton import (BayesianRegularizationState, LevenbergMarquardtState, bayesian_regularization,
                                    levenberg_marquardt, residuals_and_jacobian)

__all__ = ["AdaptiveLRState", "BayesianRegularizationState", "HessianFreeState", "KfacState", "LevenbergMarquardtState", "NAMES",
           "OPTIMIZERS", "Objective", "Spec", "adaptive_lr", "adapted", "bayesian", "bayesian_regularization", "get",
           "hessian_free", "kfac", "learning_rate", "levenberg_marquardt", "mu", "residuals_and_jacobian", "scg", "spec"]


class Objective:
    """The loss of one minibatch as a function of the params (see the module docstring)."""

    def __init__(self, net, x, y, to_tree: Callable | None = None, key=None):
        # to_tree: maps the params as the optimizer sees them (e.g. one flat
        # vector, see fnn.training.loop.make_epoch) to the network's params;
        # key: the step's dropout key (None: no dropout), the same for every evaluation
        self.net, self.x, self.y, self.key = net, x, y, key
        self.to_tree = to_tree or (lambda params: params)

    def __call__(self, params):
        return manual_loss(self.net, self.to_tree(params), self.x, self.y, self.key)

    def residuals_and_jacobian(self, params):
        return residuals_and_jacobian(self.net, self.to_tree(params), self.x, self.y, self.key)

    def normal_equations(self, params):
        """``(J^T J, J^T e, e^T e)``, accumulated in chunks of examples (``fnn.optim.gauss_newton``)."""
        return gauss_newton.normal_equations(self.net, self.to_tree(params), self.x, self.y, self.key)

    def curvature(self, params, rows: tuple | None = None) -> Curvature:
        """The kept forward and backward passes at ``params`` (``fnn.curvature``), for curvature products,
        diagonals and Kronecker factors.

        ``rows``: ``(start, size)``, the passes of ``size`` consecutive examples
        of the minibatch from ``start`` (a traced integer; wraps around), for
        curvature on a subset; ``None``: the whole minibatch."""
        x, y = self.x, self.y
        if rows is not None:
            start, size = rows
            idx = (start + jnp.arange(size)) % x.shape[0]
            x, y = x[idx], y[idx]
        return curvature_core(self.net, self.to_tree(params), x, y, self.key)

    def curvature_product(self, params, curvature: str = "gnvp", rows: tuple | None = None):
        """``(c, product)``: ``c = self.curvature(params, rows)`` and ``product(v)``, the Gauss-Newton
        (``"gnvp"``) or Hessian (``"hvp"``) product with a direction ``v`` flattened as
        ``ravel_pytree(params)``, flattened the same way; every product reuses ``c``'s passes."""
        c = self.curvature(params, rows)
        unravel = ravel_pytree(params)[1]
        multiply = c.gnvp if curvature == "gnvp" else c.hvp
        return c, lambda v: ravel_pytree(multiply(self.to_tree(unravel(v))))[0]


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


# --------------------------------------------------------------------------- the registry


@dataclasses.dataclass(frozen=True)
class Spec:
    factory: Callable[..., optax.GradientTransformation]
    default_lr: float | None
    full_batch: bool
    description: str
    own_step: bool = False  # chooses its own steps for the loss itself: no learning rate, weight_decay, clip_norm
    needs_mse: bool = False  # a Gauss-Newton method: minimises a sum of squared residuals
    batch_size: int = 32  # the default minibatch of a method that is not full-batch


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


def _br(lr, **_):
    return bayesian_regularization()


def scg(sigma: float = 5e-5, lam: float = 5e-7, *, curvature: str = "finite_difference"):
    """Moller's scaled conjugate gradient, its curvature along the direction by finite differences (MATLAB's
    ``trainscg``, the default) or exactly by hand (``"gnvp"``, ``"hvp"``): see
    ``fnn.optim.conjugate_gradient.scaled_conjugate_gradient``."""
    return conjugate_gradient.scaled_conjugate_gradient(sigma, lam, curvature=curvature)


def _scg(lr, **_):
    return scg()


def _hessian_free(lr, **_):
    return hessian_free()


def _kfac(lr, net=None, **_):
    return kfac(net=net)


def _cg(rule):
    return lambda lr, **_: conjugate_gradient.conjugate_gradient(rule)


def _bfgs(lr, **_):
    return quasi_newton.bfgs()


def _oss(lr, **_):
    return quasi_newton.one_step_secant()


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
    "levenberg_marquardt": Spec(_lm, None, True, "Levenberg-Marquardt (mse loss)", True, True),
    "br": Spec(_br, None, True, "Bayesian regularisation, MacKay's alpha and beta (mse loss)", True, True),
    "scg": Spec(_scg, None, True, "scaled conjugate gradient (Moller 1993)", True),
    "hessian_free": Spec(_hessian_free, None, True, "Hessian-free: truncated CG on Gauss-Newton (Martens 2010)", True),
    "kfac": Spec(_kfac, None, False, "K-FAC: Kronecker-factored curvature (Martens & Grosse 2015)", True,
                 batch_size=256),
    "cgf": Spec(_cg("fletcher_reeves"), None, True, "conjugate gradient, Fletcher-Reeves", True),
    "cgp": Spec(_cg("polak_ribiere"), None, True, "conjugate gradient, Polak-Ribiere", True),
    "cgb": Spec(_cg("powell_beale"), None, True, "conjugate gradient, Powell-Beale restarts", True),
    "bfgs": Spec(_bfgs, None, True, "dense BFGS quasi-Newton", True),
    "oss": Spec(_oss, None, True, "one-step secant (memoryless BFGS)", True),
}
NAMES = tuple(OPTIMIZERS)


def spec(name: str) -> Spec:
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}") from None


def default_batch(name: str, preset: int | None) -> int | None:
    """The minibatch of method ``name`` when none is given: ``None`` (the whole set) for a full-batch method or a
    ``None`` preset, else the front end's ``preset`` (a dataset's in ``fnn train``, scikit-learn's 200), or the
    method's own when larger (``kfac``'s 256: its model-chosen steps need large minibatches; on digits at 64 it
    diverged)."""
    method = spec(name)
    if method.full_batch or preset is None:
        return None
    return max(preset, method.batch_size)


def get(
    name: str,
    learning_rate: float | Callable | None = None,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    net=None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer ``name`` as an optax transform.

    Args:
      learning_rate: a positive float, or an optax schedule ``step -> lr``
        (e.g. ``optax.cosine_decay_schedule``); ``None`` takes the default in the
        table above. Not used by the methods that choose their own steps
        (``levenberg_marquardt``, ``br``, ``scg``, ``cg*``, ``bfgs``, ``oss``).
      momentum: for ``momentum`` (and ``adaptive_momentum``'s momentum).
      nesterov: for ``momentum`` (and ``adaptive_momentum``'s momentum).
      weight_decay: L2 penalty ``weight_decay * params`` added to the gradient
        (``optax.add_decayed_weights``); ``0`` for none.
      clip_norm: clip the gradient to this global norm first
        (``optax.clip_by_global_norm``); ``None`` for none.
      net: the network, for ``kfac`` (its blocks follow the weight matrices
        of the params that ``fnn.fit`` hands it as one flat vector).
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
    if s.own_step and (weight_decay or clip_norm is not None):
        raise ValueError(f"{name} chooses its steps for the loss itself and takes no weight_decay or clip_norm")
    return _build(name, lr, momentum, nesterov, weight_decay, clip_norm, net if name == "kfac" else None)


@functools.lru_cache(maxsize=64)
def _build(name, lr, momentum, nesterov, weight_decay, clip_norm, net=None) -> optax.GradientTransformationExtraArgs:
    """One transform object per configuration: optax transforms are pure, so
    reusing the object lets ``fnn.fit`` reuse the epoch it compiled for it."""
    base = spec(name).factory(lr, momentum=momentum, nesterov=nesterov, net=net)
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


def _find(state, cls):
    found = optax.tree_utils.tree_get_all_with_path(state, cls.__name__)
    return found[0][1] if found else None


def mu(state):
    """``(mu, mu_max)`` of Levenberg-Marquardt or Bayesian regularisation in an optimizer state, or ``None``."""
    found = _find(state, LevenbergMarquardtState) or _find(state, BayesianRegularizationState)
    return (found.mu, found.mu_max) if found is not None else None


def adapted(state) -> dict:
    """What a second-order method adapts, found in an optimizer state: Hessian-free's ``damping`` (lambda),
    ``rho`` and ``cg_iterations``; K-FAC's ``damping``, ``rho`` and ``momentum`` (its ``learning_rate`` is
    ``learning_rate``'s); ``{}`` for the other methods."""
    hf, kf = _find(state, HessianFreeState), _find(state, KfacState)
    if hf is not None:
        return {"damping": hf.damping, "rho": hf.rho, "cg_iterations": hf.cg_iterations}
    return {} if kf is None else {"damping": kf.damping, "rho": kf.rho, "momentum": kf.momentum}


def bayesian(state) -> dict | None:
    """``{"gamma", "alpha", "beta"}`` of Bayesian regularisation in an optimizer state, or ``None``."""
    found = _find(state, BayesianRegularizationState)
    return None if found is None else {"gamma": found.gamma, "alpha": found.alpha, "beta": found.beta}
