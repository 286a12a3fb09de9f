"""Each training method owns its contract: one record declares its defaults, its reports and its stop rule.

* A method defined here, outside the package (an optax transform and a
  ``Method`` record), trains through ``fnn.fit`` by record and by registered
  name; what it reports becomes a column of the history and of its CSV, and
  its own stopping rule ends the run, with a typed stop reason.
* Histories and checkpoints written before methods reported their own
  quantities (eight fixed columns, NaN for other methods') still load.
* Stop reasons are values: the scikit-learn estimators decide convergence
  from their kind, as scikit-learn does for the same settings.
* The loop, the CLI and the estimators name no method and no method's
  quantity (an ``ast`` scan of their string literals).
"""

from __future__ import annotations

import ast
import pathlib
import shutil
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn import Stop, StopKind
from fnn.training.history import History
from fnn.training.objective import MinibatchObjective

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(__file__).parent / "data"
NET = fnn.MLP((2, 3, 1), activation="tanh", output="identity", loss="mse")
X = jax.random.normal(jax.random.key(1), (16, 2))
Y = jnp.sin(X[:, :1])


# -------------------------------------------------------------------------- a method from outside the package


class HalvingState(NamedTuple):
    rate: jax.Array
    count: jax.Array


def halving_descent(rate: float = 0.5) -> optax.GradientTransformation:
    """Gradient descent whose rate halves every step: ``p <- p - rate_k g``, ``rate_k = rate / 2^k``."""

    def init(params):
        return HalvingState(
            jnp.asarray(rate, jax.tree_util.tree_leaves(params)[0].dtype), jnp.zeros((), jnp.int32)
        )

    def update(grads, state, params=None):
        step = jax.tree_util.tree_map(lambda g: -state.rate * g, grads)
        return step, HalvingState(state.rate / 2, state.count + 1)

    return optax.GradientTransformation(init, update)


def _report(state) -> dict:
    found = fnn.optimizers.find_state(state, HalvingState)
    return {"rate": found.rate, "steps": found.count}


def _stop(reports: dict) -> str | None:
    return f"the rate fell to {reports['rate']:g}" if reports["rate"] < 0.05 else None


HALVING = fnn.optimizers.Method(
    "halving", lambda lr, **_: halving_descent(lr), 0.5, full_batch=True, report=_report, stop=_stop
)


def _fit(optimizer, **kw):
    return fnn.fit(
        NET,
        fnn.init(jax.random.key(0), NET),
        (X, Y),
        optimizer=optimizer,
        epochs=20,
        key=jax.random.key(2),
        **kw,
    )


def test_a_method_from_outside_reports_its_quantities_and_stops_the_run(tmp_path):
    """Rates 0.5, 0.25, ..., 0.5/2^k after epoch k: below 0.05 after epoch 4 (0.03125), where its rule
    stops."""
    _, h = _fit(HALVING, callbacks=[fnn.callbacks.CSVLogger(tmp_path / "log.csv")])
    assert (
        len(h) == 4
        and h.stop.kind is StopKind.METHOD
        and h.stop_reason == "halving: the rate fell to 0.03125"
    )
    assert h.rate == [0.25, 0.125, 0.0625, 0.03125] and h.steps == [1.0, 2.0, 3.0, 4.0]
    assert list(h.reports) == ["rate", "steps"] and h.stop.converged
    header, *rows = (tmp_path / "log.csv").read_text().splitlines()
    cols = header.split(",")
    assert cols[6:8] == ["rate", "steps"] and [float(r.split(",")[6]) for r in rows] == h.rate


def test_a_registered_method_is_known_by_name_and_restores_from_its_checkpoint(tmp_path):
    fnn.optimizers.register(HALVING)
    try:
        params, h = _fit("halving", checkpoint=tmp_path / "ck.npz")
        assert fnn.optimizers.spec("halving") is HALVING and h.stop.kind is StopKind.METHOD and len(h) == 4
        _, again = _fit("halving", checkpoint=tmp_path / "ck.npz", resume=True)
        assert again.rate[:4] == h.rate  # the restored history keeps the method's columns
        with pytest.raises(ValueError, match="built-in"):
            fnn.optimizers.register(fnn.optimizers.Method("adam", HALVING.factory))
    finally:
        fnn.optimizers.OPTIMIZERS.pop("halving")


