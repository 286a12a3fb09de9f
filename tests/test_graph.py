"""``fnn.Graph``: arbitrary connectivity over the same delta recursion, and dropout.

The proof is in float64: on random graphs (widths, fan-in, residuals,
activations, output/loss pairs, dropout, batch 1 to 16) fnn's backprop equals
``jax.grad`` to 1e-12 and central finite differences to 1e-7, with and without
dropout; the chain graph is the ``MLP`` exactly; Levenberg-Marquardt's Jacobian
on a cascade net is ``jax.jacrev``'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    QUICK_COMPILE,
    graphs,
    host_targets,
    with_random_biases,
    worst_over_examples,
    worst_rel_error,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import fnn
from fnn import optimizers
from fnn.check.autodiff import autodiff_core
from fnn.check.finite_differences import compiled_finite_differences, default_eps
from fnn.core import validation
from fnn.core.backprop import backprop_core
from fnn.core.forward import predict_core

NET = fnn.Graph(
    n_in=6,
    nodes=[
        fnn.Dense("h1", 8, "relu", inputs=("x",)),
        fnn.Dense("h2", 8, "tanh", inputs=("h1", "x"), residual="h1", dropout=0.2),
        fnn.Dense("out", 3, "softmax", inputs=("h2", "h1")),
    ],
    loss="cross_entropy",
)


def _blobs(n=96, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (np.eye(3, d)[y] * 2 + rng.normal(0, 0.8, (n, d))).astype(np.float32), y


# --------------------------------------------------------------------------- the description


def test_params_are_keyed_by_node_and_input():
    params = fnn.init(jax.random.key(0), NET)
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    assert shapes == {
        "h1": {"W": {"x": (6, 8)}, "b": (8,)},
        "h2": {"W": {"h1": (8, 8), "x": (6, 8)}, "b": (8,)},
        "out": {"W": {"h1": (8, 3), "h2": (8, 3)}, "b": (3,)},
    }
    assert NET.n_params == sum(
        int(np.prod(s)) for s in jax.tree_util.tree_leaves(shapes, is_leaf=lambda t: isinstance(t, tuple))
    )
    assert NET.output == "softmax" and NET.n_out == 3 and NET.stochastic


def test_constructors():
    cascade = fnn.Graph.cascade([4, 5, 6, 2], "tanh")
    assert [n.inputs for n in cascade.nodes] == [("x",), ("x", "layer1"), ("x", "layer1", "layer2")]
    residual = fnn.Graph.residual(4, 7, 3, 2, "relu", "identity", "mse")
    assert [(n.name, n.inputs, n.residual) for n in residual.nodes] == [
        ("h1", ("x",), None),
        ("h2", ("h1",), "h1"),
        ("h3", ("h2",), "h2"),
        ("out", ("h3",), None),
    ]
    mlp = fnn.MLP((4, 5, 3), ("tanh",), "sigmoid", "bce", dropout=0.1)
    assert mlp.graph == fnn.Graph.chain((4, 5, 3), "tanh", "sigmoid", "bce", dropout=0.1)
    assert fnn.Graph.from_description(NET.describe()) == NET


@pytest.mark.parametrize(
    "nodes, message",
    [
        (
            [fnn.Dense("h", 4, inputs=("y",)), fnn.Dense("o", 1, inputs=("h",))],
            r"node 'h' takes 'y', which is not 'x'",
        ),
        (
            [fnn.Dense("h", 4, inputs=("o",)), fnn.Dense("o", 1, inputs=("h",))],
            r"node 'h' takes 'o', which is not",
        ),
        ([fnn.Dense("h", 4), fnn.Dense("h", 1, inputs=("h",))], r"duplicate node name 'h'"),
        (
            [
                fnn.Dense("h", 4),
                fnn.Dense("g", 5, inputs=("h",), residual="h"),
                fnn.Dense("o", 1, inputs=("g",)),
            ],
            r"node 'g' \(5 wide\) cannot add residual 'h' \(4 wide\)",
        ),
        (
            [fnn.Dense("h", 4), fnn.Dense("o", 4, inputs=("h",), residual="h")],
            r"the output node 'o' cannot have a residual",
        ),
        (
            [fnn.Dense("h", 4), fnn.Dense("o", 1, inputs=("h",), dropout=0.5)],
            r"the output node 'o' cannot have dropout",
        ),
        (
            [fnn.Dense("h", 4), fnn.Dense("g", 4), fnn.Dense("o", 1, inputs=("g",))],
            r"node 'h' feeds no later node",
        ),
        (
            [fnn.Dense("h", 4, "softmax"), fnn.Dense("o", 1, inputs=("h",))],
            r"'softmax' may only be used as the output",
        ),
    ],
)
def test_bad_graphs_are_refused_at_construction(nodes, message):
    with pytest.raises(ValueError, match=message):
        fnn.Graph(3, nodes)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(inputs=()), r"node 'h' has an empty input list"),
        (dict(dropout=1.0), r"node 'h': dropout must lie in \[0, 1\), got 1.0"),
        (dict(dropout=-0.1), r"dropout must lie in \[0, 1\)"),
        (dict(inputs=("x", "x")), r"names an input twice"),
    ],
)
def test_bad_nodes_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        fnn.Dense("h", 4, **kw)


def test_mlp_dropout_is_checked():
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1.5"):
        fnn.MLP((3, 4, 1), dropout=1.5)
    with pytest.raises(ValueError, match=r"dropout has 2 values but the network has 1 hidden layers"):
        fnn.MLP((3, 4, 1), dropout=(0.1, 0.2))


# --------------------------------------------------------------------------- the proof, in float64


@functools.partial(jax.jit, static_argnums=0, compiler_options=QUICK_COMPILE)
def _three(net, params, x, y, key):
    """fnn's backprop, jax.grad and central finite differences, in one compiled program."""
    eps = default_eps(jnp.float64, "central")
    fd = compiled_finite_differences(net, params, x, y, eps, "central", 64, key)
    return backprop_core(net, params, x, y, key), autodiff_core(net, params, x, y, key)[1], fd


