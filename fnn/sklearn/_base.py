"""What ``MLPClassifier`` and ``MLPRegressor`` share: scikit-learn's ``BaseMultilayerPerceptron`` on fnn."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, validate_data

from fnn.scale import compile_cache
from fnn.sklearn import _data, _params, _training

# scikit-learn's output activation -> fnn's (output, loss) pair
OUTPUTS = {
    "identity": ("identity", "mse"),
    "logistic": ("sigmoid", "bce"),
    "softmax": ("softmax", "cross_entropy"),
    "exp": ("exp", "poisson"),
}
NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need "
    "to be preprocessed."
)


def sample_weights(sample_weight, X, dtype) -> np.ndarray:
    """``sample_weight`` as a 1-D array of ``X``'s rows (ones for ``None``), checked."""
    n = X.shape[0]
    if sample_weight is None:
        return np.ones(n, dtype)
    if isinstance(sample_weight, numbers.Number):
        return np.full(n, sample_weight, dtype)
    w = check_array(sample_weight, ensure_2d=False, dtype=dtype, input_name="sample_weight")
    if w.shape != (n,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected {(n,)}!")
    if (w < 0).any():
        raise ValueError("Negative values in data passed to `sample_weight`")
    if not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w


def store_arguments(est, arguments: dict) -> None:
    """Keep each constructor argument as the attribute of its name and do nothing else
    (scikit-learn's rule for ``__init__``), given the constructor's ``locals()``."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


def as_params(coefs, intercepts, dtype) -> list[dict]:
    """scikit-learn's weight and bias lists as fnn's params ``[{"W", "b"}, ...]`` (the same orientation)."""
    import jax.numpy as jnp

    return [{"W": jnp.asarray(W, dtype), "b": jnp.asarray(b, dtype)} for W, b in zip(coefs, intercepts)]


def as_arrays(params, dtype) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The inverse of ``as_params``: NumPy weight and bias lists."""
    return (
        [np.asarray(layer["W"]).astype(dtype) for layer in params],
        [np.asarray(layer["b"]).astype(dtype) for layer in params],
    )


class BaseMLP(BaseEstimator):
    """The fit of scikit-learn's MLPs: validation, initialisation, then the solver's loop (``_training``)."""

    # ---------------------------------------------------------------- the network

    def _net(self):
        import fnn
        from fnn import optimizers

        output, loss = OUTPUTS[self.out_activation_]
        solver = _params.fnn_solver(self.solver)
        if solver is not None and optimizers.spec(solver).least_squares:
            loss = "mse"  # Levenberg-Marquardt and Bayesian regularisation minimise a sum of squares
        sizes = (self.n_features_in_, *_params.hidden_layer_sizes(self.hidden_layer_sizes), self.n_outputs_)
        return fnn.MLP(sizes, activation=_params.fnn_activation(self.activation), output=output, loss=loss)

    def _params(self, dtype=None) -> list[dict]:
        """``coefs_`` and ``intercepts_`` as fnn's params, in ``dtype`` (the fit's by default)."""
        return as_params(self.coefs_, self.intercepts_, self._dtype if dtype is None else dtype)

    def _set_params(self, params) -> None:
        self.coefs_, self.intercepts_ = as_arrays(params, self._dtype)

    def _best_params(self):
        return as_params(self._best_coefs, self._best_intercepts, self._dtype)

    def _set_best(self, params) -> None:
        self._best_coefs, self._best_intercepts = as_arrays(params, self._dtype)

    def _loss_report(self) -> float:
        """scikit-learn averages the squared error over the outputs, every other loss it sums."""
        return 1.0 / self.n_outputs_ if self.out_activation_ == "identity" else 1.0

    # ---------------------------------------------------------------- fitting

    def _initialize(self, y, layer_units, dtype) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        self.coefs_, self.intercepts_ = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(
                self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False)
            )
            self.intercepts_.append(
                self._random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False)
            )
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver in _training.STOCHASTIC or _params.fnn_solver(self.solver):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            stopping = self.early_stopping
            self.validation_scores_ = [] if stopping else None
            self.best_validation_score_ = -np.inf if stopping else None
            self.best_loss_ = None if stopping else np.inf

    def _fit(self, X, y, sample_weight=None, incremental=False):
        _params.check(self)
        hidden = _params.hidden_layer_sizes(self.hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        self._dtype = X.dtype
        w = sample_weights(sample_weight, X, X.dtype)
        # converted to X's dtype once split (stratified on y as it is)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        self.n_outputs_ = y.shape[1]
        self._random_state = check_random_state(self.random_state)
        # a later run of the same fit loads its programs instead of compiling
        compile_cache.use_default_cache()
        if first_pass:
            self._initialize(y, [X.shape[1], *hidden, self.n_outputs_], X.dtype)
        with _data.precision(self._dtype):
            net, params = self._net(), self._params()
            if self.solver in _training.STOCHASTIC:
                params = _training.fit_stochastic(self, net, params, X, y, w, incremental)
            elif self.solver == "lbfgs":
                params = _training.fit_lbfgs(self, net, params, X, y, w)
            else:
                from fnn.sklearn import _fnn_solvers

                params = _fnn_solvers.fit(self, net, params, X, y, w)
            self._set_params(params)
        if not all(np.isfinite(a).all() for a in self.coefs_ + self.intercepts_):
            raise ValueError(NON_FINITE)
        return self

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y, with optional per-sample weights."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _training.STOCHASTIC:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _loss_grad_lbfgs(self, packed, X, y, sample_weight=None, *_buffers):
        """The L-BFGS objective at the packed parameters ``packed``: ``(J, dJ/dtheta packed)``.

        scikit-learn's signature; the buffers it passes are not needed here.
        """
        import jax.numpy as jnp

        dtype = self._dtype
        with _data.precision(dtype):
            w = np.ones(X.shape[0], dtype) if sample_weight is None else sample_weight
            if not sp.issparse(X):
                X, y, w = (jnp.asarray(a, dtype) for a in (X, y, w))
            data, penalty, grads = _data.full_batch(
                self._net(), jnp.asarray(packed, dtype), X, y, w, jnp.asarray(self.alpha, dtype), dtype
            )
            return float(data + penalty), np.asarray(grads, np.float64)

    # ---------------------------------------------------------------- predicting

    def _forward(self, X) -> np.ndarray:
        """The network's outputs for validated rows ``X``, in the dtype of the fitted params."""
        dtype = self.coefs_[0].dtype
        with _data.precision(dtype):
            return _data.predict(self._net(), self._params(dtype), X, dtype)

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(
                self, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32)
            )
        return self._forward(X)

    def _score_params(self, net, params, X, y, w) -> float:
        """The validation score (accuracy or R^2) of ``params``: NaN when their outputs are not finite."""
        yhat = _data.predict(net, params, X, self._dtype)
        if not np.isfinite(yhat).all():
            return np.nan
        return float(self._score_function(y, self._outputs_to_predictions(yhat), sample_weight=w))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
