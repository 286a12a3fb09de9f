"""The public API: one path per name, each name written out here as users reach it.

Each public namespace's names are listed literally below: a name that appears or
disappears changes this file, on purpose. Every name must resolve, the namespace's
``__all__`` must be exactly the list, and nothing else public may leak in (the
implementation subpackages ``fnn.core``, ``fnn.training``, ... are attributes of
``fnn`` but internal, and not listed). The namespaces that re-export an
implementation module (``fnn.callbacks`` from ``fnn.training.callbacks``, ...) do so
name by name, ``from X import A as A``, never with ``import *``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pathlib
import re

import pytest

import fnn

PACKAGE = pathlib.Path(fnn.__file__).parent

PUBLIC = {
    "fnn": [
        "Curvature",
        "CurvatureReport",
        "Dense",
        "GradientReport",
        "Graph",
        "History",
        "Interrupted",
        "MLP",
        "Policy",
        "Run",
        "Stop",
        "StopKind",
        "autodiff",
        "backprop",
        "check_curvature",
        "check_gradients",
        "check_inputs",
        "curvature",
        "disable_compile_cache",
        "enable_compile_cache",
        "evaluate",
        "finite_differences",
        "fit",
        "gnvp",
        "hvp",
        "init",
        "loss",
        "loss_with_manual_vjp",
        "predict",
        "register_activation",
        "single_unit_gradient",
    ],
    "fnn.callbacks": [
        "CSVLogger",
        "Callback",
        "Checkpoint",
        "Diagnostics",
        "DivergenceWarning",
        "EarlyStopping",
        "Lambda",
        "LevenbergMarquardtStop",
        "MethodStop",
        "ProgressBar",
        "StopAt",
        "TerminateOnNaN",
        "postfix",
    ],
    # At 1a997af also the internal state readers "mu", "learning_rate", "bayesian" and "adapted"
    # (STATE_READERS), which left the public surface with the optimizer records (each method reports its
    # own quantities); "ALIASES", "DEFAULT", "Method", "default_batch", "find_state" and "register" came
    # with them.
    "fnn.optimizers": [
        "ALIASES",
        "AdaptiveLRState",
        "BayesianRegularizationState",
        "DEFAULT",
        "HessianFreeState",
        "KfacState",
        "LevenbergMarquardtState",
        "Method",
        "NAMES",
        "OPTIMIZERS",
        "Objective",
        "Spec",
        "adaptive_lr",
        "bayesian_regularization",
        "default_batch",
        "find_state",
        "get",
        "hessian_free",
        "kfac",
        "levenberg_marquardt",
        "register",
        "residuals_and_jacobian",
        "scg",
        "spec",
    ],
    "fnn.data": [
        "Imputer",
        "MinMaxScaler",
        "OutlierClipper",
        "SCALERS",
        "Split",
        "Splits",
        "StandardScaler",
        "check_finite",
        "encode_labels",
        "one_hot",
        "prepare",
        "scaler",
        "split_indices",
        "train_test_split",
        "train_val_test_split",
    ],
    "fnn.datasets": [
        "Dataset",
        "IDX",
        "IDX_SOURCES",
        "NAMES",
        "SKLEARN",
        "SYNTHETIC",
        "download_idx",
        "load",
        "load_csv",
        "load_idx_dataset",
        "load_sklearn",
        "read_idx",
        "sine",
        "spirals",
        "write_idx",
        "xor",
    ],
    "fnn.diagnostics": [
        "KEYS",
        "PROBE",
        "SATURATION",
        "append",
        "dead_fraction",
        "deltas",
        "layer_stats",
        "probe_batch",
        "record",
        "saturation",
        "summary",
        "to_csv",
        "update_ratio",
    ],
    "fnn.protocol": ["Network", "group_norms", "loss_from_cache", "norm", "output_delta", "weights"],
    "fnn.sklearn": ["MLPClassifier", "MLPRegressor"],
}
# the optimizers' state readers, in fnn.optimizers' __all__ at 1a997af
STATE_READERS = {"mu", "learning_rate", "bayesian", "adapted"}

# the namespaces that re-export implementation modules, name by name: the one module of each
# (its __all__ whole), or for fnn.optimizers the registry and the methods' own modules under fnn.optim
SHIMS = {
    "fnn.callbacks": "fnn.training.callbacks",
    "fnn.optimizers": "fnn.optim",
    "fnn.data": "fnn.data.preparation",
    "fnn.datasets": "fnn.data.datasets",
    "fnn.diagnostics": "fnn.training.diagnostics",
    "fnn.protocol": "fnn.core.protocol",
}
# fnn's public submodules (attributes of fnn after "import fnn"; fnn.sklearn after "import fnn.sklearn")
NAMESPACES = ["callbacks", "data", "datasets", "diagnostics", "optimizers", "protocol"]
# fnn's internal subpackages: attributes of fnn (imported by it), public nowhere under their own name
INTERNAL = {"check", "cli", "core", "optim", "scale", "training"}


def _path(module: str) -> pathlib.Path:
    return pathlib.Path(importlib.import_module(module).__file__)


def _public_attributes(module) -> list[str]:
    return sorted(
        n for n in dir(module) if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
    )


@pytest.mark.parametrize("module", PUBLIC)
def test_every_listed_name_resolves_and_all_is_the_list(module):
    imported = importlib.import_module(module)
    missing = [n for n in PUBLIC[module] if not hasattr(imported, n)]
    assert not missing, f"{module}: {missing} no longer there"
    assert sorted(imported.__all__) == sorted(PUBLIC[module])
    assert len(imported.__all__) == len(set(imported.__all__)), f"{module}.__all__ names a name twice"


@pytest.mark.parametrize("module", PUBLIC)
def test_nothing_public_beyond_all(module):
    imported = importlib.import_module(module)
    assert _public_attributes(imported) == sorted(imported.__all__)


def test_the_namespaces_are_reached_from_fnn_and_only_they():
    import fnn.sklearn

    for name in NAMESPACES:
        assert getattr(fnn, name) is importlib.import_module(f"fnn.{name}")
    assert fnn.sklearn is importlib.import_module("fnn.sklearn")
    modules = {n for n in dir(fnn) if not n.startswith("_") and inspect.ismodule(getattr(fnn, n))}
    assert modules - {"sklearn"} <= set(NAMESPACES) | INTERNAL, modules - set(NAMESPACES) - INTERNAL


def test_the_internal_subpackages_say_so():
    """Each implementation subpackage's docstring starts "Internal:" and names where its names are public."""
    for name in sorted(INTERNAL) + ["data.preparation", "data.datasets"]:
        first = (importlib.import_module(f"fnn.{name}").__doc__ or "").splitlines()[0]
        assert first.startswith("Internal:") and re.search(r"[Pp]ublic as .*``fnn[\w.]*``", first), (
            f"fnn.{name}: {first!r}"
        )


