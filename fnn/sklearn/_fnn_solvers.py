"""fnn's own training methods in the estimators (``solver="lm"``, ``"rprop"``, ...), through ``fnn.fit``.

scikit-learn's stopping rule is kept: training stops once the training loss
has not fallen below its best by more than ``tol`` for ``n_iter_no_change``
epochs. With ``early_stopping``, ``fnn.fit`` holds out the same split as
scikit-learn's solvers and stops after ``n_iter_no_change`` epochs without the
validation *loss* falling by ``tol``, keeping the best epoch's weights;
``validation_scores_`` records the score of every epoch. The full ``fnn.History``
is ``history_``. These methods take dense input and no sample weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fnn.sklearn import _params, _training


def _checked(est, name, X, w):
    if sp.issparse(X):
        raise ValueError(
            f"solver={est.solver!r} needs dense X; sparse input trains with 'sgd', 'adam' or 'lbfgs'"
        )
    if not np.all(w == 1):
        raise ValueError(
            f"sample_weight is supported by the solvers 'sgd', 'adam' and 'lbfgs', not {est.solver!r}"
        )
    from fnn import optimizers

    # scikit-learn's loss="poisson" is the deviance, which a least-squares method would silently replace
    if optimizers.spec(name).least_squares and getattr(est, "loss", None) == "poisson":
        raise ValueError(f"solver={est.solver!r} minimises a sum of squares; it does not take loss='poisson'")


def _stopping_rule(est):
    """scikit-learn's rule on the training loss, as a ``fnn.fit`` callback."""

    def converged(record):
        loss = record["train_loss"]
        est._no_improvement_count = est._no_improvement_count + 1 if loss > est.best_loss_ - est.tol else 0
        est.best_loss_ = min(est.best_loss_, loss)
        return True if est._no_improvement_count > est.n_iter_no_change else None

    return converged


def _scores(est, net, validation):
    """A ``fnn.fit`` callback recording each epoch's validation score in ``validation_scores_``."""
    from fnn.training.callbacks import Callback

    X_val, y_val = validation[0], est._decode(validation[1])

    class Scores(Callback):
        def on_epoch_end(self, run):
            est.validation_scores_.append(est._score_params(net, run.params, X_val, y_val, None))

    return Scores()


def fit(est, net, params, X, y, w):
    """Train with ``fnn.fit`` and fnn's optimizer ``solver``; returns the trained params."""
    import jax

    import fnn
    from fnn import optimizers

    name = _params.fnn_solver(est.solver)
    _checked(est, name, X, w)
    validation = None
    if est.early_stopping:
        (X, y, _), (X_val, y_val, _) = _training.validation_split(est, X, y, w)
        validation = (X_val, y_val.astype(est._dtype))
    y = y.astype(est._dtype)
    n = X.shape[0]
    auto = optimizers.default_batch(name, 200) or n  # scikit-learn's 200, or the method's own when larger
    batch = min(auto if est.batch_size == "auto" else int(est.batch_size), n)
    own_step = optimizers.spec(name).own_step  # no learning rate, no weight decay (br sets its own)
    patience = est.max_iter if est.n_iter_no_change == np.inf else int(est.n_iter_no_change)
    params, history = fnn.fit(
        net,
        params,
        (X, y),
        optimizer=name,
        epochs=int(est.max_iter),
        batch_size=batch,
        key=jax.random.key(int(est._random_state.randint(2**31 - 1))),
        validation=validation,
        learning_rate=None if own_step else float(est.learning_rate_init),
        momentum=float(min(est.momentum, 0.999)),
        nesterov=bool(est.nesterovs_momentum),
        weight_decay=0.0 if own_step else float(est.alpha) / batch,
        patience=None if validation is None else patience,
        min_delta=float(est.tol),
        callbacks=[
            _scores(est, net, validation) if validation else fnn.callbacks.Lambda(_stopping_rule(est))
        ],
        progress=bool(est.verbose),
    )
    est.history_ = history
    est.loss_curve_ = list(est.loss_curve_) + [float(v) for v in history.train_loss]
    est.n_iter_ = len(history)
    est.t_ += len(history) * n
    est.loss_ = float(history.train_loss[-1])
    if validation:
        est.best_validation_score_ = (
            float(np.nanmax(est.validation_scores_)) if est.validation_scores_ else -np.inf
        )
    if history.diverged or (len(history) >= est.max_iter and not history.stop.converged):
        warnings.warn(
            f"{type(est).__name__}: maximum iterations ({est.max_iter}) reached and the optimization "
            "hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=4,  # the caller of fit: fit -> BaseMLP._fit -> _fnn_solvers.fit
        )
    return params
