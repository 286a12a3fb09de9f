"""Traced programs kept on disk beside the compiled ones: a run after the first skips tracing and lowering.

On a hit of the compile cache (``fnn.scale.compile_cache``) JAX loads the
compiled program, but only after it has traced the Python function and
lowered it to StableHLO, since the cache's key is computed from that program.
For a small network's chunk of epochs these take 0.15 s of the 0.2 s a
loaded program costs, and a script pays them for every network and data
shape it fits.

``call(fun, static, static_key, *args)`` is ``fun(*static, *args)`` for a
function jitted with its first ``len(static)`` arguments static. The first
time a process meets a key, it loads the program that ``jax.export`` wrote
for that key (StableHLO and its input and output structure, serialised
without pickle), or exports it and writes it. It then calls the program
compiled ahead of time by ``jax.jit``, whose compile is the compile cache's
hit. The key holds what the trace depends on:

* ``fun``'s module and name, and ``static_key``: a text that names the static
  arguments completely (a network's ``repr``);
* the structure, shapes, dtypes and weak types of ``args``;
* the versions of jax, jaxlib and optax, a digest of fnn's source, the
  platform, and JAX's settings that change a trace (64-bit mode, the default
  matmul precision, the dtype promotion rules).

Kept in ``fnn-traced`` inside the compile cache's directory, only while that
cache is on, bounded to a sixteenth of its size (the least recently used go
first). A program that cannot be exported, written or read is a miss, never a
failure: the call then runs ``fun`` itself.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata

import jax
import numpy as np

from fnn.scale import compile_cache

FOLDER = "fnn-traced"
SUFFIX = ".exported"
SHARE_OF_CACHE = 1 / 16  # of the compile cache's bound

_programs: dict[str, Callable] = {}  # key -> its compiled program (or the function itself), in this process
_counts = {"exported": 0, "loaded": 0}
_warned = []


def call(fun, static: tuple, static_key: str, *args):
    """``fun(*static, *args)``, the traced program kept on disk under a key that holds ``static_key``."""
    folder = traced_dir()
    if folder is None:
        return fun(*static, *args)
    key = program_key(fun, static_key, args)
    program = _programs.get(key)
    if program is None:  # a program that cannot be kept runs the function itself, traced in memory as usual
        program = _programs[key] = _load_or_export(folder, key, fun, static, args) or functools.partial(
            fun, *static
        )
    return program(*args)


def counts() -> dict[str, int]:
    """How many programs this process exported (and wrote) and loaded from disk."""
    return dict(_counts)


def traced_dir() -> str | None:
    """``fnn-traced`` in the compile cache's directory; ``None`` while that cache is off or not local, or
    where this JAX cannot serialise an exported program (``flatbuffers`` missing)."""
    root = jax.config.jax_compilation_cache_dir
    if not root or "://" in str(root) or not can_serialise():
        return None
    return os.path.join(root, FOLDER)


@functools.cache
def can_serialise() -> bool:
    """Whether ``jax.export`` here serialises programs and their NamedTuple inputs."""
    return importlib.util.find_spec("flatbuffers") is not None and hasattr(
        jax.export, "register_namedtuple_serialization"
    )


def register_namedtuples(*classes) -> None:
    """Let ``jax.export`` serialise these NamedTuple classes in a program's inputs and outputs (an optimizer's
    state), each under its module and name; nothing where it cannot serialise, or a class is registered."""
    for cls in classes if can_serialise() else ():
        with contextlib.suppress(ValueError):  # registered already (by its library, say)
            jax.export.register_namedtuple_serialization(
                cls, serialized_name=f"{cls.__module__}.{cls.__name__}"
            )


def program_key(fun, static_key: str, args: tuple) -> str:
    """The key of ``fun``'s program at ``args``: a digest of all that its trace depends on."""
    leaves, tree = jax.tree.flatten(args)
    # as jax.typeof, quicker for arrays
    avals = [
        (np.shape(x), str(x.dtype), bool(getattr(x, "weak_type", False)))
        if hasattr(x, "dtype")
        else str(jax.typeof(x))
        for x in leaves
    ]
    settings = (
        jax.config.jax_enable_x64,
        str(jax.config.jax_default_matmul_precision),
        jax.config.jax_numpy_dtype_promotion,
    )
    text = repr((fun.__module__, fun.__qualname__, static_key, str(tree), avals, settings, environment()))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def environment() -> tuple:
    """What fixes a trace in this installation: the versions of the libraries traced, fnn's source, the
    platform."""
    versions = tuple(_version(name) for name in ("jax", "jaxlib", "optax"))
    return versions, source_digest(), jax.default_backend()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def source_digest() -> str:
    """A digest of every Python file of the ``fnn`` package, by path and content."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


def _load_or_export(folder: str, key: str, fun, static: tuple, args: tuple):
    """The compiled program of ``key``: read from ``folder``, or exported and written there; ``None`` when
    neither can be done."""
    path = os.path.join(folder, key + SUFFIX)
    exported = _read(path)
    if exported is not None:
        _counts["loaded"] += 1
    else:
        exported = _export_and_write(path, fun, static, args)
        if exported is None:
            return None
    return compiled(exported, args)


def _read(path: str):
    """The exported program stored at ``path``; ``None`` when there is none, or it cannot be read."""
    try:
        with open(path, "rb") as fh:
            exported = jax.export.deserialize(bytearray(fh.read()))
    except FileNotFoundError:
        return None
    except Exception as err:
        _warn(f"could not read the traced program {path} ({err}); tracing it again")
        return None
    with contextlib.suppress(OSError):  # a read-only cache is read all the same
        os.utime(path)  # its last use, for the bound
    return exported


def _export_and_write(path: str, fun, static: tuple, args: tuple):
    """``fun``'s program at ``args``, exported and written to ``path`` (a warning where it cannot be
    written); ``None`` where it cannot be exported."""
    try:
        exported = jax.export.export(fun)(*static, *args)
        data = exported.serialize()
    except Exception as err:
        _warn(
            f"{fun.__qualname__} could not be exported ({type(err).__name__}: {err}); it is traced every run"
        )
        return None
    folder = os.path.dirname(path)
    try:
        write_atomically(path, data)
        evict(folder, compile_cache.size_limit_mb() * SHARE_OF_CACHE * 2**20)
        _counts["exported"] += 1
    except OSError as err:
        _warn(f"could not write the traced program to {folder} ({err})")
    return exported


def compiled(exported, args: tuple):
    """The exported program compiled for ``args`` (XLA's compile is the compile cache's hit once stored).

    Compiled once, ahead of time: later calls whose arrays are committed to
    the device where the first call's were not (the params a call returned)
    run the same executable, where ``jax.jit`` would lower and compile again.
    """
    return jax.jit(exported.call).lower(*args).compile()


def write_atomically(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file in its folder: a reader sees all of it or nothing."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def evict(folder: str, max_bytes: float) -> None:
    """Remove the programs used least recently until the folder holds at most ``max_bytes``."""
    entries = []
    for entry in os.scandir(folder):
        if entry.name.endswith(SUFFIX):
            stat = entry.stat()
            entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        try:
            os.unlink(path)
        except FileNotFoundError:  # another process removed it
            pass
        total -= size


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.append(message)
        warnings.warn(f"fnn: {message}", RuntimeWarning, stacklevel=3)
