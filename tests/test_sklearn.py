"""fnn.sklearn: scikit-learn's own estimator checks, accuracy on digits, fnn's extras."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fnn.sklearn import (
    MLPClassifier,
    MLPRegressor,
    _training,
)

# Checks that scikit-learn itself skips for these estimators (none is marked
# as an expected failure): check_array_api_input without SCIPY_ARRAY_API, and a
# decision_function check (neither MLP has the method).
# Fewer, larger steps than the defaults keep the ~100 fits of the suite short.
ESTIMATORS = [
    MLPClassifier(max_iter=50, learning_rate_init=0.01, random_state=0),
    MLPRegressor(max_iter=50, learning_rate_init=0.01, random_state=0),
]


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


def test_extras_lm_activations_early_stopping_partial_fit():
    x, y = _blobs()
    clf = MLPClassifier((8,), activation="elu", solver="lm", max_iter=30, random_state=0).fit(x, y)
    assert clf.score(x, y) > 0.95
    np.testing.assert_allclose(clf.predict_proba(x).sum(axis=1), 1, rtol=1e-5)
    assert len(clf.history_) == clf.n_iter_ == len(clf.loss_curve_)

    clf = MLPClassifier(
        (16,),
        activation="gelu",
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=400,
        learning_rate_init=0.05,
        random_state=0,
    ).fit(x, y)
    assert len(clf.validation_scores_) == len(clf.loss_curve_) == clf.n_iter_ < 400
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    assert set(clf.predict(x)) <= {"a", "b", "c"}

    # partial_fit carries Adam's state over, as scikit-learn's does: three calls of one epoch
    # each are one run of three full-batch epochs (to rounding: each call shuffles anew)
    t = np.sin(x[:, 0]) + x[:, 1]
    with pytest.warns(ConvergenceWarning):  # 3 epochs do not converge
        whole = MLPRegressor(
            hidden_layer_sizes=(16,), activation="tanh", batch_size=len(x), max_iter=3, tol=0, random_state=0
        ).fit(x, t)
    parts = MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", batch_size=len(x), random_state=0)
    for _ in range(3):
        parts.partial_fit(x, t)
    # scikit-learn's counts
    assert parts.n_iter_ == 1 and len(parts.loss_curve_) == 3 and parts.t_ == 3 * len(x)
    for a, b in zip(whole.coefs_ + whole.intercepts_, parts.coefs_ + parts.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    with pytest.raises(ValueError, match="solver"):
        MLPClassifier(solver="newton").fit(x, y)
    with pytest.raises(ValueError, match="activation"):
        MLPRegressor(activation="softmax").fit(x, t)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(solver="lm", max_iter=2).fit(x, y, sample_weight=np.arange(len(x)))
    assert not hasattr(MLPClassifier(solver="lm"), "partial_fit")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=1 by design
@pytest.mark.parametrize(
    "solver, batch_size, expected",
    [("kfac", "auto", 256), ("momentum", "auto", 200), ("rprop", "auto", 400), ("kfac", 64, 64)],
)
def test_fnn_solvers_auto_batch_is_scikit_learns_or_the_methods_own_when_larger(
    solver, batch_size, expected, monkeypatch
):
    """``batch_size="auto"``: scikit-learn's ``min(200, n)``, K-FAC's own 256 (it needs large
    minibatches), the whole set for a full-batch method; a number given is taken as it is."""
    import fnn

    seen, fit = [], fnn.fit
    monkeypatch.setattr(fnn, "fit", lambda *a, **k: seen.append(k["batch_size"]) or fit(*a, **k))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 3)), rng.integers(0, 3, size=400)
    MLPClassifier((4,), solver=solver, batch_size=batch_size, max_iter=1, random_state=0).fit(x, y)
    assert seen == [expected]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=40 by design
@pytest.mark.parametrize("solver", ["br", "scg"])  # every name goes through the same fnn.fit path
def test_matlabs_training_functions_as_solvers(solver):
    """MATLAB's training functions train both estimators; br fits the squared error (as lm does)."""
    x, y = _blobs()
    clf = MLPClassifier((8,), solver=solver, max_iter=40, random_state=0).fit(x, y)
    assert clf.score(x, y) > 0.9 and len(clf.history_) == clf.n_iter_
    t = np.sin(x[:, 0]) + x[:, 1]
    reg = MLPRegressor(
        hidden_layer_sizes=(8,), activation="tanh", solver=solver, max_iter=40, random_state=0
    ).fit(x, t)
    assert reg.score(x, t) > 0.9
    if solver == "br":
        assert 0 < reg.history_.gamma[-1] <= 2 * 8 + 8 + 8 + 1
        with pytest.raises(ValueError, match="solver='br' minimises a sum of squares"):
            MLPRegressor(solver="br", loss="poisson").fit(x, np.abs(t))


