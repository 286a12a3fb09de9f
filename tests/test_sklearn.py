"""fnn.sklearn: scikit-learn's own estimator checks, accuracy on digits, fnn's extras."""

import warnings

import jax
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Checks that scikit-learn itself skips for these estimators (none is marked
# as an expected failure):
#   check_array_api_input: the estimators do not declare array-API support;
#   check_classifier_data_not_an_array / check_regressor_data_not_an_array:
#     skipped by scikit-learn when pandas is not installed.
# Fewer, larger steps than the defaults keep the ~100 fits of the suite short.
ESTIMATORS = [MLPClassifier(max_iter=50, learning_rate_init=0.01, random_state=0),
              MLPRegressor(max_iter=50, learning_rate_init=0.01, random_state=0)]


@pytest.fixture(scope="module", autouse=True)
def persistent_compilation_cache(tmp_path_factory):
    """The checks run ~100 short fits on a handful of shapes; XLA's on-disk cache
    compiles each distinct epoch program once instead of once per fit."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update(names[1], 0.0)
    jax.config.update(names[2], 0)
    yield
    for n, v in before.items():
        jax.config.update(n, v)


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_digits_cross_validation_accuracy():
    x, y = load_digits(return_X_y=True)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    clf = make_pipeline(StandardScaler(), MLPClassifier(random_state=0, max_iter=60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(clf, x, y, cv=cv)
    assert scores.mean() >= 0.96, scores


def _blobs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.array([[2, 0], [-1, 2], [-1, -2]])[y] + 0.5 * rng.normal(size=(n, 2))
    return x, np.array(["a", "b", "c"])[y]


def test_extras_lm_activations_validation_curve_partial_fit():
    x, y = _blobs()
    clf = MLPClassifier((8,), activation="elu", solver="lm", max_iter=30, random_state=0).fit(x, y)
    assert clf.score(x, y) > 0.95
    np.testing.assert_allclose(clf.predict_proba(x).sum(axis=1), 1, rtol=1e-5)

    clf = MLPClassifier((16,), activation="gelu", early_stopping=True, n_iter_no_change=3, max_iter=400,
                        learning_rate_init=0.05, random_state=0).fit(x, y)
    assert len(clf.validation_loss_curve_) == len(clf.loss_curve_) == clf.n_iter_ < 400
    assert set(clf.predict(x)) <= {"a", "b", "c"}

    reg = MLPRegressor((16,), activation="tanh", random_state=0)
    t = np.sin(x[:, :1]) + x[:, 1:]
    for _ in range(3):
        reg.partial_fit(x, t)
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3 and reg.predict(x).shape == t.shape
    # partial_fit carries Adam's state over, as scikit-learn does: three calls of one epoch each
    # are one run of three full-batch epochs
    with pytest.warns(ConvergenceWarning):  # 3 epochs do not converge
        whole = MLPRegressor((16,), activation="tanh", batch_size=len(x), max_iter=3, tol=0, random_state=0).fit(x, t)
    parts = MLPRegressor((16,), activation="tanh", batch_size=len(x), random_state=0)
    for _ in range(3):
        parts.partial_fit(x, t)
    for a, b in zip(whole.coefs_ + whole.intercepts_, parts.coefs_ + parts.intercepts_):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(ValueError, match="solver"):
        MLPClassifier(solver="newton").fit(x, y)
    with pytest.raises(ValueError, match="activation"):
        MLPRegressor(activation="softmax").fit(x, t)
