"""What ``pip install .`` installs: the package ``fnn`` and nothing else.

The benchmarks (``benchmarks/``) and the experiments (``scripts/``) are packages of the repository,
imported from its root, and stay out of the wheel. The wheel is built the way pip builds it, from a
copy of the checkout (the build writes ``build/`` and ``*.egg-info`` beside the sources), without
build isolation so that it needs no network: with the environment's setuptools, which must then be
the build system's (``pyproject.toml``: ``setuptools>=77``, in the ``dev`` extra). About a second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a build never reads: version control, caches, build outputs, the docs site, npm's packages
NOT_COPIED = (
    ".git",
    "node_modules",
    "site",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
)


def _setuptools_major() -> int:
    try:
        return int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[list[str], Path]:
    """The wheel's file names, and the copy of the checkout it was built from."""
    if _setuptools_major() < 77:
        pytest.skip(
            "building the wheel without isolation needs setuptools>=77 (the build system's): "
            "pip install -e '.[dev]'"
        )
    tmp = tmp_path_factory.mktemp("wheel")
    source, out = tmp / "source", tmp / "dist"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = out.glob("fnn-*.whl")
    with zipfile.ZipFile(built) as zf:
        return zf.namelist(), source


def test_the_wheel_holds_fnn_and_nothing_else(wheel):
    names, _ = wheel
    package = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
    assert package and [n for n in package if not n.startswith("fnn/")] == []
    for gone in ("benchmarks/", "scripts/", "tests/", "fnn/bench/", "fnn/experiments/"):
        assert not any(n.startswith(gone) for n in names), gone


def test_the_wheel_holds_every_module_of_fnn(wheel):
    """Each ``.py`` file under ``fnn/`` in the checkout is in the wheel, and no other."""
    names, source = wheel
    modules = sorted(p.relative_to(source).as_posix() for p in (source / "fnn").rglob("*.py"))
    assert sorted(n for n in names if n.endswith(".py")) == modules