def _errors(net, batch, dropout, seed) -> tuple[float, float]:
    """The worst ``rel`` of backprop against jax.grad and against finite differences, in float64."""
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = with_random_biases(rng, fnn.init(jax.random.key(seed), net, dtype=jnp.float64))
        x, y = validation.prepare(
            net, params, rng.normal(size=(batch, net.n_in)), host_targets(rng, net.loss, batch, net.n_out)
        )
        key = jax.random.key(seed + 1) if dropout else None
        (loss, g_bp), g_ad, g_fd = _three(net, params, x, y, key)
        assert jax.tree_util.tree_structure(g_bp) == jax.tree_util.tree_structure(params)
        return worst_rel_error(g_bp, g_ad, loss), worst_rel_error(g_bp, g_fd, loss)


EXAMPLE = (graphs(), st.integers(1, 16), st.booleans(), st.integers(0, 2**31 - 1))


@settings(max_examples=30, deadline=None)
@given(*EXAMPLE)
def test_backprop_equals_autodiff_and_finite_differences_on_random_graphs(net, batch, dropout, seed):
    ad, fd = _errors(net, batch, dropout, seed)
    assert ad <= 1e-12 and fd <= 1e-7


@pytest.mark.slow
def test_the_worst_errors_over_many_random_graphs(capsys):
    """``pytest -m slow -s tests/test_graph.py -k worst``: 150 graphs, the worst errors printed."""
    worst = worst_over_examples(150, EXAMPLE, _errors)
    with capsys.disabled():
        print(
            f"\nworst rel error over 150 random graphs: jax.grad {worst[0]:.2e}, "
            f"finite differences {worst[1]:.2e}"
        )
    assert worst[0] <= 1e-12 and worst[1] <= 1e-7


