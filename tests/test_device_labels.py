"""Integer labels outside ``[0, n_out)`` given as device arrays: never a plausible result.

The public functions do not read a device array's values on their per-call
path (that would wait for the work producing it). Such a label's one-hot row
is NaN inside the compiled program instead, and the result NaN throughout
(``fnn.core.validation.guard``): the loss and every gradient, where
``jax.nn.one_hot``'s row of zeros gave a loss of ``-0.0`` and a finite
gradient. Host labels keep their ``ValueError``; ``fnn.check_inputs`` and
``fnn.fit`` read device values and raise it too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn

NET = fnn.MLP((4, 5, 3), activation="relu", output="softmax", loss="cross_entropy")
GRAPH = fnn.Graph(
    n_in=4,
    nodes=(fnn.Dense("h", 5, "tanh"), fnn.Dense("out", 3, "softmax", inputs=("h", "x"))),
    loss="cross_entropy",
)
X = jax.random.normal(jax.random.key(1), (8, 4))
BAD = [3, -1, 1000, -7]  # n_out, negative, far out


def _labels(bad):
    """Seven good labels and one bad, as a device array."""
    return jnp.asarray([0, 1, 2, 0, 1, 2, bad, 0], jnp.int32)


def _all_nan(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(bool(jnp.isnan(leaf).all()) for leaf in leaves)


def _manual_vjp(net, params, x, y):
    return jax.value_and_grad(fnn.loss_with_manual_vjp, argnums=1)(net, params, x, y)


def _grad_of_loss(net, params, x, y):
    return jax.value_and_grad(fnn.loss, argnums=1)(net, params, x, y)


def _loss(net, params, x, y):
    return fnn.loss(net, params, x, y), None


@pytest.mark.parametrize("net", [NET, GRAPH], ids=["mlp", "graph"])
@pytest.mark.parametrize(
    "fn",
    [fnn.backprop, fnn.autodiff, _manual_vjp, _grad_of_loss, _loss],
    ids=["backprop", "autodiff", "loss_with_manual_vjp", "grad_of_loss", "loss"],
)
@pytest.mark.parametrize("bad", BAD)
def test_a_device_label_out_of_range_makes_the_loss_and_every_gradient_nan(net, fn, bad):
    """NET's relu layer has units dead on the bad example, which a NaN row alone would not reach."""
    params = fnn.init(jax.random.key(0), net)
    good_loss, good_grads = fn(net, params, X, _labels(1))  # the same program with labels in range
    assert np.isfinite(float(good_loss))
    assert good_grads is None or not any(
        bool(jnp.isnan(g).any()) for g in jax.tree_util.tree_leaves(good_grads)
    )
    loss, grads = fn(net, params, X, _labels(bad))
    assert np.isnan(float(loss))
    assert grads is None or _all_nan(grads)


@pytest.mark.parametrize("bad", [3, -1])
def test_under_the_users_jit_and_vmap_too(bad):
    params = fnn.init(jax.random.key(0), NET)
    loss, grads = jax.jit(fnn.backprop, static_argnums=0)(NET, params, X, _labels(bad))
    assert np.isnan(float(loss)) and _all_nan(grads)
    per_example = jax.vmap(jax.grad(fnn.loss_with_manual_vjp, argnums=1), in_axes=(None, None, 0, 0))
    grads = per_example(NET, params, X[:, None], _labels(bad)[:, None])
    w = np.asarray(grads[0]["W"])  # (example, n_in, n_out): only the bad example's gradient is NaN
    assert np.isnan(w[6]).all() and np.isfinite(np.delete(w, 6, axis=0)).all()


@pytest.mark.parametrize("bad", [3, -1])
def test_host_labels_and_fit_and_check_inputs_raise(bad):
    params = fnn.init(jax.random.key(0), NET)
    message = r"labels y must lie in \[0, 2\]"
    with pytest.raises(ValueError, match=message):
        fnn.backprop(NET, params, np.asarray(X), np.asarray(_labels(bad)))
    with pytest.raises(ValueError, match=message):
        fnn.check_inputs(NET, params, X, _labels(bad))
    # fit reads its device data's values once, before any epoch
    with pytest.raises(ValueError, match=message):
        fnn.fit(NET, params, (X, _labels(bad)), epochs=1, key=jax.random.key(0))
