"""The package's layout: wings stacked in layers, no circle of imports, the public API where it was.

Every import of fnn by fnn is read from the source with ``ast`` (those inside
functions too), and two rules hold over them:

* **No circle**: the graph of imports between fnn's modules has no cycle.
* **Layers**: a module imports only modules of its own wing or of a wing in
  a lower layer. ``core`` imports nothing of fnn outside itself; ``check``,
  ``scale`` and ``data`` import only ``core``; ``optim`` core and scale;
  ``training`` all of those; the public face (``fnn/__init__.py`` and the
  namespaces ``fnn.callbacks``, ``fnn.optimizers``, ``fnn.datasets``,
  ``fnn.diagnostics``, ``fnn.protocol``) everything below it; the faces
  (``cli`` with ``python -m fnn``, ``sklearn``) may use the public face.

The benchmarks and the experiments are outside the package, in the repository's
``benchmarks/`` and ``scripts/``, and import none of fnn's private modules (a
name with a leading underscore, such as ``fnn.sklearn._objective``) nor the
command line's output helpers (``fnn.cli.outputs``).
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import fnn

PACKAGE = pathlib.Path(fnn.__file__).parent
ROOT = pathlib.Path(__file__).resolve().parents[1]
# packages of the repository that use fnn, not installed with it
OUTSIDE = (
    ROOT / "benchmarks",
    ROOT / "scripts",
)
NOT_FOR_OUTSIDE = {"fnn.cli.outputs"}  # the command line's: what they need of it is fnn.scale.throughput's

LAYERS = {
    "core": 0,
    "check": 1,
    "scale": 1,
    "data": 1,
    "optim": 2,
    "training": 3,
    "api": 4,  # fnn/__init__.py, __main__.py and the public namespaces at the top
    "cli": 5,
    "sklearn": 5,
}
PUBLIC_NAMESPACES = ("callbacks", "optimizers", "datasets", "diagnostics", "protocol")
TOP_LEVEL = {"fnn", *(f"fnn.{n}" for n in PUBLIC_NAMESPACES)}
ENTRY = "fnn.__main__"  # python -m fnn: the command line's


def modules(root: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
    """``{dotted name: path}`` of every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: pathlib.Path, known) -> set[str]:
    """The fnn modules that module ``name`` imports, anywhere in its source."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from fnn.core import forward" names a module; "from fnn.core.mlp import MLP" not
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph(root: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def wing(name: str) -> str:
    """The wing of a module: ``fnn.core.forward`` -> ``core``; the public face at the top -> ``api``."""
    if name in TOP_LEVEL:
        return "api"
    if name == ENTRY:
        return "cli"
    return name.split(".")[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and modules importing
    themselves."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module of another wing at the same or a higher layer, as ``a -> b``."""
    bad = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            wa, wb = wing(a), wing(b)
            if wa != wb and LAYERS[wb] >= LAYERS[wa]:
                bad.append(f"{a} ({wa}) -> {b} ({wb})")
    return bad


def depth(graph: dict[str, set[str]]) -> int:
    """Modules on the longest chain of imports (the graph has no cycle)."""
    memo: dict[str, int] = {}

    def chain(v):
        if v not in memo:
            memo[v] = 1 + max((chain(w) for w in graph[v]), default=0)
        return memo[v]

    return max(chain(v) for v in graph)


GRAPH = import_graph()


def test_every_module_belongs_to_a_wing():
    assert {wing(m) for m in GRAPH} <= set(LAYERS)
    strays = sorted(m for m in GRAPH if m.count(".") == 1 and m not in TOP_LEVEL and wing(m) not in LAYERS)
    assert not strays
    top = sorted(m for m in GRAPH if m.count(".") == 1 and m.split(".")[1] not in LAYERS)
    assert top == sorted(TOP_LEVEL - {"fnn"} | {ENTRY}), (
        "a module left at the top of the package beyond the public face"
    )


def test_no_circle_of_imports():
    assert cycles(GRAPH) == []


def test_no_wing_imports_a_wing_above_it():
    assert upward_imports(GRAPH) == []


def test_the_core_imports_nothing_of_fnn_outside_the_core():
    outside = {b for a, bs in GRAPH.items() if wing(a) == "core" for b in bs if wing(b) != "core"}
    assert outside == set()


def test_the_graph_is_read_as_the_interpreter_imports():
    """The reader finds the edges that Python follows: top-level, lazy and relative imports."""
    assert "fnn.core.forward" in GRAPH["fnn.core.graph"]
    assert {"fnn.core.mlp", "fnn.check.autodiff", "fnn.training.loop"} <= GRAPH["fnn"]
    assert "fnn.training.callbacks" in GRAPH["fnn.callbacks"]
    assert 3 < depth(GRAPH) < len(GRAPH)


