"""The API's contracts: jit without retracing, custom_vjp, vmap, registration, the report."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import worst_rel_error

import fnn
from fnn.check.finite_differences import default_eps
from fnn.core import activations, dispatch
from fnn.core.backprop import backprop_core
from fnn.core.forward import loss_core


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _problem(net, batch=6, seed=0, dtype=jnp.float64):
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = fnn.init(kp, net, dtype=dtype)
    x = jax.random.normal(kx, (batch, net.sizes[0]), dtype)
    if net.loss == "cross_entropy":
        y = jax.random.randint(ky, (batch,), 0, net.sizes[-1])
    else:
        y = jax.random.normal(ky, (batch, net.sizes[-1]), dtype)
    return params, x, y


def test_mlp_is_frozen_hashable_and_normalised():
    a = fnn.MLP([4, 8, 8, 2], activation="relu")
    b = fnn.MLP((4, 8, 8, 2), activation=("relu", "relu"))
    assert a == b and hash(a) == hash(b)
    assert a.sizes == (4, 8, 8, 2) and a.activation == ("relu", "relu")
    assert a.n_params == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.sizes = (1, 2)


def test_second_call_with_the_same_shapes_does_not_retrace():
    net = fnn.MLP((5, 7, 3), "gelu", "softmax", "cross_entropy")  # a shape no other test uses
    params, x, y = _problem(net, batch=11, dtype=jnp.float32)
    compiled = dispatch.program(backprop_core, net)  # the program behind fnn.backprop for this net
    before = compiled._cache_size()
    fnn.backprop(net, params, x, y)
    assert compiled._cache_size() == before + 1
    params2, x2, y2 = _problem(net, batch=11, seed=1, dtype=jnp.float32)
    # equal net, new data
    fnn.backprop(fnn.MLP((5, 7, 3), "gelu", "softmax", "cross_entropy"), params2, x2, y2)
    assert compiled._cache_size() == before + 1


def test_backprop_path_calls_no_jax_differentiation(monkeypatch):
    """Trace backprop with every way into JAX's differentiation made to fail.

    Every transformation (grad, vjp, jvp, linearize, jacrev, ...) works by
    creating a JVPTrace or LinearizeTrace, so those are blocked as well as the
    public names.
    """
    import jax._src.interpreters.ad as ad

    def forbidden(*args, **kwargs):
        raise AssertionError("backprop called JAX differentiation")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "jacrev", "jacfwd"):
        monkeypatch.setattr(jax, name, forbidden)
    for name in ("JVPTrace", "LinearizeTrace", "jvp", "linearize"):
        monkeypatch.setattr(ad, name, forbidden)
    net = fnn.MLP((3, 4, 4, 2), ("elu", "relu"), "sigmoid", "mse")
    params, x, y = _problem(net, dtype=jnp.float32)
    jaxpr = jax.make_jaxpr(backprop_core, static_argnums=0)(net, params, x, y)
    assert "dot_general" in str(jaxpr)  # the trace did run
    with pytest.raises(AssertionError, match="called JAX differentiation"):  # and the block works
        jax.make_jaxpr(jax.value_and_grad(loss_core, argnums=1), static_argnums=0)(net, params, x, y)


def test_custom_vjp_gradient_is_backprop_under_jit(x64):
    net = fnn.MLP((3, 6, 6, 4), ("tanh", "relu"), "softmax", "cross_entropy")
    params, x, y = _problem(net)
    grad_fn = jax.jit(jax.grad(fnn.loss_with_manual_vjp, argnums=1), static_argnums=0)
    loss_bp, g_bp = fnn.backprop(net, params, x, y)
    assert worst_rel_error(grad_fn(net, params, x, y), g_bp, loss_bp) == 0.0
    assert float(fnn.loss_with_manual_vjp(net, params, x, y)) == float(loss_bp)


def test_custom_vjp_input_and_target_gradients_match_autodiff(x64):
    for output, loss in [
        ("identity", "mse"),
        ("sigmoid", "bce"),
        ("softmax", "cross_entropy"),
        ("tanh", "huber"),
    ]:
        net = fnn.MLP((3, 5, 2), "sigmoid", output, loss)
        params, x, _ = _problem(net)
        y = jax.nn.softmax(jax.random.normal(jax.random.key(9), (6, 2), jnp.float64))  # valid for every loss
        ours = jax.grad(fnn.loss_with_manual_vjp, argnums=(2, 3))(net, params, x, y)
        reference = jax.grad(fnn.loss, argnums=(2, 3))(net, params, x, y)
        for got, ref in zip(ours, reference):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-16)


def test_custom_vjp_gives_per_example_gradients_under_vmap(x64):
    net = fnn.MLP((3, 5, 1), "tanh", "identity", "mse")
    params, x, y = _problem(net, batch=4)
    per_example = jax.vmap(jax.grad(fnn.loss_with_manual_vjp, argnums=1), in_axes=(None, None, 0, 0))
    grads = jax.jit(per_example, static_argnums=0)(net, params, x[:, None], y[:, None])
    assert grads[0]["W"].shape == (4, 3, 5)
    for n in range(4):
        loss_n, g_n = fnn.backprop(net, params, x[n : n + 1], y[n : n + 1])
        assert worst_rel_error(jax.tree_util.tree_map(lambda g: g[n], grads), g_n, loss_n) <= 1e-15
    mean = jax.tree_util.tree_map(lambda g: g.mean(0), grads)
    assert worst_rel_error(mean, fnn.backprop(net, params, x, y)[1], 1.0) <= 1e-14


def test_params_work_with_optax_and_vmap():
    net = fnn.MLP((2, 8, 1), "tanh")
    params, x, _ = _problem(net, batch=16, dtype=jnp.float32)
    y = jnp.sin(x[:, :1]) + 0.5 * x[:, 1:]
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, state):
        grads = jax.grad(fnn.loss_with_manual_vjp, argnums=1)(net, params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    start = float(fnn.loss(net, params, x, y))
    state = opt.init(params)
    for _ in range(200):
        params, state = step(params, state)
    assert float(fnn.loss(net, params, x, y)) < 0.1 * start
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = jax.vmap(lambda k: fnn.init(k, net))(keys)  # an ensemble of three networks
    assert stacked[0]["W"].shape == (3, 2, 8)
    assert jax.vmap(lambda p: fnn.predict(net, p, x))(stacked).shape == (3, 16, 1)


@pytest.fixture
def registry():
    saved = dict(activations.ACTIVATIONS)
    yield activations.ACTIVATIONS
    activations.ACTIVATIONS.clear()
    activations.ACTIVATIONS.update(saved)


def test_registered_activation_is_used_and_differentiated(registry, x64):
    fnn.register_activation(
        "swish",
        lambda z: z * jax.nn.sigmoid(z),
        lambda z: jax.nn.sigmoid(z) * (1 + z * (1 - jax.nn.sigmoid(z))),
    )
    net = fnn.MLP((3, 6, 2), "swish", "swish", "huber")
    params, x, y = _problem(net)
    report = fnn.check_gradients(net, params, x, y)
    assert report.passed, str(report)


def test_registering_a_wrong_derivative_is_refused(registry):
    with pytest.raises(ValueError, match=r"derivative of activation 'bad_tanh' disagrees with jax.grad"):
        fnn.register_activation("bad_tanh", jnp.tanh, lambda z: 1 - z**2)
    assert "bad_tanh" not in registry


def test_registering_an_existing_name_needs_overwrite(registry):
    with pytest.raises(ValueError, match="'tanh' is already registered"):
        fnn.register_activation("tanh", jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2)
    with pytest.raises(TypeError, match="callable"):
        fnn.register_activation("x", jnp.tanh, None)


def test_check_gradients_reports_a_table_and_passes(x64):
    net = fnn.MLP((4, 6, 5, 3), ("tanh", "gelu"), "softmax", "cross_entropy")
    params, x, y = _problem(net)
    report = fnn.check_gradients(net, params, x, y)
    assert report.passed and report.dtype == "float64"
    assert len(report.rows) == 3 * 2 * 2  # layers x leaves x references
    assert report.worst("autodiff").rel <= 1e-12
    assert report.worst("finite_differences").rel <= 1e-7
    text = str(report)
    assert "verdict: PASS" in text and "finite_differences" in text and "(6, 5)" in text


def test_check_gradients_catches_a_wrong_backward_rule(registry):
    registry["wrong_tanh"] = activations.Activation(jnp.tanh, lambda z, a: 1 - a)  # should be 1 - a^2
    net = fnn.MLP((3, 5, 2), "wrong_tanh")
    params, x, y = _problem(net, dtype=jnp.float32)
    report = fnn.check_gradients(net, params, x, y)
    assert not report.passed
    assert "verdict: FAIL" in str(report)
    failing = {(r.layer, r.reference) for r in report.rows if not r.passed}
    assert (0, "autodiff") in failing and (0, "finite_differences") in failing
    assert all(r.passed for r in report.rows if r.layer == 1)  # the output layer's gradients are right


def test_check_gradients_in_float32(x64):
    net = fnn.MLP((3, 5, 2), "tanh")
    params, x, y = _problem(net, dtype=jnp.float32)
    report = fnn.check_gradients(net, params, x, y, dtype="float32")
    assert report.passed and report.dtype == "float32"


@pytest.mark.parametrize("scheme,bound", [("forward", 1e-5), ("central", 1e-7), ("five_point", 1e-7)])
def test_finite_difference_schemes_and_chunking(scheme, bound, x64):
    net = fnn.MLP((3, 4, 2), "tanh", "sigmoid", "mse")
    params, x, y = _problem(net)
    loss_bp, g_bp = fnn.backprop(net, params, x, y)
    whole = fnn.finite_differences(net, params, x, y, scheme=scheme)
    chunked = fnn.finite_differences(net, params, x, y, scheme=scheme, chunk_size=5)  # 26 = 5 x 5 + 1
    assert worst_rel_error(whole, g_bp, loss_bp) <= bound
    # a chunk evaluates its perturbed losses in a program of another batch size: the same estimates up to
    # the rounding each carries, about eps_mach |L| / h (the module docstring), twice for the two of them
    rounding = 2 * np.finfo(np.float64).eps * max(1.0, abs(float(loss_bp))) / default_eps(jnp.float64, scheme)
    for a, b in zip(jax.tree_util.tree_leaves(chunked), jax.tree_util.tree_leaves(whole)):
        np.testing.assert_allclose(a, b, rtol=0, atol=rounding)


def test_one_dimensional_columns_are_read_as_columns(x64):
    net = fnn.MLP((1, 4, 1), "tanh")
    params, x, y = _problem(net, batch=5)
    assert fnn.loss(net, params, x[:, 0], y[:, 0]) == fnn.loss(net, params, x, y)


def test_demo_command_runs_and_passes(capsys):
    from fnn import cli

    assert cli.main(["demo", "--sizes", "3,5,2"]) == 0
    out = capsys.readouterr().out
    assert "verdict: PASS" in out and "fnn.backprop" in out and "fnn.finite_differences" in out
