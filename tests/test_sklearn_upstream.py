"""scikit-learn's own tests of its MLPs, run against ``fnn.sklearn``.

The test module is the one installed with scikit-learn
(``sklearn/neural_network/tests/test_mlp.py``); nothing of it is copied here.
It is executed afresh, under its own name, while ``sklearn.neural_network``'s
``MLPClassifier`` and ``MLPRegressor`` are fnn's: its ``from
sklearn.neural_network import MLPClassifier, MLPRegressor`` and every
parametrisation over the two then bind fnn's estimators. Its test functions
are collected from this module's namespace, and ``global_random_seed`` is
provided as scikit-learn's own conftest provides it.
"""

import importlib.util
import os

import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network

import fnn.sklearn

UPSTREAM = "sklearn.neural_network.tests.test_mlp"

# Tests that read scikit-learn's private attributes, with what they read.
DESELECTED = {}


def _load_upstream():
    spec = importlib.util.find_spec(UPSTREAM)
    if spec is None:  # pragma: no cover - scikit-learn installed without its tests
        pytest.skip(f"{UPSTREAM} is not installed", allow_module_level=True)
    module = importlib.util.module_from_spec(spec)
    module.__name__ = "sklearn_test_mlp_on_fnn"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sklearn.neural_network, "MLPClassifier", fnn.sklearn.MLPClassifier)
        mp.setattr(sklearn.neural_network, "MLPRegressor", fnn.sklearn.MLPRegressor)
        spec.loader.exec_module(module)
    assert (
        module.MLPClassifier is fnn.sklearn.MLPClassifier and module.MLPRegressor is fnn.sklearn.MLPRegressor
    )
    return module


def _seeds():
    """scikit-learn's ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED``: unset is 42, ``all`` is 0-99, ``a-b`` a range."""
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "42")
    if value == "all":
        return list(range(100))
    if "-" in value:
        start, stop = (int(v) for v in value.split("-"))
        return list(range(start, stop + 1))
    return [int(value)]


@pytest.fixture(params=_seeds())
def global_random_seed(request):
    return request.param


_upstream = _load_upstream()
for _name, _test in vars(_upstream).items():
    if _name.startswith("test_") and callable(_test):
        if _name in DESELECTED:
            _test = pytest.mark.skip(reason=f"reads scikit-learn's private {DESELECTED[_name]}")(_test)
        globals()[_name] = _test