# ------------------------------------------------------------ against scikit-learn's own estimators


def _digits(n_class=3, n=120):
    x, y = load_digits(n_class=n_class, return_X_y=True)
    return x[:n] / 16.0, y[:n]


def _multilabel():
    from sklearn.datasets import make_multilabel_classification

    return make_multilabel_classification(n_samples=80, n_features=10, n_classes=4, random_state=0)


def _regression(n_targets=1, poisson=False):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (90, 5))
    if poisson:
        return x, rng.poisson(np.exp(x[:, 0] + 0.5)).astype(float)
    t = np.column_stack([np.sin(2 * x[:, k]) + x[:, k + 1] for k in range(n_targets)])
    return x, t[:, 0] if n_targets == 1 else t


SAME_AS_SKLEARN = {
    "adam multiclass": ("clf", _digits, {}),
    "adam multiclass, early stopping": ("clf", _digits, {"early_stopping": True, "max_iter": 15}),
    "sgd nesterov binary, sample weights": ("clf", lambda: _digits(2), {"solver": "sgd", "weights": True}),
    "sgd invscaling, no shuffle": (
        "clf",
        _digits,
        {"solver": "sgd", "learning_rate": "invscaling", "shuffle": False},
    ),
    "sgd adaptive": ("clf", _digits, {"solver": "sgd", "learning_rate": "adaptive", "tol": 0.05}),
    "sgd stopping after several chunks of epochs": (
        "clf",
        _digits,
        {"solver": "sgd", "max_iter": 300, "tol": 1e-3, "stops": True},
    ),
    "adam multilabel, logistic": ("clf", _multilabel, {"activation": "logistic"}),
    "lbfgs multiclass, tanh": ("clf", _digits, {"solver": "lbfgs", "activation": "tanh"}),
    "adam sparse input": ("clf", _digits, {"sparse": True}),
    "adam multi-output regression": ("reg", lambda: _regression(3), {}),
    "sgd regression, early stopping, weights": (
        "reg",
        _regression,
        {"solver": "sgd", "early_stopping": True, "weights": True, "learning_rate_init": 0.01},
    ),
    "lbfgs poisson": ("reg", lambda: _regression(poisson=True), {"loss": "poisson", "solver": "lbfgs"}),
}