@pytest.mark.exact
def test_the_chain_graph_is_the_mlp_exactly():
    mlp = fnn.MLP((5, 7, 6, 3), ("tanh", "relu"), "softmax", "cross_entropy")
    chain = fnn.Graph.chain((5, 7, 6, 3), ("tanh", "relu"), "softmax", "cross_entropy")
    params = fnn.init(jax.random.key(0), mlp)
    as_graph = mlp.as_graph_params(params)
    for a, b in zip(
        jax.tree_util.tree_leaves(fnn.init(jax.random.key(0), chain)), jax.tree_util.tree_leaves(as_graph)
    ):
        np.testing.assert_array_equal(a, b)  # the same key draws the same params
    x, y = _blobs(32, 5)
    loss_m, g_m = fnn.backprop(mlp, params, x, y)
    loss_c, g_c = fnn.backprop(chain, as_graph, x, y)
    assert float(loss_m) == float(loss_c)
    for a, b in zip(jax.tree_util.tree_leaves(mlp.as_graph_params(g_m)), jax.tree_util.tree_leaves(g_c)):
        np.testing.assert_array_equal(a, b)


def test_levenberg_marquardts_jacobian_on_a_cascade_net_is_jacrev():
    net = fnn.Graph.cascade([2, 4, 3, 2], ("tanh", "sigmoid"), "identity", "mse")
    with jax.enable_x64(True):
        params = fnn.init(jax.random.key(1), net, dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(2).normal(size=(6, 2)))
        y = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)))
        e, J = jax.jit(optimizers.residuals_and_jacobian, static_argnums=0)(net, params, x, y)  # one compile
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        residuals = lambda theta: (predict_core(net, unravel(theta), x) - y).reshape(-1)
        np.testing.assert_allclose(e, jax.jit(residuals)(flat), rtol=1e-15)
        np.testing.assert_allclose(J, jax.jit(jax.jacrev(residuals))(flat), rtol=1e-12, atol=1e-15)


def test_manual_vjp_and_check_gradients_with_dropout():
    x, y = _blobs(10)
    with jax.enable_x64(True):
        params = fnn.init(jax.random.key(2), NET, dtype=jnp.float64)
        key = jax.random.key(7)
        g = jax.grad(fnn.loss_with_manual_vjp, argnums=1)(NET, params, x, y, key)
        _, ref = fnn.autodiff(NET, params, x, y, key=key)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    report = fnn.check_gradients(NET, params, x, y, key=key)
    assert report.passed, str(report)
    assert {r.leaf for r in report.rows} == {"W/x", "W/h1", "W/h2", "b"}


# --------------------------------------------------------------------------- dropout


def test_dropout_is_on_only_with_a_key():
    params = fnn.init(jax.random.key(0), NET)
    x, y = _blobs(16)
    plain = fnn.Graph(
        6, tuple(fnn.Dense(n.name, n.width, n.activation, n.inputs, n.residual) for n in NET.nodes), NET.loss
    )
    assert float(fnn.loss(NET, params, x, y)) == float(fnn.loss(plain, params, x, y))
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert float(fnn.loss(NET, params, x, y, key=k1)) == float(fnn.loss(NET, params, x, y, key=k1))
    assert float(fnn.loss(NET, params, x, y, key=k1)) != float(fnn.loss(NET, params, x, y, key=k2))
    cache = NET.forward(params, jnp.asarray(x), key=k1)
    keep = np.asarray(cache["h2"].keep)
    assert set(np.unique(keep)) <= {0.0, np.float32(1 / 0.8)} and 0.6 < np.mean(keep > 0) < 0.95
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key"):
        fnn.loss(NET, params, x, y, key=3)


