"""The training methods by name: the records their own modules declare, collected
(public as ``fnn.optimizers``).

==================  ===========================================================  ==========  ==========
name                method                                                       default lr  batch
==================  ===========================================================  ==========  ==========
gd                  gradient descent, ``optax.sgd``                              0.1         full
sgd                 minibatch stochastic gradient descent, ``optax.sgd``         0.01        minibatch
momentum            ``optax.sgd(momentum=0.9, nesterov=...)``                    0.01        minibatch
adaptive_lr         gradient descent whose rate adapts to the loss               0.01        full
adaptive_momentum   the same with momentum 0.9                                   0.01        full
adam                ``optax.adam``                                               1e-3        minibatch
rmsprop             ``optax.rmsprop``                                            1e-3        minibatch
rprop               resilient backprop, ``optax.rprop`` (lr = first step size)   0.01        full
lbfgs               ``optax.lbfgs`` with its zoom line search                    (search)    full
levenberg_marquardt ``-(J^T J + mu I)^-1 J^T e`` with adaptive mu                (mu)        full
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

Each method is declared in its own module as an ``fnn.optimizers.Method``
record (``fnn.optim.method``): ``fnn.optim.first_order`` (the first nine),
``gauss_newton`` (``levenberg_marquardt``, ``br``: MATLAB's ``trainlm`` and
``trainbr``), ``conjugate_gradient`` (``scg``, ``cg*``: ``trainscg``,
``traincgf``, ``traincgp``, ``traincgb``), ``hessian_free``, ``kfac`` and
``quasi_newton`` (``bfgs``, ``oss``: ``trainbfg``, ``trainoss``). This module
only collects them; ``register`` adds a method from outside the package. The
methods that choose their own step (line search, trust region or model) take
no learning rate, ``weight_decay`` or ``clip_norm``: their steps are made for
the loss itself. ``levenberg_marquardt``, ``br`` and ``bfgs`` hold P x P
matrices; the largest P they accept follows from the device's memory
(``fnn.scale.memory``).

"full" methods take one step per epoch on the whole training set when
``fnn.fit`` is given no ``batch_size``; the others default to minibatches.
Every method is called as ``update(grads, state, params, value=, grad=,
value_fn=)``, ``value_fn`` an ``fnn.optimizers.Objective`` (``fnn.optim.objective``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import optax

from fnn.core import validation
from fnn.optim import conjugate_gradient, first_order, gauss_newton, hessian_free, kfac, quasi_newton
from fnn.optim.method import Method

__all__ = [
    "ALIASES",
    "DEFAULT",
    "NAMES",
    "OPTIMIZERS",
    "build",
    "default_batch",
    "get",
    "register",
    "resolve",
    "spec",
]

OPTIMIZERS: dict[str, Method] = {
    m.name: m
    for module in (first_order, gauss_newton, conjugate_gradient, hessian_free, kfac, quasi_newton)
    for m in module.METHODS
}
NAMES = tuple(OPTIMIZERS)  # the built-in methods; OPTIMIZERS also holds those added by register
ALIASES = {alias: m.name for m in OPTIMIZERS.values() for alias in m.aliases}  # "lm": "levenberg_marquardt"
DEFAULT = "adam"  # what fit, fnn train and the presets train with when given no optimizer


def register(method: Method) -> Method:
    """Add ``method`` to the methods known by name (``fnn.fit(optimizer=method.name)``, ``fnn train``'s
    ``--optimizer`` once imported); returns it. A built-in name cannot be replaced."""
    if not isinstance(method, Method):
        raise TypeError(f"register takes an fnn.optimizers.Method, got {type(method).__name__}")
    if method.name in NAMES or method.name in ALIASES:
        raise ValueError(f"{method.name!r} is a built-in method and cannot be replaced")
    OPTIMIZERS[method.name] = method
    ALIASES.update({alias: method.name for alias in method.aliases})
    return method


def spec(name: str) -> Method:
    """The record of the method ``name`` (``ValueError`` naming the known ones for any other)."""
    try:
        return OPTIMIZERS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}") from None


def resolve(optimizer) -> Method:
    """The record of ``optimizer``: a name, a ``Method``, or an optax transform (a record of its own:
    seeing the params' tree, as the transform's author wrote it, full batch by default, nothing reported)."""
    if isinstance(optimizer, str):
        return spec(optimizer)
    if isinstance(optimizer, Method):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation):
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        return Method(name, lambda lr, **_: optimizer, full_batch=True, flat=False)
    raise TypeError(
        f"optimizer must be a name, an fnn.optimizers.Method or an optax GradientTransformation, "
        f"got {type(optimizer).__name__}"
    )


def default_batch(name: str | Method, preset: int | None) -> int | None:
    """The minibatch of method ``name`` when none is given: ``None`` (the whole set) for a full-batch
    method or a ``None`` preset, else the front end's ``preset`` (a dataset's in ``fnn train``,
    scikit-learn's 200), or the method's own when larger (``kfac``'s 256: its model-chosen steps need
    large minibatches; on digits at 64 it diverged)."""
    method = resolve(name)
    if method.full_batch or preset is None:
        return None
    return max(preset, method.batch_size)


def get(
    name: str | Method,
    learning_rate: float | Callable | None = None,
    *,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer ``name`` (or a ``Method`` record) as an optax transform.

    Args:
      learning_rate: a positive float, or an optax schedule ``step -> lr``
        (e.g. ``optax.cosine_decay_schedule``); ``None`` takes the method's
        default (the table above). Not used by the methods that choose their
        own steps (``levenberg_marquardt``, ``br``, ``scg``, ``cg*``, ``bfgs``,
        ``oss``, ``hessian_free``, ``kfac``).
      momentum: for ``momentum`` (and ``adaptive_momentum``'s momentum).
      nesterov: for ``momentum``.
      weight_decay: L2 penalty ``weight_decay * params`` added to the gradient
        (``optax.add_decayed_weights``); ``0`` for none.
      clip_norm: clip the gradient to this global norm first
        (``optax.clip_by_global_norm``); ``None`` for none.
    """
    method = resolve(name)
    lr = method.default_lr if learning_rate is None else learning_rate
    if lr is not None and not callable(lr):
        lr = validation.check_positive_number("learning rate", lr)
    if callable(lr) and not method.schedule:
        raise ValueError(
            f"{method.name} adapts its own step size; give a number as learning rate, not a schedule"
        )
    validation.check_number("momentum", momentum, lambda m: 0 <= m < 1, "in [0, 1)")
    validation.check_number("weight_decay", weight_decay, lambda w: 0 <= w < math.inf, ">= 0")
    if clip_norm is not None:
        validation.check_positive_number("clip_norm", clip_norm)
    if method.own_step and (weight_decay or clip_norm is not None):
        raise ValueError(
            f"{method.name} chooses its steps for the loss itself and takes no weight_decay or clip_norm"
        )
    return build(method, lr, momentum, nesterov, weight_decay, clip_norm)


@functools.lru_cache(maxsize=64)
def build(
    method: Method, lr, momentum, nesterov, weight_decay, clip_norm
) -> optax.GradientTransformationExtraArgs:
    """One transform object per configuration: optax transforms are pure, so
    reusing the object lets ``fnn.fit`` reuse the epoch it compiled for it."""
    base = method.factory(lr, momentum=momentum, nesterov=nesterov)
    parts = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    if not parts:
        return optax.with_extra_args_support(base)
    return optax.chain(*parts, base)