@pytest.mark.parametrize("case", list(SAME_AS_SKLEARN))
def test_same_fit_as_sklearn_in_float64(case):
    """The same settings give scikit-learn's own fit, to rounding: weights, curves, counters, predictions."""
    import scipy.sparse as sp
    from sklearn import neural_network

    kind, data, settings = SAME_AS_SKLEARN[case]
    settings = dict(settings)
    x, y = data()
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(x)) if settings.pop("weights", False) else None
    if settings.pop("sparse", False):
        x = sp.csr_matrix(np.where(x > 0.5, x, 0.0))
    stops = settings.pop("stops", False)
    settings = {"hidden_layer_sizes": (12, 7), "max_iter": 25, "random_state": 3, **settings}
    ours_cls, theirs_cls = (
        (MLPClassifier, neural_network.MLPClassifier)
        if kind == "clf"
        else (MLPRegressor, neural_network.MLPRegressor)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(**settings).fit(x, y, sample_weight=w)
        theirs = theirs_cls(**settings).fit(x, y, sample_weight=w)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert not stops or (ours.n_iter_ > 2 * _training.MAX_CHUNK and ours.n_iter_ % _training.MAX_CHUNK)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_layers_ == theirs.n_layers_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    for name in ("loss_curve_", "validation_scores_", "best_loss_", "best_validation_score_"):
        mine, ref = getattr(ours, name, None), getattr(theirs, name, None)
        assert (mine is None) == (ref is None), name
        if ref is not None:
            np.testing.assert_allclose(mine, ref, rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-9, atol=1e-11)
    if kind == "clf":
        np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=1e-9, atol=1e-11)


@pytest.mark.exact
def test_a_stop_inside_a_chunk_of_epochs_gives_that_epochs_params():
    """Epochs run in chunks; a stop inside one reruns it up to there: the same bits, draws and curve as a fit
    told to run exactly that many epochs."""
    x, y = _digits()
    settings = {"solver": "sgd", "hidden_layer_sizes": (12,), "random_state": 0, "tol": 1e-3}
    stopped = MLPClassifier(max_iter=300, **settings).fit(x, y)
    assert stopped.n_iter_ < 300 and stopped.n_iter_ % _training.MAX_CHUNK
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        told = MLPClassifier(max_iter=stopped.n_iter_, n_iter_no_change=10**6, **settings).fit(x, y)
    for a, b in zip(stopped.coefs_ + stopped.intercepts_, told.coefs_ + told.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert stopped.loss_curve_ == told.loss_curve_
    draws = [est._random_state.get_state()[1] for est in (stopped, told)]
    np.testing.assert_array_equal(*draws)


def test_the_shuffles_are_scikit_learns_draws():
    from sklearn.utils import shuffle

    class Est:
        shuffle = True
        _random_state = np.random.RandomState(5)

    ours = _training.shuffled(Est, np.arange(40), 3)
    rs, order, theirs = np.random.RandomState(5), np.arange(40), []
    for _ in range(3):
        order = shuffle(order, random_state=rs)
        theirs.append(order)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_float32_in_float32_out(Estimator):
    x, y = _digits()
    est = Estimator(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(x.astype(np.float32), y)
    assert all(a.dtype == np.float32 for a in est.coefs_ + est.intercepts_)
    out = (
        est.predict_proba(x.astype(np.float32))
        if Estimator is MLPClassifier
        else est.predict(x.astype(np.float32))
    )
    assert out.dtype == np.float32
    assert all(np.isfinite(v) and isinstance(v, float) for v in est.loss_curve_)


@pytest.mark.exact
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_input_is_densified_one_block_at_a_time(solver, monkeypatch):
    """CSR input gives the dense fit, and no more rows than a minibatch (or a chunk) are ever dense at
    once."""
    import scipy.sparse as sp

    from fnn.sklearn import _data

    x, y = _digits(n=300)
    x = np.where(x > 0.4, x, 0.0)
    monkeypatch.setattr(_data, "CHUNK", 64)
    densified = []
    dense_rows = _data.dense_rows

    def recording(X, rows):
        block = dense_rows(X, rows)
        if sp.issparse(X):
            densified.append(len(block))
        return block

    monkeypatch.setattr(_data, "dense_rows", recording)
    settings = dict(hidden_layer_sizes=(10,), solver=solver, batch_size=50, max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**settings).fit(x, y)
        sparse = MLPClassifier(**settings).fit(sp.csr_matrix(x), y)
    assert densified and max(densified) <= (50 if solver == "adam" else 64)
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(sparse.predict(sp.csc_matrix(x)), dense.predict(x))
