"""The persistent compile cache: ``fnn train`` fills it (unless told not to) and a later process reads it."""

import os
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

import fnn
from fnn.scale import compile_cache

# A run of an odd configuration (so that no earlier test compiled it in this
# process), timed by JAX's own log of what it compiled and what it loaded.
RUN = """
import logging, sys
import jax
logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stdout)
for name in ("jax._src.compiler", "jax._src.compilation_cache"):
    logging.getLogger(name).setLevel(logging.DEBUG)
from fnn import cli
sys.exit(cli.main(["train", "--dataset", "xor", "--sizes", "2,7,1", "--epochs", "3", "--quiet",
                   "--out", sys.argv[1]] + sys.argv[2:]))
"""


def _environment(**values) -> dict:
    """This process's environment with the cache at its default (the suite turns it off), and ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in (compile_cache.SWITCH, compile_cache.ENV)}
    return dict(env, JAX_PLATFORMS="cpu", **values)


def _train(tmp_path, cache, *extra):
    env = _environment(FNN_CACHE_DIR=str(cache))
    r = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "run"), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_a_second_run_loads_the_epoch_it_compiled_first(tmp_path):
    cache = tmp_path / "cache"
    first = _train(tmp_path, cache)
    assert "jit_chunk" in first and "Writing jit_chunk to persistent compilation cache" in first
    assert any(cache.iterdir())
    second = _train(tmp_path, cache)
    assert "Persistent compilation cache hit for 'jit_chunk'" in second
    assert "Writing jit_chunk" not in second


def test_no_compile_cache_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    _train(tmp_path, cache, "--no-compile-cache")
    # (the machine's measured matmul peak is kept beside it, in fnn-peak/: fnn.scale.throughput)
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name != "fnn-peak"]


def test_an_unusable_cache_directory_is_a_note_not_a_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = _environment(FNN_CACHE_DIR=str(blocker / "xla"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fnn",
            "train",
            "--dataset",
            "xor",
            "--epochs",
            "2",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fnn train: no compile cache" in r.stderr and os.path.exists(tmp_path / "run" / "metrics.json")


def test_enable_in_python_fills_the_given_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_dir() == str(tmp_path / "xdg" / "fnn" / "xla")
    try:
        path = fnn.enable_compile_cache(tmp_path / "mine")
        assert path == str(tmp_path / "mine") and jax.config.jax_compilation_cache_dir == path
        net = fnn.MLP((3, 5, 2), activation="tanh", output="identity", loss="mse")  # not compiled elsewhere
        x = np.linspace(-1, 1, 33 * 3, dtype=np.float32).reshape(33, 3)
        fnn.fit(
            net,
            fnn.init(jax.random.key(0), net),
            (x, x[:, :2]),
            epochs=2,
            batch_size=11,
            key=jax.random.key(1),
        )
        assert any((tmp_path / "mine").iterdir())
    finally:
        fnn.disable_compile_cache()
    assert jax.config.jax_compilation_cache_dir is None
    with pytest.raises(TypeError, match="path must be a directory path"):
        fnn.enable_compile_cache(3)


# A script as a user writes it: a scikit-learn estimator and fnn.fit, nothing said about caches.
SCRIPT = """
import logging, sys
import jax
logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stdout)
for name in ("jax._src.compiler", "jax._src.compilation_cache"):
    logging.getLogger(name).setLevel(logging.DEBUG)
import numpy as np
import fnn
from fnn.sklearn import MLPClassifier
x = np.linspace(-1, 1, 60 * 3).reshape(60, 3)
y = (x.sum(1) > 0).astype(int)
MLPClassifier(hidden_layer_sizes=(9,), max_iter=5, random_state=0).fit(x, y).predict(x)
net = fnn.MLP((3, 9, 2), activation="tanh", output="identity", loss="mse")
fnn.fit(net, fnn.init(jax.random.key(0), net), (x.astype("float32"), x[:, :2].astype("float32")), epochs=2,
        batch_size=20, key=jax.random.key(1))