@pytest.mark.exact
def test_fit_with_dropout_draws_fresh_masks_each_step_and_resumes_exactly(tmp_path):
    x, y = _blobs()
    params = fnn.init(jax.random.key(3), NET)
    kw = dict(
        optimizer="adam",
        learning_rate=1e-2,
        batch_size=32,
        key=jax.random.key(4),
        validation=(x[:32], y[:32]),
    )
    whole, h_whole = fnn.fit(NET, params, (x, y), epochs=6, **kw)
    fnn.fit(NET, params, (x, y), epochs=3, checkpoint=tmp_path / "run.npz", **kw)
    resumed, h = fnn.fit(NET, params, (x, y), epochs=6, checkpoint=tmp_path / "run.npz", resume=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert h.train_loss == h_whole.train_loss
    plain = fnn.Graph.from_description(
        {**NET.describe(), "nodes": [{**n, "dropout": 0.0} for n in NET.describe()["nodes"]]}
    )
    _, h_plain = fnn.fit(plain, params, (x, y), epochs=6, **kw)
    assert h_plain.train_loss != h_whole.train_loss  # dropout changed the training
    mlp = fnn.MLP((6, 16, 3), "relu", "softmax", "cross_entropy", dropout=0.5)
    _, h_mlp = fnn.fit(mlp, fnn.init(jax.random.key(5), mlp), (x, y), epochs=4, **kw)
    assert h_mlp.train_loss[-1] < h_mlp.train_loss[0]


# --------------------------------------------------------------------------- everywhere a network goes


RESIDUAL = fnn.Graph.residual(2, 6, 3, 1, "tanh", "identity", "mse")


def _sine(n=48):
    x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
    return np.hstack([x, x**2]), np.sin(3 * x).astype(np.float32)


# MATLAB's methods reach the network only through its loss, gradient and Jacobian, as lbfgs and
# levenberg_marquardt do: those two stand for them in the default suite
_LINE_SEARCHES = ("br", "scg", "cgf", "cgp", "cgb", "bfgs", "oss")


@pytest.mark.parametrize(
    "optimizer",
    [pytest.param(n, marks=pytest.mark.slow) if n in _LINE_SEARCHES else n for n in optimizers.NAMES],
)
def test_every_optimizer_trains_a_residual_graph(optimizer):
    x, y = _sine()
    params = fnn.init(jax.random.key(6), RESIDUAL)
    lr = {
        "gd": 0.2,
        "sgd": 0.05,
        "momentum": 0.02,
        "adaptive_lr": 0.05,
        "adaptive_momentum": 0.05,
        "adam": 1e-2,
        "rmsprop": 3e-3,
        "rprop": 0.01,
    }.get(optimizer)
    trained, h = fnn.fit(
        RESIDUAL, params, (x, y), optimizer=optimizer, learning_rate=lr, epochs=30, key=jax.random.key(7)
    )
    assert float(fnn.loss(RESIDUAL, trained, x, y)) < 0.7 * float(fnn.loss(RESIDUAL, params, x, y)), optimizer


def test_diagnostics_per_node_and_bf16():
    x, y = _blobs()
    params = fnn.init(jax.random.key(8), NET)
    _, h = fnn.fit(
        NET,
        params,
        (x, y),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=10,
        batch_size=32,
        key=jax.random.key(9),
        diagnostics=True,
    )
    d = h.diagnostics
    assert [len(v) for v in d["grad_norm"][0:1]] == [3] and np.isfinite(d["dead_relu"][0][0])
    assert np.isnan(d["dead_relu"][0][1]) and np.isfinite(d["saturation"][0][1])  # h2 is tanh
    stats = fnn.diagnostics.layer_stats(NET, params, x, y)
    assert stats["grad_norm"].shape == (3,)
    _, h16 = fnn.fit(
        NET,
        params,
        (x, y),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=10,
        batch_size=32,
        key=jax.random.key(9),
        precision="bf16",
    )
    assert h16.train_accuracy[-1] > 0.8 and abs(h16.train_loss[-1] - h.train_loss[-1]) < 0.1
