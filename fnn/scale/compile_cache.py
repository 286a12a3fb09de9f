"""A persistent cache of compiled programs: a run after the first skips XLA's compiler.

Compiling a training epoch takes XLA longer than training a small network
(about 0.6 s against 0.2 s for 50 epochs on digits on a 2-core CPU). JAX can
keep every compiled program on disk, keyed by the program itself, the jax and
XLA versions and the device, and load it when a later process builds the same
program: the same network, optimizer, batch size and data shapes. Loading
takes milliseconds.

``fnn train`` turns the cache on (``--no-compile-cache`` turns it off); in
Python it is one call before training::

    fnn.enable_compile_cache()          # ~/.cache/fnn/xla, or $FNN_CACHE_DIR
    params, history = fnn.fit(...)

The cache is JAX's own (``jax_compilation_cache_dir``); this module only picks
the directory and lowers JAX's thresholds, which by default skip programs
that compile in under a second, exactly the ones fnn builds.
"""

from __future__ import annotations

import os

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV = "FNN_CACHE_DIR"


def default_dir() -> str:
    """``$FNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnn/xla``, else ``~/.cache/fnn/xla``."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fnn", "xla")


def enable_compile_cache(path: str | os.PathLike | None = None) -> str:
    """Store compiled programs under ``path`` (default: ``default_dir()``) and reuse them; returns the path.

    Affects every later compilation in this process, fnn's or not.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory path, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path) if path is not None else default_dir())
    os.makedirs(path, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != path:
        compilation_cache.reset_cache()  # JAX opens its cache once per process: let it open this one
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # cache small programs too
    return path


def disable_compile_cache() -> None:
    """Stop reading and writing the cache (programs compiled so far stay in memory)."""
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", None)
