"""scikit-learn estimators running fnn on JAX: ``MLPClassifier`` and ``MLPRegressor``.

    from fnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="gelu", random_state=0).fit(X, y)
    clf.predict_proba(X_test), clf.score(X_test, y_test), clf.loss_curve_, clf.validation_loss_curve_

They follow ``sklearn.neural_network``'s interface and parameter names where the
meaning is the same (``hidden_layer_sizes``, ``activation``, ``solver``,
``alpha``, ``batch_size``, ``learning_rate_init``, ``max_iter``, ``tol``,
``momentum``, ``nesterovs_momentum``, ``early_stopping``,
``validation_fraction``, ``n_iter_no_change``, ``random_state``, ``verbose``)
and add what it lacks:

* every fnn activation (``relu``, ``tanh``, ``sigmoid``/``logistic``,
  ``identity``, ``leaky_relu``, ``elu``, ``softplus``, ``gelu``, and any
  registered with ``fnn.register_activation``);
* ``solver="lm"`` (Levenberg-Marquardt on the hand-written Jacobian, up to
  ``fnn.optimizers.LM_MAX_PARAMS`` weights), besides ``adam``, ``sgd``,
  ``lbfgs`` and any name of ``fnn.optimizers.NAMES``;
* ``init``: the weight initialisation scheme (``fnn.initializers.SCHEMES``);
* ``validation_loss_curve_`` next to ``loss_curve_`` when ``early_stopping``
  holds out a validation split, and ``history_``, the full ``fnn.History``.

Training is ``fnn.fit``: compiled epochs, hand-written backpropagation, on
whatever device JAX uses (CPU or GPU). The arithmetic is float32.

Semantics, and where they differ from scikit-learn's MLP:

* ``alpha`` is the L2 penalty. As in scikit-learn, the gradient of a minibatch
  of ``B`` examples gains ``alpha * W / B``, so ``fnn.fit`` is called with
  ``weight_decay = alpha / B``; fnn decays the biases too. ``solver="lm"``
  takes no penalty and ignores ``alpha``.
* ``batch_size="auto"`` is ``min(200, n_samples)`` for minibatch solvers, and
  the whole training set for full-batch ones (``lbfgs``, ``lm``, ``gd``,
  ``rprop``, ``adaptive_*``).
* ``solver="sgd"`` is gradient descent with ``momentum`` (Nesterov's when
  ``nesterovs_momentum``) at the constant rate ``learning_rate_init``.
* Convergence: training stops when the training loss has not fallen by more
  than ``tol`` for ``n_iter_no_change`` epochs; with ``early_stopping`` a
  stratified (classifier) ``validation_fraction`` is held out, training stops
  after ``n_iter_no_change`` epochs without the *validation loss* falling by
  ``tol`` (scikit-learn watches the validation score), and the weights of the
  best validation epoch are kept. Reaching ``max_iter`` first raises
  ``ConvergenceWarning``.
* ``partial_fit`` runs one epoch over the data it is given, starting from the
  current weights and the optimizer's state (Adam's moments and step count,
  the momentum) that the previous call left, as scikit-learn's does.
* The classifier has a softmax output and the cross-entropy loss (with
  ``solver="lm"``: softmax and the squared error on one-hot targets, since
  Levenberg-Marquardt minimises a sum of squares); the regressor an identity
  output and the squared error.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, X="no_validation", y="no_validation", reset=True, **kw):
        return est._validate_data(X, y, reset=reset, **kw)

# scikit-learn's names for activations that fnn spells differently.
_ACTIVATION_ALIASES = {"logistic": "sigmoid"}
# scikit-learn's solver names mapped to fnn's optimizers.
_SOLVER_ALIASES = {"lm": "levenberg_marquardt"}
_AUTO_BATCH = 200
_PREDICT_CHUNK = 256


def _fnn():
    import fnn  # imported late: importing fnn.sklearn should not pay for JAX until it is used

    return fnn


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: validation, the network, training."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=200,
        tol=1e-4,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        init="glorot_uniform",
        random_state=None,
        verbose=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ settings

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_layer_sizes
        if isinstance(h, numbers.Integral):
            h = (h,)
        try:
            h = tuple(h)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got {h!r}") from None
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in h):
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {h!r}")
        return tuple(int(s) for s in h)

    def _optimizer(self) -> str:
        from fnn import optimizers

        name = _SOLVER_ALIASES.get(self.solver, self.solver)
        if name == "sgd":
            name = "momentum" if self.momentum > 0 else "sgd"
        if not isinstance(name, str) or name not in optimizers.NAMES:
            raise ValueError(
                f"unknown solver {self.solver!r}; expected 'adam', 'sgd', 'lbfgs', 'lm' or one of {list(optimizers.NAMES)}"
            )
        return name

    def _check_params(self):
        def positive(name, v, integral=False):
            kind = numbers.Integral if integral else numbers.Real
            if isinstance(v, bool) or not isinstance(v, kind) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a positive {'int' if integral else 'number'}, got {v!r}")

        positive("max_iter", self.max_iter, integral=True)
        positive("n_iter_no_change", self.n_iter_no_change, integral=True)
        positive("learning_rate_init", self.learning_rate_init)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not 0 <= self.alpha < math.inf:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or not 0 <= self.tol < math.inf:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        if not (isinstance(self.momentum, numbers.Real) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction!r}")
        if self.batch_size != "auto":
            positive("batch_size", self.batch_size, integral=True)
        from fnn import activations, initializers

        act = _ACTIVATION_ALIASES.get(self.activation, self.activation)
        activations.get(act)  # ValueError naming the known activations
        if not activations.get(act).hidden_ok:
            raise ValueError(f"activation {self.activation!r} may only be used as an output activation")
        if self.init not in initializers.SCHEMES:
            raise ValueError(f"unknown init {self.init!r}; expected one of {list(initializers.SCHEMES)}")
        return act

    def _batch(self, n: int, full_batch: bool) -> int:
        if self.batch_size == "auto":
            return n if full_batch else min(_AUTO_BATCH, n)
        return min(int(self.batch_size), n)

    # ------------------------------------------------------------------ training

    def _net(self, n_in: int, n_out: int, act: str):
        fnn = _fnn()
        output, loss = self._output_and_loss()
        return fnn.MLP((n_in, *self._hidden(), n_out), activation=act, output=output, loss=loss)

    def _fit(self, X, T, *, epochs: int, incremental: bool, stratify=None):
        """Train on ``X`` (float32) and targets ``T`` (labels or float columns)."""
        import jax

        fnn = _fnn()
        from fnn import optimizers

        act = self._check_params()
        name = self._optimizer()
        n_out = self._n_outputs_net()
        rng = check_random_state(self.random_state)
        first = not (incremental and hasattr(self, "params_"))
        if first:
            self._net_ = self._net(X.shape[1], n_out, act)
            self.params_ = fnn.init(jax.random.key(int(rng.randint(2**31 - 1))), self._net_, scheme=self.init)
            self.loss_curve_, self.validation_loss_curve_ = [], []
            self.best_loss_ = math.inf
            self.n_iter_ = 0
            self.t_ = 0
            self._opt_state = None
        net = self._net_
        validation = None
        use_val = self.early_stopping and not incremental
        if use_val:
            X, Xv, T, Tv = train_test_split(X, T, test_size=self.validation_fraction, random_state=rng.randint(2**31 - 1),
                                            stratify=stratify)
            validation = (Xv, Tv)
        n = X.shape[0]
        full = optimizers.spec(name).full_batch
        batch = self._batch(n, full)
        lm = name == "levenberg_marquardt"
        lr = None if name in ("lbfgs", "levenberg_marquardt") else float(self.learning_rate_init)
        stop = {"best": self.best_loss_, "bad": 0, "converged": False}

        def converged(record):
            # scikit-learn's rule: n_iter_no_change epochs without the training loss
            # falling below the best by more than tol.
            loss = record["train_loss"]
            if loss > stop["best"] - self.tol:
                stop["bad"] += 1
            else:
                stop["bad"] = 0
            stop["best"] = min(stop["best"], loss)
            if stop["bad"] >= self.n_iter_no_change:
                stop["converged"] = True
                return True
            return None

        params, history = fnn.fit(
            net, self.params_, (X, T), optimizer=name, epochs=epochs, batch_size=batch,
            key=jax.random.key(int(rng.randint(2**31 - 1))), validation=validation, learning_rate=lr,
            momentum=float(self.momentum), nesterov=bool(self.nesterovs_momentum),
            weight_decay=0.0 if lm else float(self.alpha) / batch,
            patience=int(self.n_iter_no_change) if use_val else None, min_delta=float(self.tol),
            callback=None if (use_val or incremental) else converged, progress=bool(self.verbose),
            opt_state=self._resumable_state(name, batch) if incremental else None,
        )
        self._opt_state = (name, batch, history.opt_state)
        self.params_ = params
        self.history_ = history
        self.loss_curve_ = list(self.loss_curve_) + list(history.train_loss)
        if use_val:
            self.validation_loss_curve_ = list(history.val_loss)
            self.best_validation_loss_ = min(history.val_loss)
            self.best_loss_ = None
        else:
            self.best_loss_ = min(stop["best"], min(history.train_loss))
        self.n_iter_ += len(history)
        self.t_ += len(history) * n
        self.loss_ = float(history.train_loss[-1])
        self.coefs_ = [np.asarray(layer["W"]) for layer in params]
        self.intercepts_ = [np.asarray(layer["b"]) for layer in params]
        self.n_layers_ = net.n_layers + 1
        self.n_outputs_ = self._n_outputs_user()
        self.out_activation_ = net.output
        if history.diverged:
            warnings.warn(f"training diverged: {history.stop_reason}", ConvergenceWarning, stacklevel=3)
        elif (not incremental and len(history) >= epochs and not stop["converged"]
              and not history.stop_reason.startswith(("early stopping", "levenberg"))):
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached and the optimization "
                "hasn't converged yet.", ConvergenceWarning, stacklevel=3,
            )
        return self

    def _resumable_state(self, name: str, batch: int):
        """The optimizer state the previous call left, if it ran the same solver and batch size."""
        saved = getattr(self, "_opt_state", None)
        return saved[2] if saved is not None and saved[:2] == (name, batch) else None

    def _raw_predict(self, X):
        check_is_fitted(self, "params_")
        X = np.asarray(_validate_data(self, X, reset=False, dtype=(np.float64, np.float32)), np.float32)
        # Fixed-size chunks: one compiled program for every number of rows, and
        # each row's output independent of the rows it is batched with.
        fnn = _fnn()
        out = []
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            part = X[start:start + _PREDICT_CHUNK]
            padded = np.zeros((_PREDICT_CHUNK, X.shape[1]), np.float32)
            padded[: len(part)] = part
            out.append(np.asarray(fnn.predict(self._net_, self.params_, padded))[: len(part)])
        return np.concatenate(out).astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (softmax output, cross-entropy loss) trained by fnn.

    See the module docstring for the parameters and how they map onto
    ``fnn.fit``. Fitted attributes: ``classes_``, ``n_features_in_``,
    ``n_iter_``, ``loss_``, ``loss_curve_``, ``validation_loss_curve_``
    (with ``early_stopping``), ``best_loss_``, ``coefs_``, ``intercepts_``,
    ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``history_``.
    """

    def _output_and_loss(self):
        return ("softmax", "mse") if self._optimizer() == "levenberg_marquardt" else ("softmax", "cross_entropy")

    def _n_outputs_net(self):
        return len(self.classes_)

    def _n_outputs_user(self):
        return len(self.classes_)

    def _targets(self, y):
        labels = np.searchsorted(self.classes_, y).astype(np.int32)
        if self._optimizer() == "levenberg_marquardt":
            return np.eye(len(self.classes_), dtype=np.float32)[labels]
        return labels

    def _prepare(self, X, y, reset: bool):
        X, y = _validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return np.asarray(X, np.float32), y

    def fit(self, X, y):
        """Train from a fresh initialisation for up to ``max_iter`` epochs."""
        for attr in ("params_", "classes_"):
            self.__dict__.pop(attr, None)
        X, y = self._prepare(X, y, reset=True)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data, got 1 class")
        stratify = self._stratify(y)
        return self._fit(X, self._targets(y), epochs=int(self.max_iter), incremental=False, stratify=stratify)

    def _stratify(self, y):
        if not self.early_stopping:
            return None
        _, counts = np.unique(y, return_counts=True)
        n_val = math.ceil(self.validation_fraction * len(y))
        return y if counts.min() >= 2 and n_val >= len(counts) else None

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; ``classes`` (all labels) is required on the first call."""
        first = not hasattr(self, "params_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._prepare(X, y, reset=first)
        if first:
            self.classes_ = np.unique(column_or_1d(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes, got {self.classes_!r}")
        elif classes is not None and not np.array_equal(np.unique(column_or_1d(classes)), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call to partial_fit ({self.classes_!r})")
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"y holds labels {unseen!r} not in classes {self.classes_!r}")
        return self._fit(X, self._targets(y), epochs=1, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        p = self._raw_predict(X)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        check_is_fitted(self, "params_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (identity output, squared error) trained by fnn.

    ``y`` may be 1-D or have several columns; ``predict`` returns the same shape.
    Fitted attributes as for ``MLPClassifier``, without ``classes_``.
    """

    def _output_and_loss(self):
        return "identity", "mse"

    def _n_outputs_net(self):
        return self._n_targets

    def _n_outputs_user(self):
        return self._n_targets

    def _prepare(self, X, y, reset: bool):
        X, y = _validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                              dtype=(np.float64, np.float32))
        y = np.asarray(y, np.float32)
        if reset:
            self._y_1d = y.ndim == 1
        return np.asarray(X, np.float32), (y[:, None] if y.ndim == 1 else y)

    def fit(self, X, y):
        """Train from a fresh initialisation for up to ``max_iter`` epochs."""
        self.__dict__.pop("params_", None)
        X, y = self._prepare(X, y, reset=True)
        self._n_targets = y.shape[1]
        return self._fit(X, y, epochs=int(self.max_iter), incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, starting from the current weights."""
        first = not hasattr(self, "params_")
        X, y = self._prepare(X, y, reset=first)
        if first:
            self._n_targets = y.shape[1]
        elif y.shape[1] != self._n_targets:
            raise ValueError(f"y has {y.shape[1]} targets, but the estimator was fitted with {self._n_targets}")
        return self._fit(X, y, epochs=1, incremental=True)

    def predict(self, X):
        p = self._raw_predict(X)
        return p[:, 0] if self._y_1d else p

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
