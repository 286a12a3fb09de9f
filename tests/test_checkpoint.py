"""Checkpoints: atomic, pickle-free, structure-checked round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn.training import checkpoint


def test_round_trip_without_pickle(tmp_path):
    net = fnn.MLP((3, 4, 2))
    params = fnn.init(jax.random.key(0), net)
    tx = optax.adam(1e-3)
    state = tx.init(params)
    key = jax.random.key(42)
    path = tmp_path / "c.npz"
    checkpoint.save(
        path, trees={"params": params, "opt_state": state}, key=key, meta={"epoch": 7, "x": [1, 2]}
    )
    with np.load(path, allow_pickle=False) as z:  # readable with pickle disabled
        assert "__meta__" in z.files
    c = checkpoint.load(path)
    assert c.meta == {"epoch": 7, "x": [1, 2]}
    np.testing.assert_array_equal(jax.random.key_data(c.key), jax.random.key_data(key))
    p2 = checkpoint.restore_tree(c, "params", params)
    s2 = checkpoint.restore_tree(c, "opt_state", state)
    for a, b in zip(jax.tree_util.tree_leaves((params, state)), jax.tree_util.tree_leaves((p2, s2))):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind


def test_structure_mismatch_and_bad_files(tmp_path):
    net = fnn.MLP((3, 4, 2))
    params = fnn.init(jax.random.key(0), net)
    path = tmp_path / "c.npz"
    checkpoint.save(path, trees={"params": params})
    other = fnn.init(jax.random.key(0), fnn.MLP((3, 5, 2)))
    with pytest.raises(ValueError, match="expects"):
        checkpoint.restore_tree(checkpoint.load(path), "params", other)
    with pytest.raises(ValueError, match="does not match"):
        checkpoint.restore_tree(checkpoint.load(path), "params", params[:1])
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        checkpoint.load(tmp_path / "junk.npz")
    with pytest.raises(OSError, match="no checkpoint"):
        checkpoint.load(tmp_path / "none.npz")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save(path, trees={"a": {"x": jnp.ones(3)}}, meta={"epoch": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, trees={"a": {"x": jnp.zeros(3)}}, meta={"epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load(path).meta == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