def test_the_names_from_fit_docstring_have_a_public_path():
    assert issubclass(fnn.Interrupted, KeyboardInterrupt)
    assert fnn.Policy("fp32").name == "fp32" and fnn.Run is not None


@pytest.mark.parametrize("module", PUBLIC)
def test_no_public_namespace_imports_star(module):
    tree = ast.parse(_path(module).read_text())
    stars = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
    ]
    assert not stars, f"{module}: import * at lines {stars}"


@pytest.mark.parametrize("module", SHIMS)
def test_each_shim_reexports_name_by_name(module):
    """``from X import A as A``, one per name of ``__all__``, from the implementation module(s), each the
    implementation's object; nothing but the docstring, the imports and ``__all__``."""
    implementation = SHIMS[module]
    # a module, not a package
    single = importlib.util.find_spec(implementation).submodule_search_locations is None
    tree = ast.parse(_path(module).read_text())
    assert ast.get_docstring(tree) and f"``{implementation}" in ast.get_docstring(tree)
    shim, imported = importlib.import_module(module), []
    for node in tree.body[1:]:
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            inside = source == implementation if single else source.startswith(f"{implementation}.")
            assert node.level == 0 and inside, ast.unparse(node)
            for alias in node.names:
                assert alias.asname == alias.name, f"{module}: {ast.unparse(node)} is not 'import A as A'"
                imported.append(alias.name)
                assert getattr(shim, alias.name) is getattr(importlib.import_module(source), alias.name)
        else:
            assert isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"], ast.unparse(
                node
            )
    assert sorted(imported) == sorted(shim.__all__)
    if single:
        assert sorted(shim.__all__) == sorted(importlib.import_module(implementation).__all__), (
            "the shim and its implementation list the same names"
        )


def test_the_optimizers_state_readers_are_gone():
    """A loop that logs a method's quantities asks the method's record (``Method.report``), not a reader."""
    assert not STATE_READERS & set(dir(fnn.optimizers))
