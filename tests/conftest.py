"""The suite's settings: XLA's quick compile, no compile cache on disk, compiled programs freed.

**Quick compile.** The suite compiles thousands of small programs once each,
and compiling dominates it. XLA compiles them here without its backend
optimizations and with its older, quicker-to-compile loop emitters
(``helpers.QUICK_COMPILE``, given as ``XLA_FLAGS``): about 2.5x faster, for
the same math. ``FNN_TEST_XLA_DEFAULTS=1`` keeps XLA's defaults, the code users
run; ``.ci/run`` runs the tests of exact bits that way, on this machine's
instruction set and on AVX2's.
"""

import os
import types

import pytest
from helpers import QUICK_COMPILE

QUICK_XLA_FLAGS = tuple(f"--{name}={str(value).lower()}" for name, value in QUICK_COMPILE.items())

if os.environ.get("FNN_TEST_XLA_DEFAULTS") != "1":  # before any backend starts, and inherited by the workers
    _flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(_flags + [f for f in QUICK_XLA_FLAGS if f not in _flags])


@pytest.fixture(autouse=True, scope="session")
def _compile_cache_in_tmp(tmp_path_factory):
    """Fits keep compiled programs on disk by default: not in the tests, which compile thousands of programs
    once each (the tests of the cache turn it on in processes of their own), and never in ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FNN_CACHE_DIR", str(tmp_path_factory.mktemp("xla-cache")))
    mp.setenv("FNN_COMPILE_CACHE", "0")
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _no_compile_cache_left_on():
    """``fnn train`` turns JAX's persistent compilation cache on for its process; a test that runs it in
    the test process must not leave it on for the tests after it in the same worker (XLA then also
    serialises their programs, and it crashes on programs compiled with ``helpers.QUICK_COMPILE``)."""
    yield
    import jax

    if jax.config.jax_compilation_cache_dir is not None:
        import fnn

        fnn.disable_compile_cache()


@pytest.fixture
def fake_peak(tmp_path, monkeypatch):
    """The measured peak of ``fnn.scale.throughput`` (CPUs, unknown devices), faked at ``fake_peak.tflops``
    TFLOP/s, so that no test depends on this machine's speed: each measurement is counted in
    ``fake_peak.calls``; the peak's cache file in ``tmp_path/cache``, nothing kept from earlier tests."""
    from fnn.scale import throughput

    fake = types.SimpleNamespace(tflops=1000.0, calls=[])

    def measure(device, dtype_name, n):
        fake.calls.append((device.platform, dtype_name, n))
        return fake.tflops

    monkeypatch.setenv("FNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(throughput, "measure_peak", measure)
    monkeypatch.setattr(throughput, "_memo", {})
    fake.path = throughput.peak_cache_path()
    fake.forget = lambda: throughput._memo.clear()  # a new process: only the file remembers
    return fake


_MAPS = "/proc/self/maps"
_MAX_MAPS = 30_000  # Linux's default vm.max_map_count is 65,530


@pytest.fixture(autouse=True, scope="module")
def _compiled_programs_freed():
    """Free the compiled programs after a module when the worker holds many.

    Each program XLA compiles for the CPU maps its code into the process; a
    worker that runs hundreds of test modules keeps thousands of programs, and
    past ``vm.max_map_count`` memory mappings (65,530 by default) the next
    compilation crashes the worker. ``jax.clear_caches()`` drops JAX's
    references to them (later tests recompile what they need)."""
    yield
    try:
        with open(_MAPS) as f:
            mappings = sum(1 for _ in f)
    except OSError:  # not Linux: no limit known
        return
    if mappings > _MAX_MAPS:
        import jax

        jax.clear_caches()
