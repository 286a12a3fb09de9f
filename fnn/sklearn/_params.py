"""The constructor parameters of the estimators, checked as scikit-learn checks its MLPs'.

Each check raises a ``ValueError`` naming the parameter and what it accepts,
before anything is traced or trained.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SKLEARN_SOLVERS = ("lbfgs", "sgd", "adam")
SCHEDULES = ("constant", "invscaling", "adaptive")


def _number(name, value, low, high=math.inf, *, closed="left", integral=False, allow_inf=False):
    kind = numbers.Integral if integral else numbers.Real
    if allow_inf and isinstance(value, numbers.Real) and value == np.inf:
        return
    ok = isinstance(value, kind) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        above = value >= low if closed in ("left", "both") else value > low
        below = value <= high if closed in ("right", "both") else value < high
        ok = above and below
    if not ok:
        left = "[" if closed in ("left", "both") else "("
        right = "]" if closed in ("right", "both") else ")"
        what = "an int" if integral else "a float"
        also = " or numpy.inf" if allow_inf else ""
        raise ValueError(
            f"The '{name}' parameter must be {what} in the range {left}{low}, {high}{right}{also}, "
            f"got {value!r}."
        )


def _boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"The '{name}' parameter must be a bool, got {value!r}.")


def _choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"The '{name}' parameter must be one of {sorted(options)}, got {value!r}.")


def hidden_layer_sizes(value) -> list[int]:
    sizes = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) else [value]
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ValueError(f"hidden_layer_sizes must hold ints, got {value!r}.")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    return [int(s) for s in sizes]


def fnn_activation(name) -> str:
    """fnn's name for a hidden activation: scikit-learn's four,
    or any fnn activation allowed in a hidden layer."""
    from fnn.core import activations

    fnn_name = SKLEARN_ACTIVATIONS.get(name, name)
    if (
        not isinstance(fnn_name, str)
        or fnn_name not in activations.ACTIVATIONS
        or not activations.get(fnn_name).hidden_ok
    ):
        hidden = [a for a in activations.ACTIVATIONS if activations.get(a).hidden_ok]
        raise ValueError(
            f"The 'activation' parameter must be one of {sorted(SKLEARN_ACTIVATIONS)} "
            f"or an fnn hidden activation {hidden}, got {name!r}."
        )
    return fnn_name


def fnn_solver(name) -> str | None:
    """``None`` for scikit-learn's solvers; fnn's optimizer name for the others."""
    from fnn import optimizers

    if name in SKLEARN_SOLVERS:
        return None
    try:
        return optimizers.spec(name).name  # fnn's own methods, by their names or aliases
    except ValueError:
        extra = [n for n in optimizers.OPTIMIZERS if n not in SKLEARN_SOLVERS] + list(optimizers.ALIASES)
        raise ValueError(
            f"The 'solver' parameter must be one of {list(SKLEARN_SOLVERS)} or an fnn optimizer "
            f"{extra}, got {name!r}."
        ) from None


def check(est) -> None:
    """Every constructor parameter of ``est``, as scikit-learn's ``_parameter_constraints`` have them."""
    hidden_layer_sizes(est.hidden_layer_sizes)
    fnn_activation(est.activation)
    fnn_solver(est.solver)
    _number("alpha", est.alpha, 0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        _number("batch_size", est.batch_size, 1, integral=True)
    _choice("learning_rate", est.learning_rate, SCHEDULES)
    _number("learning_rate_init", est.learning_rate_init, 0, closed="neither")
    _number("power_t", est.power_t, 0)
    _number("max_iter", est.max_iter, 1, integral=True)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        _boolean(name, getattr(est, name))
    _number("tol", est.tol, 0)
    _number("momentum", est.momentum, 0, 1, closed="both")
    _number("validation_fraction", est.validation_fraction, 0, 1)
    _number("beta_1", est.beta_1, 0, 1)
    _number("beta_2", est.beta_2, 0, 1)
    _number("epsilon", est.epsilon, 0, closed="neither")
    _number("n_iter_no_change", est.n_iter_no_change, 1, integral=True, allow_inf=True)
    _number("max_fun", est.max_fun, 1, integral=True)
    if hasattr(est, "loss"):
        _choice("loss", est.loss, ("squared_error", "poisson"))
