"""A persistent cache of compiled programs: a run after the first skips XLA's compiler.

Compiling a training epoch takes XLA longer than training a small network
(about 0.4 s against 0.05 s for 400 epochs on iris on a 2-core CPU). JAX can
keep every compiled program on disk, keyed by the program itself, the jax and
XLA versions, the XLA flags and the device, and load it when a later process
builds the same program: the same network, optimizer, batch size and data
shapes. Loading takes milliseconds.

The cache is on by default: ``fnn.fit``, the ``fnn.sklearn`` estimators and
``fnn train`` turn it on at their first call (``use_default_cache``), unless

* ``FNN_COMPILE_CACHE=0`` is set in the environment, or
  ``fnn.disable_compile_cache()`` was called (``fnn train --no-compile-cache``);
* JAX's cache directory was already chosen (``jax_compilation_cache_dir``,
  or ``JAX_COMPILATION_CACHE_DIR``): fnn then uses that one as it is.

Where: ``$FNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnn/xla``, else
``~/.cache/fnn/xla``; or ``fnn.enable_compile_cache(path)``. Its size is
bounded: beyond ``$FNN_CACHE_MAX_MB`` (default 1024) megabytes, the programs
used least recently are removed. Small programs are cached too: JAX's own
thresholds, which skip programs that compile in under a second, would skip
exactly the ones fnn builds.

On a hit JAX still traces and lowers the function to compute the key; the
estimators' programs skip that too, kept beside the compiled ones by
``fnn.scale.traced_cache``.
"""

from __future__ import annotations

import os
import warnings

import jax
from jax.experimental.compilation_cache import compilation_cache

from fnn.core import validation

ENV = "FNN_CACHE_DIR"
SWITCH = "FNN_COMPILE_CACHE"
SIZE = "FNN_CACHE_MAX_MB"
MAX_MB = 1024
OFF = ("0", "false", "off", "no")

_declined = []  # non-empty once the cache was turned off, or could not be opened, in this process


def default_dir() -> str:
    """``$FNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fnn/xla``, else ``~/.cache/fnn/xla``."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fnn", "xla")


def size_limit_mb() -> float:
    """``$FNN_CACHE_MAX_MB``, else ``MAX_MB``;
    a ``ValueError`` naming the variable if it is no positive number."""
    text = os.environ.get(SIZE)
    if text is None:
        return MAX_MB
    try:
        return validation.check_positive_number(SIZE, float(text))
    except ValueError:
        raise ValueError(f"{SIZE} must be a positive number of megabytes, got {text!r}") from None


def enable_compile_cache(path: str | os.PathLike | None = None, max_size_mb: float | None = None) -> str:
    """Store compiled programs under ``path`` (default: ``default_dir()``) and reuse them; returns the path.

    ``max_size_mb`` bounds the directory (default ``$FNN_CACHE_MAX_MB`` or
    1024): the programs used least recently go first. Affects every later
    compilation in this process, fnn's or not.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory path, got {type(path).__name__}")
    max_size_mb = validation.check_positive_number("max_size_mb", max_size_mb, allow_none=True)
    size = int((max_size_mb if max_size_mb is not None else size_limit_mb()) * 2**20)
    path = os.path.abspath(os.fspath(path) if path is not None else default_dir())
    os.makedirs(path, exist_ok=True)
    date_unbounded_entries(path)
    if jax.config.jax_compilation_cache_dir != path or jax.config.jax_compilation_cache_max_size != size:
        compilation_cache.reset_cache()  # JAX opens its cache once per process: let it open this one
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_compilation_cache_max_size", size)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # cache small programs too
    _declined.clear()
    return path


def date_unbounded_entries(path: str) -> None:
    """Give each program stored without a size bound the last-use time that a bounded cache keeps beside it.

    A cache that JAX filled with no bound (``jax_compilation_cache_max_size``
    -1, as fnn did before it bounded the cache) has ``<key>-cache`` files and no
    ``<key>-atime``; a bounded cache reads the times of all its entries before
    it writes, and fails at the first one missing. Each missing time is the
    file's modification time, in JAX's format: nanoseconds, 8 bytes little-endian.
    """
    for name in os.listdir(path):
        if name.endswith("-cache"):
            atime = os.path.join(path, name[: -len("-cache")] + "-atime")
            if not os.path.exists(atime):
                stamp = os.stat(os.path.join(path, name)).st_mtime_ns
                with open(atime, "wb") as fh:
                    fh.write(stamp.to_bytes(8, "little"))


def disable_compile_cache() -> None:
    """Stop reading and writing the cache, and keep it off in this process (programs compiled so far stay in
    memory)."""
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", None)
    _declined.append("disabled")


def use_default_cache() -> str | None:
    """Turn the cache on at ``default_dir()``, once per process, unless it is turned off or JAX's cache
    directory was already chosen; returns the directory in use (``None``: no cache).

    A directory that cannot be made (a read-only home) is a warning, not a
    failure: the work goes on, compiling as usual.
    """
    if _declined or os.environ.get(SWITCH, "1").strip().lower() in OFF:
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    try:
        return enable_compile_cache()
    except OSError as err:
        _declined.append("unusable")
        warnings.warn(
            f"fnn: no compile cache ({err}); set {ENV} to a writable directory, or {SWITCH}=0",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