def test_a_method_may_not_report_a_generic_column():
    clash = fnn.optimizers.Method(
        "clash",
        HALVING.factory,
        0.5,
        full_batch=True,
        report=lambda state: {"learning_rate": fnn.optimizers.find_state(state, HalvingState).rate},
    )
    with pytest.raises(ValueError, match="cannot report 'learning_rate'"):
        _fit(clash)


def test_a_record_is_checked_when_made():
    with pytest.raises(TypeError, match="factory"):
        fnn.optimizers.Method("x", None)
    with pytest.raises(TypeError, match="report"):
        fnn.optimizers.Method("x", HALVING.factory, report=3)
    with pytest.raises(ValueError, match="batch_size"):
        fnn.optimizers.Method("x", HALVING.factory, batch_size=True)


@pytest.mark.parametrize("name", fnn.optimizers.NAMES)
def test_every_built_in_method_is_a_record_in_its_own_module(name):
    """The registry only collects: each record comes from the module that writes the method."""
    method = fnn.optimizers.spec(name)
    assert isinstance(method, fnn.optimizers.Method) and method.name == name
    module = method.factory.__module__
    assert module.startswith("fnn.optim.") and module != "fnn.optim.registry", module


def test_the_objective_fit_hands_a_method_is_the_declared_protocol():
    obj = MinibatchObjective(NET, X, Y)
    assert isinstance(obj, fnn.optimizers.Objective)
    assert (obj.n_examples, obj.n_residuals, obj.least_squares) == (16, 16, True)
    members = {n for n in vars(fnn.optimizers.Objective) if not n.startswith("_")} | {"__call__"}
    assert members == {
        "n_examples",
        "n_residuals",
        "least_squares",
        "__call__",
        "normal_equations",
        "curvature",
        "curvature_product",
    }


# -------------------------------------------------------------------------- files written before the records


@pytest.mark.parametrize(
    "name, reported, dropped",
    [
        ("br", ["mu", "gamma", "alpha", "beta"], ["damping", "rho", "cg_iterations", "momentum"]),
        ("hessian_free", ["damping", "rho", "cg_iterations"], ["mu", "gamma", "alpha", "beta", "momentum"]),
    ],
)
def test_a_checkpoint_written_before_the_records_resumes(tmp_path, name, reported, dropped):
    """The committed checkpoints of 3 epochs (eight method columns, NaN for the other methods'),
    resumed to 5."""
    ck = tmp_path / "ck.npz"
    shutil.copy(DATA / f"before_method_records_{name}.npz", ck)
    saved = fnn.training.checkpoint.load(ck).meta["history"]
    assert {"mu", "damping", "momentum"} <= set(saved) and "reports" not in saved  # the old layout
    params = fnn.init(jax.random.key(0), NET)
    _, h = fnn.fit(
        NET, params, (X, Y), optimizer=name, epochs=5, key=jax.random.key(2), checkpoint=ck, resume=True
    )
    assert len(h) == 5 and h.epoch == [1, 2, 3, 4, 5]
    for column in reported:
        assert getattr(h, column)[:3] == saved[column] and all(np.isfinite(getattr(h, column)))
    assert not set(dropped) & set(h.reports)


def test_a_history_csv_written_before_the_records_reads_back():
    """The committed GPU run of Levenberg-Marquardt: its mu is a report, the other seven columns
    (empty) are not."""
    path = ROOT / "benchmarks/results/gpu_h100/second_call/lm_large/history.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert {"mu", "gamma", "damping", "momentum"} <= set(header)
    h = History.from_csv(path)
    assert list(h.reports) == ["mu"] and len(h.mu) == len(h) > 0 and all(m > 0 for m in h.mu)
    assert h.train_loss[0] == float(path.read_text().splitlines()[1].split(",")[header.index("train_loss")])
    assert len(h.grad_norm[0]) == sum(c.startswith("grad_norm_") for c in header)


@pytest.mark.parametrize("run", ["mnist_large_h200/bf16", "mnist_large_h200/tf32"])
def test_an_adam_history_csv_written_before_the_records_has_no_reports(run):
    """Adam adapted none of the eight old columns (all empty): none of them becomes a report."""
    path = ROOT / "benchmarks/results" / run / "history.csv"
    assert "mu" in path.read_text().splitlines()[0].split(",")
    h = History.from_csv(path)
    assert h.reports == {} and len(h) > 0 and all(np.isfinite(h.train_loss))