def test_the_checks_find_a_circle_and_an_upward_import(tmp_path):
    """The rules above can fail: a package with both faults is caught."""
    pkg = tmp_path / "fnn"
    for sub in ("core", "training"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from fnn.core import b\n")
    (pkg / "core" / "b.py").write_text(
        "def f():\n    from . import a\n    from fnn.training.loop import fit\n"
    )
    (pkg / "training" / "loop.py").write_text("import numpy\n")
    graph = import_graph(pkg)
    assert graph["fnn.core.b"] == {"fnn.core.a", "fnn.training.loop"}
    assert cycles(graph) == [["fnn.core.a", "fnn.core.b"]]
    assert upward_imports(graph) == ["fnn.core.b (core) -> fnn.training.loop (training)"]


PUBLIC_ATTRIBUTES = [
    (
        "fnn.callbacks",
        [
            "Callback",
            "Checkpoint",
            "CSVLogger",
            "Diagnostics",
            "EarlyStopping",
            "Lambda",
            "LevenbergMarquardtStop",
            "ProgressBar",
            "StopAt",
            "TerminateOnNaN",
        ],
    ),
    ("fnn.optimizers", ["NAMES", "Objective", "get", "spec", "levenberg_marquardt"]),
    ("fnn.data", ["prepare", "one_hot", "train_test_split", "StandardScaler", "Split"]),
    ("fnn.datasets", ["load", "NAMES", "Dataset", "load_csv"]),
    ("fnn.diagnostics", ["layer_stats", "update_ratio", "KEYS"]),
    ("fnn.protocol", ["Network", "output_delta", "loss_from_cache"]),
    ("fnn.sklearn", ["MLPClassifier", "MLPRegressor"]),
]


@pytest.mark.parametrize("module, names", PUBLIC_ATTRIBUTES, ids=[m for m, _ in PUBLIC_ATTRIBUTES])
def test_the_public_modules_are_where_users_reach_them(module, names):
    imported = importlib.import_module(module)  # "from fnn.callbacks import EarlyStopping" and ...
    reached = fnn
    for part in module.split(".")[1:]:  # ... "fnn.callbacks.EarlyStopping" after "import fnn"
        reached = getattr(reached, part)
    assert reached is imported
    for n in names:
        assert getattr(imported, n) is not None, f"{module}.{n}"


def test_the_public_namespaces_are_their_implementations():
    from fnn.core import protocol
    from fnn.optim import registry
    from fnn.training import callbacks

    assert fnn.callbacks.EarlyStopping is callbacks.EarlyStopping and fnn.protocol.Network is protocol.Network
    assert fnn.optimizers.get is registry.get and set(fnn.optimizers.__all__) <= set(dir(fnn.optimizers))


def test_every_name_of_fnn_all_is_there():
    assert sorted(fnn.__all__) == sorted(set(fnn.__all__))
    for name in fnn.__all__:
        assert getattr(fnn, name) is not None


def private_jax_imports(root: pathlib.Path = PACKAGE) -> list[str]:
    """Each import of ``jax._src`` (JAX's private modules, which change between releases), as
    ``module: name``."""
    bad = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:  # "from jax import _src" too
                names = (
                    [f"{node.module}.{a.name}" for a in node.names] if node.module == "jax" else [node.module]
                )
            else:
                continue
            bad += [f"{name}: {n}" for n in names if n == "jax._src" or n.startswith("jax._src.")]
    return bad


def test_no_module_imports_private_jax(tmp_path):
    assert private_jax_imports() == []
    (tmp_path / "fnn").mkdir()
    (tmp_path / "fnn" / "a.py").write_text(
        "import jax._src.core\nfrom jax import _src, numpy\n"
        "def f():\n    from jax._src.array import ArrayImpl\n"
    )
    found = private_jax_imports(tmp_path / "fnn")
    assert sorted(found) == ["fnn.a: jax._src", "fnn.a: jax._src.array", "fnn.a: jax._src.core"]


def private(name: str) -> bool:
    """A dotted name with a part of a leading underscore (``fnn.sklearn._objective``; not
    ``fnn.__main__``)."""
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def outside_imports(folders=OUTSIDE, known=None) -> list[str]:
    """Each import by a file of ``folders`` of a private module or name of fnn, or of ``NOT_FOR_OUTSIDE``, as
    ``folder/file.py: fnn.module`` (``fnn.module._name`` for a private name imported from a module)."""
    known = modules() if known is None else known
    bad = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [
                        f"{node.module}.{a.name}"
                        if f"{node.module}.{a.name}" in known or private(a.name)
                        else node.module
                        for a in node.names
                    ]
                else:
                    continue
                where = path.relative_to(folder.parent).as_posix()
                bad += [
                    f"{where}: {n}"
                    for n in names
                    if n.split(".")[0] == "fnn" and (private(n) or n in NOT_FOR_OUTSIDE)
                ]
    return bad


def test_benchmarks_and_experiments_import_only_public_modules_of_fnn(tmp_path):
    assert all(folder.is_dir() for folder in OUTSIDE)
    assert outside_imports() == []
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "a.py").write_text(
        "import fnn.sklearn._objective\nfrom fnn import optimizers\nfrom fnn.core import dispatch\n"
        "from fnn.cli import outputs\nfrom benchmarks import _mine\n"
        "def f():\n    from fnn.sklearn import _objective, MLPClassifier\n"
        "    from fnn.core.dispatch import _checked\n"
        "    from fnn.cli.outputs import speed_summary\n"
    )
    found = outside_imports([tmp_path / "benchmarks"])
    assert sorted(found) == sorted(
        f"benchmarks/a.py: {n}"
        for n in (
            "fnn.sklearn._objective",
            "fnn.cli.outputs",
            "fnn.sklearn._objective",
            "fnn.core.dispatch._checked",
            "fnn.cli.outputs",
        )
    )
