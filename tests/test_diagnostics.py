"""fnn.diagnostics: deltas equal backprop's, saturation and dead units, fit(diagnostics=True), the plot."""

import math

import jax
import numpy as np
import pytest

import fnn


def _data(n=64, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, (x[:, :2].sum(axis=1, keepdims=True) > 0).astype(np.float32)


def test_deltas_give_backprops_gradients():
    net = fnn.MLP((8, 6, 5, 1), activation=("tanh", "relu"), output="sigmoid", loss="bce")
    params = fnn.init(jax.random.key(0), net)
    x, y = _data()
    cache = net.forward(params, x)
    _, grads = fnn.autodiff(net, params, x, y)  # jax.grad: dL/db_l = sum over the batch of delta_l
    ds = fnn.diagnostics.deltas(net, params, cache, y)
    inputs = [x] + [cache[f"layer{l}"].a for l in range(1, net.n_layers)]  # a_{l-1} of each layer
    for a_in, d, g in zip(inputs, ds, grads):
        np.testing.assert_allclose(d.sum(axis=0), g["b"], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(a_in.T @ d, g["W"], rtol=1e-5, atol=1e-8)
    stats = fnn.diagnostics.layer_stats(net, params, x, y)
    want = [math.sqrt(float((g["W"] ** 2).sum() + (g["b"] ** 2).sum())) for g in grads]
    np.testing.assert_allclose(stats["grad_norm"], want, rtol=1e-5)
    assert math.isnan(stats["saturation"][1]) and not math.isnan(stats["saturation"][0])
    assert math.isnan(stats["dead_relu"][0]) and 0 <= stats["dead_relu"][1] <= 1


def test_unit_normal_init_saturates_sigmoid_while_glorot_tanh_keeps_gradients_level():
    x, y = _data()
    sig = fnn.MLP((8, *[32] * 8, 1), activation="sigmoid", output="sigmoid", loss="bce")
    tanh = fnn.MLP((8, *[32] * 8, 1), activation="tanh", output="sigmoid", loss="bce")
    old = fnn.diagnostics.layer_stats(sig, fnn.init(jax.random.key(0), sig, "normal"), x, y)
    new = fnn.diagnostics.layer_stats(tanh, fnn.init(jax.random.key(0), tanh, "glorot_uniform"), x, y)
    assert np.mean(old["saturation"][:-1]) > 0.1 and np.max(new["saturation"]) < 0.01
    assert fnn.diagnostics.summary(old)["first_over_last"] < 0.05
    assert fnn.diagnostics.summary(new)["max_over_min"] < 10


def test_dead_relu_units_are_counted():
    net = fnn.MLP((8, 4, 1), activation="relu")
    params = fnn.init(jax.random.key(0), net)
    params[0]["b"] = params[0]["b"].at[:2].set(-100.0)  # two units can never fire
    x, y = _data()
    assert fnn.diagnostics.layer_stats(net, params, x, y)["dead_relu"][0] == pytest.approx(0.5)


def test_fit_records_diagnostics_and_plots(tmp_path):
    net = fnn.MLP((8, 16, 16, 1), activation="tanh", output="sigmoid", loss="bce")
    x, y = _data(100)
    _, h = fnn.fit(
        net,
        fnn.init(jax.random.key(0), net),
        (x, y),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=3,
        batch_size=32,
        key=jax.random.key(0),
        diagnostics=True,
    )
    assert set(h.diagnostics) == set(fnn.diagnostics.KEYS)
    for k in fnn.diagnostics.KEYS:
        assert len(h.diagnostics[k]) == 3 and all(len(v) == net.n_layers for v in h.diagnostics[k]), k
    assert all(0 < r < 1 for row in h.diagnostics["update_ratio"] for r in row)
    _, plain = fnn.fit(net, fnn.init(jax.random.key(0), net), (x, y), epochs=1, key=jax.random.key(0))
    assert plain.diagnostics == {}
    pytest.importorskip("matplotlib")
    from fnn.cli import plots

    plots.gradient_norms(h, tmp_path / "g.png")
    plots.gradient_norms(plain, tmp_path / "plain.png")
    fnn.diagnostics.to_csv(h, tmp_path / "d.csv")
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert len((tmp_path / "d.csv").read_text().splitlines()) == 4