def test_a_history_round_trips_through_its_dict_and_csv(tmp_path):
    _, h = _fit(HALVING)
    again = History.from_dict(h.to_dict())
    assert again.reports == h.reports and again.stop == h.stop and again.train_loss == h.train_loss
    h.to_csv(tmp_path / "h.csv")
    read = History.from_csv(tmp_path / "h.csv")
    assert read.reports == h.reports and read.epoch == h.epoch
    with pytest.raises(ValueError, match="JSON object"):
        History.from_dict([1, 2])
    with pytest.raises(ValueError, match="reports must be a JSON object of per-epoch lists"):
        History.from_dict({**h.to_dict(), "reports": {"rate": 3}})
    with pytest.raises(ValueError, match="stop_kind must be one of"):
        History.from_dict({**h.to_dict(), "stop_kind": "exploded"})
    (tmp_path / "bad.csv").write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(ValueError, match="bad.csv: not a history.csv: could not convert"):
        History.from_csv(tmp_path / "bad.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no epoch and train_loss columns"):
        History.from_csv(tmp_path / "other.csv")


# -------------------------------------------------------------------------- stop reasons are values


def test_each_stop_has_its_kind():
    kinds = {
        StopKind.COMPLETED: _fit("adam")[1],
        StopKind.GOAL: _fit("levenberg_marquardt", goal=1.0)[1],
        StopKind.CALLBACK: _fit("adam", callback=lambda record: True)[1],
        StopKind.METHOD: _fit(HALVING)[1],
    }
    for kind, h in kinds.items():
        assert h.stop.kind is kind and str(h.stop) == h.stop_reason
    assert kinds[StopKind.CALLBACK].stop_reason == "stopped by callback"
    assert not kinds[StopKind.COMPLETED].stop.converged and kinds[StopKind.GOAL].stop.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fnn.callbacks.DivergenceWarning)
        _, h = _fit(fnn.optimizers.get("sgd", 1e6))
    assert h.diverged and h.stop.kind is StopKind.DIVERGED and not h.stop.converged
    assert Stop(StopKind.GOAL, "x") == Stop(StopKind.GOAL, "x")


def _iris_fit(module, solver):
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = module.MLPClassifier(
            solver=solver, tol=0.1, n_iter_no_change=2, max_iter=4, random_state=0
        ).fit(X, y)
    return est.n_iter_, any(issubclass(w.category, ConvergenceWarning) for w in caught)


@pytest.mark.parametrize("solver", ["rprop", "adam"])
def test_an_estimator_stopped_by_its_tolerance_in_the_last_epoch_does_not_warn(solver):
    """tol=0.1 stops the run in epoch 4 = max_iter: scikit-learn breaks out before its
    ConvergenceWarning, and so do fnn's estimators, for its solvers and fnn's (rprop: the stop's
    kind, not its message)."""
    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    import fnn.sklearn

    assert _iris_fit(sklearn_nn, "adam") == (4, False)
    assert _iris_fit(fnn.sklearn, solver) == (4, False)


# -------------------------------------------------------------------------- no method known by name


def _literals(folder: str) -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((str(path.relative_to(ROOT)), node.lineno, node.value))
    return out


# scikit-learn's own vocabulary: the estimators implement its solvers 'sgd', 'adam' and 'lbfgs' themselves and
# take its parameters 'alpha' and 'momentum'; fit and fnn train take 'momentum' as a hyperparameter of the
# optimizer they build (fnn.optimizers.get)
SCIKIT_LEARN = {"sgd", "adam", "lbfgs", "alpha", "momentum"}
FIT_KEYWORDS = {"momentum"}


@pytest.mark.parametrize(
    "folder, allowed", [("fnn/training", set()), ("fnn/cli", FIT_KEYWORDS), ("fnn/sklearn", SCIKIT_LEARN)]
)
def test_the_loop_the_cli_and_the_estimators_name_no_method(folder, allowed):
    quantities = {"mu", "mu_max", "gamma", "alpha", "beta", "damping", "rho", "cg_iterations", "momentum"}
    names = set(fnn.optimizers.NAMES) | set(fnn.optimizers.ALIASES) | quantities
    found = [hit for hit in _literals(folder) if hit[2] in names - allowed]
    assert found == []