print("cache in use:", jax.config.jax_compilation_cache_dir)
from fnn.scale import traced_cache
print("traced programs:", traced_cache.counts())
"""


def _script(**env):
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=_environment(**env), timeout=240
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def test_a_scripts_second_run_compiles_nothing(tmp_path):
    first = _script(XDG_CACHE_HOME=str(tmp_path))
    default = tmp_path / "fnn" / "xla"
    assert f"cache in use: {default}" in first
    assert "Writing jit_call to persistent compilation cache" in first  # the estimator's exported programs
    assert "Writing jit_chunk to persistent compilation cache" in first
    assert "traced programs: {'exported': 2, 'loaded': 0}" in first  # its epochs and its predictions
    assert len(list((default / "fnn-traced").glob("*.exported"))) == 2
    second = _script(XDG_CACHE_HOME=str(tmp_path))
    assert "Persistent compilation cache hit for 'jit_call'" in second
    assert "traced programs: {'exported': 0, 'loaded': 2}" in second  # neither traced nor lowered again
    assert "PERSISTENT COMPILATION CACHE MISS" not in second and "Writing" not in second


@pytest.mark.slow
def test_the_cache_is_off_when_asked_and_where_jax_was_told(tmp_path):
    off = _script(XDG_CACHE_HOME=str(tmp_path), FNN_COMPILE_CACHE="0")
    assert "cache in use: None" in off and not (tmp_path / "fnn").exists()
    mine = tmp_path / "jax-own"
    own = _script(XDG_CACHE_HOME=str(tmp_path), JAX_COMPILATION_CACHE_DIR=str(mine))
    assert f"cache in use: {mine}" in own and not (tmp_path / "fnn").exists()


def test_use_default_turns_it_on_once_and_disable_keeps_it_off(tmp_path, monkeypatch):
    monkeypatch.delenv(compile_cache.SWITCH, raising=False)
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "here"))
    monkeypatch.setenv(compile_cache.SIZE, "64")
    monkeypatch.setattr(compile_cache, "_declined", [])
    try:
        assert compile_cache.use_default_cache() == str(tmp_path / "here")
        assert jax.config.jax_compilation_cache_max_size == 64 * 2**20
        assert compile_cache.use_default_cache() == str(tmp_path / "here")
    finally:
        fnn.disable_compile_cache()
    assert compile_cache.use_default_cache() is None and jax.config.jax_compilation_cache_dir is None


@pytest.mark.parametrize("size", ["0", "-3", "lots"])
def test_a_bad_size_limit_is_an_error_naming_the_variable(monkeypatch, size):
    monkeypatch.setenv(compile_cache.SIZE, size)
    with pytest.raises(ValueError, match="FNN_CACHE_MAX_MB must be a positive number"):
        fnn.enable_compile_cache("/tmp/never-made")
    with pytest.raises(ValueError, match="max_size_mb must be a positive number"):
        fnn.enable_compile_cache("/tmp/never-made", max_size_mb=0)


def test_programs_stored_without_a_bound_are_dated_for_the_bounded_cache(tmp_path):
    """A bounded cache reads every entry's last-use time before it writes: entries an unbounded cache left
    without one get their file's time, and writing works again (JAX warns and saves nothing otherwise)."""
    (tmp_path / "old-key-cache").write_bytes(b"program")
    os.utime(tmp_path / "old-key-cache", ns=(0, 123_456_789))
    compile_cache.date_unbounded_entries(str(tmp_path))
    assert int.from_bytes((tmp_path / "old-key-atime").read_bytes(), "little") == 123_456_789
    (tmp_path / "other-key-cache").write_bytes(b"program")  # dated by enable_compile_cache
    try:
        fnn.enable_compile_cache(tmp_path, max_size_mb=64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            jax.jit(lambda a: a * 1.2345 - 0.678)(np.ones(7, np.float32)).block_until_ready()
    finally:
        fnn.disable_compile_cache()
    assert len(list(tmp_path.glob("*-cache"))) == 3 and len(list(tmp_path.glob("*-atime"))) == 3
