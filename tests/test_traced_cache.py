"""Traced programs kept on disk (``fnn.scale.traced_cache``): the same results as the traced function, a key
that changes with whatever changes the trace, damaged files and unexportable functions as misses, a bound."""

import functools
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.scale import traced_cache
from fnn.sklearn import MLPClassifier


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The compile cache on in ``tmp_path`` for one test, and no program of another test in memory."""
    monkeypatch.setattr(traced_cache, "_programs", {})
    monkeypatch.setattr(traced_cache, "_counts", {"exported": 0, "loaded": 0})
    monkeypatch.setattr(traced_cache, "_warned", [])
    fnn.enable_compile_cache(tmp_path, max_size_mb=64)
    try:
        yield tmp_path
    finally:
        fnn.disable_compile_cache()


@functools.partial(jax.jit, static_argnums=0)
def affine(scale, x, pair):
    """A small program with a static argument and a tuple in its input and output."""
    a, b = pair
    return {"y": scale * x @ a + b, "sum": jnp.sum(x)}, (a, b)


def _args(n=5, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype(dtype), (rng.normal(size=(3, 2)).astype(dtype), np.ones(2, dtype))


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_off_while_the_compile_cache_is_off():
    assert traced_cache.traced_dir() is None
    x, pair = _args()
    _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), affine(2.0, x, pair))
    assert traced_cache.counts() == {"exported": 0, "loaded": 0}


@pytest.mark.exact
def test_a_kept_program_gives_the_functions_bits_written_once_and_loaded_later(cache_dir, monkeypatch):
    x, pair = _args()
    direct = affine(2.0, x, pair)
    _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), direct)
    files = list((cache_dir / traced_cache.FOLDER).glob("*" + traced_cache.SUFFIX))
    assert len(files) == 1 and traced_cache.counts() == {"exported": 1, "loaded": 0}
    _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), direct)  # in memory: nothing read or written
    monkeypatch.setattr(traced_cache, "_programs", {})  # as a new process
    _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), direct)
    assert traced_cache.counts() == {"exported": 1, "loaded": 1}


@pytest.mark.exact
def test_an_estimator_fits_the_same_bits_with_its_programs_kept_or_not(tmp_path, monkeypatch):
    x = np.linspace(-1, 1, 90 * 4).reshape(90, 4)
    y = (np.sin(3 * x).sum(1) > 0).astype(int)

    def fit(solver):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPClassifier(
                hidden_layer_sizes=(7,), solver=solver, max_iter=40, batch_size=32, random_state=0
            ).fit(x, y)
        return model.coefs_ + model.intercepts_ + [model.predict_proba(x)]

    plain = {solver: fit(solver) for solver in ("sgd", "adam")}
    monkeypatch.setattr(traced_cache, "_programs", {})
    monkeypatch.setattr(traced_cache, "_counts", {"exported": 0, "loaded": 0})
    fnn.enable_compile_cache(tmp_path, max_size_mb=64)
    try:
        for solver in ("sgd", "adam"):
            _same(fit(solver), plain[solver])
        assert traced_cache.counts() == {"exported": 3, "loaded": 0}  # each solver's epochs, one predict
        monkeypatch.setattr(traced_cache, "_programs", {})
        _same(fit("adam"), plain["adam"])
        assert traced_cache.counts() == {"exported": 3, "loaded": 2}
    finally:
        fnn.disable_compile_cache()


def test_the_key_changes_with_what_changes_the_trace():
    x, pair = _args()
    key = traced_cache.program_key(affine, "2.0", (x, pair))
    assert key == traced_cache.program_key(affine, "2.0", (x.copy(), pair))  # values are not in it
    others = [
        traced_cache.program_key(affine, "3.0", (x, pair)),  # the static arguments
        traced_cache.program_key(affine, "2.0", _args(n=6)),  # a shape
        traced_cache.program_key(affine, "2.0", (x.astype(np.float16), pair)),  # a dtype
        traced_cache.program_key(affine, "2.0", (x, list(pair))),  # the structure
        traced_cache.program_key(affine, "2.0", (jnp.asarray(x), (pair[0], 1.0))),  # a weak type
        traced_cache.program_key(fnn.predict, "2.0", (x, pair)),  # the function
    ]
    with jax.enable_x64(True):
        others.append(traced_cache.program_key(affine, "2.0", (x, pair)))  # JAX's 64-bit mode
    assert len({key, *others}) == len(others) + 1


def test_a_damaged_file_is_exported_again_with_a_warning(cache_dir, monkeypatch):
    x, pair = _args()
    traced_cache.call(affine, (2.0,), "2.0", x, pair)
    (path,) = (cache_dir / traced_cache.FOLDER).glob("*" + traced_cache.SUFFIX)
    path.write_bytes(b"not a program")
    monkeypatch.setattr(traced_cache, "_programs", {})
    with pytest.warns(RuntimeWarning, match="could not read the traced program"):
        _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), affine(2.0, x, pair))
    assert traced_cache.counts()["exported"] == 2 and path.read_bytes() != b"not a program"


def test_a_read_only_cache_is_read_all_the_same(cache_dir, monkeypatch):
    x, pair = _args()
    traced_cache.call(affine, (2.0,), "2.0", x, pair)
    monkeypatch.setattr(traced_cache, "_programs", {})

    def refused(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(traced_cache.os, "utime", refused)  # its last use cannot be recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(traced_cache.call(affine, (2.0,), "2.0", x, pair), affine(2.0, x, pair))
    assert traced_cache.counts() == {"exported": 1, "loaded": 1}


def test_a_function_that_cannot_be_exported_runs_as_it_is(cache_dir):
    @functools.partial(jax.jit, static_argnums=0)
    def with_callback(scale, x):
        return jax.pure_callback(lambda v: np.asarray(v) * scale, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    x = np.arange(4, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="could not be exported"):
        np.testing.assert_array_equal(traced_cache.call(with_callback, (3.0,), "3.0", x), 3 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once; the fallback is remembered
        np.testing.assert_array_equal(traced_cache.call(with_callback, (3.0,), "3.0", x), 3 * x)
    assert traced_cache.counts()["exported"] == 0


def test_the_folder_keeps_the_programs_used_last_within_its_bound(tmp_path):
    for i in range(5):
        path = tmp_path / f"p{i}{traced_cache.SUFFIX}"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    (tmp_path / "other.txt").write_bytes(b"y" * 1000)  # not a program: left alone
    traced_cache.evict(str(tmp_path), max_bytes=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "p3.exported", "p4.exported"]
