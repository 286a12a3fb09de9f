"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, trained by fnn on JAX.

    from fnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), random_state=0).fit(X, y)
    clf.predict_proba(X_test), clf.score(X_test, y_test), clf.coefs_, clf.loss_curve_

A drop-in for ``sklearn.neural_network``'s estimators: the same constructor
parameters with the same defaults and meaning, the same fitted attributes
(``coefs_`` and ``intercepts_`` in scikit-learn's orientation, ``n_iter_``,
``t_``, ``loss_``, ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
``best_validation_score_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``,
``classes_``, ``n_features_in_``, ``feature_names_in_``), the same behaviour:

* the same initial weights, validation split and shuffles, drawn in the same
  order from the same ``random_state``; the same minibatches, learning-rate
  schedules (``constant``, ``invscaling`` with ``power_t``, ``adaptive``),
  stopping rules (``tol``, ``n_iter_no_change``, ``early_stopping`` on the
  validation score), ``warm_start``, ``partial_fit``, ``verbose`` output,
  errors and ``ConvergenceWarning``s;
* binary and multilabel targets with logistic outputs, multiclass with a
  softmax, multi-output regression, ``loss="poisson"`` (exponential output);
* scipy sparse input (CSR/CSC), densified one minibatch (or chunk) at a time;
  ``sample_weight`` in ``fit`` and ``partial_fit``;
* float32 input trains and predicts in float32, float64 input in float64
  (JAX's x64 mode is turned on for the duration of the call).

What runs is fnn: the objective's gradient is the hand-written delta
recursion, each epoch of minibatch steps one compiled ``lax.scan``
(``fnn.sklearn._objective``), on whatever device JAX uses. ``solver="sgd"``
is optax's momentum trace on rate-scaled gradients, which is scikit-learn's
update; ``solver="adam"`` is scikit-learn's form of Adam written as an optax
transform (``epsilon`` added before the bias correction, where ``optax.adam``
adds it after); ``solver="lbfgs"`` is scipy's L-BFGS-B, as in scikit-learn,
on fnn's objective and gradient. In float64 a fit follows scikit-learn's to
rounding: the same weights after the same epochs.

Beyond scikit-learn: every fnn hidden activation (``gelu``, ``elu``, ...), and
fnn's own training methods by name, ``solver="lm"`` (Levenberg-Marquardt)
among them (``fnn.sklearn._fnn_solvers``).
"""

from fnn.sklearn._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
