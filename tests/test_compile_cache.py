"""The persistent compile cache: ``fnn train`` fills it (unless told not to) and a later process reads it."""

import os
import subprocess
import sys

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
sys.exit(cli.main(["train", "--dataset", "xor", "--sizes", "2,7,1", "--epochs", "3", "--quiet", "--out", sys.argv[1]]
                  + sys.argv[2:]))
"""


def _train(tmp_path, cache, *extra):
    env = dict(os.environ, FNN_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "run"), *extra], capture_output=True, text=True,
                       env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_a_second_run_loads_the_epoch_it_compiled_first(tmp_path):
    cache = tmp_path / "cache"
    first = _train(tmp_path, cache)
    assert "jit_epoch_fn" in first and "Writing jit_epoch_fn to persistent compilation cache" in first
    assert any(cache.iterdir())
    second = _train(tmp_path, cache)
    assert "Persistent compilation cache hit for 'jit_epoch_fn'" in second
    assert "Writing jit_epoch_fn" not in second


def test_no_compile_cache_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    _train(tmp_path, cache, "--no-compile-cache")
    assert not cache.exists() or not any(cache.iterdir())


def test_an_unusable_cache_directory_is_a_note_not_a_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = dict(os.environ, FNN_CACHE_DIR=str(blocker / "xla"), JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-m", "fnn", "train", "--dataset", "xor", "--epochs", "2", "--quiet",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=240)
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
        fnn.fit(net, fnn.init(jax.random.key(0), net), (x, x[:, :2]), epochs=2, batch_size=11, key=jax.random.key(1))
        assert any((tmp_path / "mine").iterdir())
    finally:
        compile_cache.disable_compile_cache()
    assert jax.config.jax_compilation_cache_dir is None
    with pytest.raises(TypeError, match="path must be a directory path"):
        fnn.enable_compile_cache(3)
