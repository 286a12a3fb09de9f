"""The definitions themselves: activations, losses, init, the single-unit example."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import PAIRS, worst_rel_error

import fnn
from fnn.check.analytical import SINGLE_UNIT
from fnn.core import activations

Z = np.linspace(-5.3, 4.7, 41)
ERF = np.vectorize(math.erf)

EXPECTED = {
    "identity": Z,
    "sigmoid": 1 / (1 + np.exp(-Z)),
    "tanh": np.tanh(Z),
    "relu": np.maximum(Z, 0),
    "leaky_relu": np.where(Z > 0, Z, 0.01 * Z),
    "elu": np.where(Z > 0, Z, np.exp(Z) - 1),
    "softplus": np.log1p(np.exp(Z)),
    "gelu": Z * 0.5 * (1 + ERF(Z / np.sqrt(2))),
}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_activation_values_match_their_definition(name, x64):
    got = activations.get(name).fn(jnp.asarray(Z))
    np.testing.assert_allclose(got, EXPECTED[name], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hand_written_derivative_matches_jax_grad(name, x64):
    act = activations.get(name)
    z = jnp.asarray(Z)
    expected = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(act.derivative(z, act.fn(z)), expected, rtol=1e-13, atol=1e-15)


def test_softmax_vjp_is_the_jacobian_transpose_product(x64):
    z = jax.random.normal(jax.random.key(0), (3, 5), jnp.float64)
    g = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
    act = activations.get("softmax")
    a = act.fn(z)
    jac = jax.vmap(jax.jacobian(act.fn))(z)  # (3, 5, 5): J[n, i, j] = da_i / dz_j
    np.testing.assert_allclose(act.vjp(z, a, g), jnp.einsum("ni,nij->nj", g, jac), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-15)


def _per_example_reference(loss, yhat, y):
    r = yhat - y
    return {
        "mse": lambda: 0.5 * (r**2).sum(1),
        "mae": lambda: np.abs(r).sum(1),
        "huber": lambda: np.where(np.abs(r) <= 1, 0.5 * r**2, np.abs(r) - 0.5).sum(1),
        "bce": lambda: -(y * np.log(yhat) + (1 - y) * np.log(1 - yhat)).sum(1),
        "cross_entropy": lambda: -(y * np.log(yhat)).sum(1),
        "poisson": lambda: (y * np.log(y / yhat) - y + yhat).sum(1),
    }[loss]()


@pytest.mark.parametrize("output,loss", PAIRS, ids=str)
def test_loss_is_the_documented_batch_mean(output, loss, x64):
    net = fnn.MLP((3, 4, 3), "tanh", output, loss)
    params = fnn.init(jax.random.key(1), net, dtype=jnp.float64)
    x = np.asarray(jax.random.normal(jax.random.key(2), (6, 3), jnp.float64))
    y = np.random.default_rng(0).uniform(0.05, 0.95, (6, 3)) * (2.5 if loss in ("mse", "mae", "huber") else 1)
    if loss == "cross_entropy":
        y = y / y.sum(1, keepdims=True)
    yhat = np.asarray(fnn.predict(net, params, x))
    expected = _per_example_reference(loss, yhat, y).mean()
    assert float(fnn.loss(net, params, x, y)) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_accepts_labels_or_one_hot(x64):
    net = fnn.MLP((3, 5, 4), "relu", "softmax", "cross_entropy")
    params = fnn.init(jax.random.key(0), net, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (7, 3), jnp.float64)
    labels = np.array([0, 3, 1, 2, 2, 0, 3])
    one_hot = np.eye(4)[labels]
    assert float(fnn.loss(net, params, x, labels)) == float(fnn.loss(net, params, x, one_hot))
    g_labels, g_one_hot = fnn.backprop(net, params, x, labels)[1], fnn.backprop(net, params, x, one_hot)[1]
    assert worst_rel_error(g_labels, g_one_hot, 1.0) == 0.0


def test_predict_goes_through_the_output_activation():
    net = fnn.MLP((2, 8, 3), "tanh", "softmax", "cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    yhat = fnn.predict(net, params, jnp.ones((4, 2)))
    assert yhat.shape == (4, 3)
    np.testing.assert_allclose(yhat.sum(1), 1, rtol=1e-6)


@pytest.mark.parametrize(
    "output,loss",
    [
        ("softmax", "cross_entropy"),
        ("sigmoid", "bce"),
        ("identity", "mse"),
        ("sigmoid", "mse"),
        ("softmax", "mse"),
        ("tanh", "huber"),
    ],
)
def test_saturated_logits_stay_finite_in_float32(output, loss):
    """Logits of +-1e4 give a finite loss and finite gradients for fused and chain-rule pairs."""
    net = fnn.MLP((2, 3), output=output, loss=loss)
    params = [{"W": jnp.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]), "b": jnp.zeros(3)}]
    x = jnp.array([[1.0, 0.0], [-1.0, 0.0]])
    y = jnp.array([1, 1]) if loss == "cross_entropy" else jnp.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    for method in (fnn.backprop, fnn.autodiff):
        value, grads = method(net, params, x, y)
        assert np.isfinite(float(value))
        assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(grads))
    if (output, loss) == ("softmax", "cross_entropy"):
        # Example 0 puts all mass on class 0 with margin 1e4: loss 1e4 / 2 for the batch, exactly.
        assert float(fnn.loss(net, params, x, y)) == pytest.approx(1e4, rel=1e-6)


@pytest.mark.parametrize(
    "scheme",
    ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "normal", "small_uniform"],
)
def test_init_schemes_have_the_documented_scale(scheme):
    net = fnn.MLP((400, 300, 2))
    params = fnn.init(jax.random.key(0), net, scheme=scheme)
    w = np.asarray(params[0]["W"])
    n_in, n_out = 400, 300
    expected_std = {
        "glorot_uniform": math.sqrt(2 / (n_in + n_out)),
        "glorot_normal": math.sqrt(2 / (n_in + n_out)),
        "he_uniform": math.sqrt(2 / n_in),
        "he_normal": math.sqrt(2 / n_in),
        "lecun_normal": math.sqrt(1 / n_in),
        "normal": 1.0,
        "small_uniform": 0.05 / math.sqrt(3),
    }[scheme]
    assert w.shape == (400, 300) and params[0]["b"].shape == (300,)
    assert w.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.mean()) < 0.02 * expected_std * 10
    if scheme in ("glorot_uniform", "he_uniform", "small_uniform"):
        bound = {
            "glorot_uniform": math.sqrt(6 / (n_in + n_out)),
            "he_uniform": math.sqrt(6 / n_in),
            "small_uniform": 0.05,
        }[scheme]
        assert np.abs(w).max() <= bound
    biases_random = scheme in ("normal", "small_uniform")
    assert (np.asarray(params[0]["b"]) != 0).any() == biases_random


def test_init_is_deterministic_and_keeps_dtype(x64):
    net = fnn.MLP((3, 5, 2))
    a = fnn.init(jax.random.key(7), net, dtype=jnp.float64)
    b = fnn.init(jax.random.key(7), net, dtype=jnp.float64)
    assert all((p == q).all() for p, q in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(a))
    assert isinstance(a, list) and set(a[0]) == {"W", "b"}


def test_single_unit_analytical_backprop_autodiff_and_finite_differences_agree(x64):
    net = SINGLE_UNIT
    params = fnn.init(jax.random.key(3), net, scheme="normal", dtype=jnp.float64)
    x = jnp.array([0.5, -1.0, 2.0, 0.1], jnp.float64)
    t = jnp.array([1.0, 0.0, 1.0, 0.3], jnp.float64)
    e_an, g_an = fnn.single_unit_gradient(params, x, t)
    e_bp, g_bp = fnn.backprop(net, params, x, t)
    e_ad, g_ad = fnn.autodiff(net, params, x, t)
    g_fd = fnn.finite_differences(net, params, x, t)
    assert float(e_an) == pytest.approx(float(e_bp), rel=1e-15) == float(e_ad)
    assert worst_rel_error(g_bp, g_an, e_bp) <= 1e-14
    assert worst_rel_error(g_ad, g_an, e_bp) <= 1e-14
    assert worst_rel_error(g_fd, g_an, e_bp) <= 1e-9


def test_nguyen_widrow_gives_each_unit_the_documented_length_and_bias_range():
    net = fnn.MLP((3, 10, 10, 1))
    params = fnn.init(jax.random.key(0), net, scheme="nguyen_widrow")
    for layer, (n_in, n_out) in zip(params, [(3, 10), (10, 10), (10, 1)]):
        beta = 0.7 * n_out ** (1 / n_in)
        np.testing.assert_allclose(np.linalg.norm(layer["W"], axis=0), beta, rtol=1e-5)
        assert (
            np.abs(np.asarray(layer["b"])).max() <= beta
            and len(set(np.asarray(layer["b"]).tolist())) == n_out
        )
