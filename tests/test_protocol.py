"""The network protocol is a real seam: a network written here, not by fnn, goes everywhere an MLP goes.

``OneHidden`` is a one-hidden-layer network with dict params and its own
hand-written backward pass. It implements ``fnn.protocol.Network`` and nothing
else of fnn knows it: it trains with ``fit`` (Adam and Levenberg-Marquardt, whose
per-example Jacobian comes from the protocol's default ``per_example_backward``),
passes ``check_gradients``, resumes from a checkpoint bit for bit, records
diagnostics and trains under bf16. With its own R-operator it gives exact
Hessian- and Gauss-Newton-vector products, diagonals and Kronecker factors.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import optimizers
from fnn.core import activations


@dataclasses.dataclass(frozen=True)
class OneHidden(fnn.protocol.Network):
    """``x -> h = tanh(x W_h + b_h) -> yhat = f(h W_o + b_o)``, params ``{"hidden": ..., "out": ...}``.

    Backward: ``delta_o = dL/dz_o`` (given), ``dW_o = h^T delta_o``,
    ``delta_h = (1 - h^2) * (delta_o W_o^T)``, ``dW_h = x^T delta_h``.

    R-forward along ``v``: ``R{z_h} = x V_h + V_bh``, ``R{h} = (1 - h^2) R{z_h}``,
    ``R{z_o} = R{h} W_o + h V_o + V_bo``. R-backward from ``R{delta_o}``:
    ``R{g} = R{delta_o} W_o^T + delta_o V_o^T``, ``R{delta_h} = -2 h (1 - h^2)
    R{z_h} g + (1 - h^2) R{g}``, ``R{dW_o} = R{h}^T delta_o + h^T R{delta_o}``,
    ``R{dW_h} = x^T R{delta_h}``.
    """

    n_in: int
    n_hidden: int
    n_out: int
    output: str = "identity"
    loss: str = "mse"

    def init(self, key, *, scheme="glorot_uniform", dtype=jnp.float32):
        k_h, k_o = jax.random.split(key)
        glorot = jax.nn.initializers.glorot_uniform()
        return {
            "hidden": {
                "W": glorot(k_h, (self.n_in, self.n_hidden), dtype),
                "b": jnp.zeros(self.n_hidden, dtype),
            },
            "out": {"W": glorot(k_o, (self.n_hidden, self.n_out), dtype), "b": jnp.zeros(self.n_out, dtype)},
        }

    def forward(self, params, x, output_dtype=None, key=None):
        h = jnp.tanh(x @ params["hidden"]["W"] + params["hidden"]["b"])
        z = h @ params["out"]["W"] + params["out"]["b"]
        z = z if output_dtype is None else z.astype(output_dtype)
        return {"x": x, "h": h, "z": z, "a": activations.get(self.output).fn(z)}

    def output_of(self, cache):
        return cache["z"], cache["a"]

    def backward(self, params, cache, delta):
        delta = delta.astype(cache["h"].dtype)
        delta_h = (1 - cache["h"] ** 2) * (delta @ params["out"]["W"].T)
        grads = {
            "hidden": {"W": cache["x"].T @ delta_h, "b": delta_h.sum(axis=0)},
            "out": {"W": cache["h"].T @ delta, "b": delta.sum(axis=0)},
        }
        return grads, [delta_h, delta]

    def input_gradient(self, params, deltas):
        return deltas[0] @ params["hidden"]["W"].T

    def adjoint(self, params, cache, delta):
        grads, deltas = self.backward(params, cache, delta)
        return grads, deltas, {"g": delta.astype(cache["h"].dtype) @ params["out"]["W"].T}

    def tangent_forward(self, params, v, cache):
        rz_h = cache["x"] @ v["hidden"]["W"] + v["hidden"]["b"]
        rh = (1 - cache["h"] ** 2) * rz_h
        return {
            "z_h": rz_h,
            "h": rh,
            "z": rh @ params["out"]["W"] + cache["h"] @ v["out"]["W"] + v["out"]["b"],
        }

    def output_tangent_of(self, rcache):
        return rcache["z"]

    def tangent_backward(self, params, v, cache, rcache, deltas, upstream, rdelta):
        h, (_, delta) = cache["h"], deltas
        rg = rdelta @ params["out"]["W"].T + delta @ v["out"]["W"].T
        rdelta_h = -2 * h * (1 - h**2) * rcache["z_h"] * upstream["g"] + (1 - h**2) * rg
        return {
            "hidden": {"W": cache["x"].T @ rdelta_h, "b": rdelta_h.sum(axis=0)},
            "out": {"W": rcache["h"].T @ delta + h.T @ rdelta, "b": rdelta.sum(axis=0)},
        }

    def weight_inputs(self, cache):
        return {"hidden": {"W": cache["x"]}, "out": {"W": cache["h"]}}

    def units(self, cache):
        return [("tanh", cache["h"]), (self.output, cache["a"])]

    def describe(self):
        return {
            "type": "OneHidden",
            "n_in": self.n_in,
            "n_hidden": self.n_hidden,
            "n_out": self.n_out,
            "output": self.output,
            "loss": self.loss,
        }


REG = OneHidden(2, 6, 1)
CLF = OneHidden(4, 8, 3, output="softmax", loss="cross_entropy")


def _regression(n=64):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return x, (np.sin(2 * x[:, :1]) * x[:, 1:]).astype(np.float32)


def _blobs(n=96):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    x = (np.eye(3, 4)[y] * 2 + rng.normal(0, 0.7, (n, 4))).astype(np.float32)
    return x, y


def test_the_public_functions_take_it():
    params = fnn.init(jax.random.key(0), REG)
    x, y = _regression()
    loss, grads = fnn.backprop(REG, params, x, y)
    ref_loss, ref = fnn.autodiff(REG, params, x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-7)
    assert fnn.predict(REG, params, x).shape == (64, 1)
    assert REG.n_params == 2 * 6 + 6 + 6 + 1 and REG.label == "OneHidden"
    with pytest.raises(ValueError, match=r"params\['out'\]\['W'\] must have shape \(6, 1\)"):
        fnn.loss(REG, {**params, "out": {"W": jnp.zeros((6, 2)), "b": jnp.zeros(1)}}, x, y)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\) for OneHidden"):
        fnn.loss(REG, params, x[:, :1], y)


def test_check_gradients_passes_and_names_its_groups_and_leaves():
    x, y = _blobs(12)
    report = fnn.check_gradients(CLF, fnn.init(jax.random.key(1), CLF), x, y)
    assert report.passed, str(report)
    assert [(r.layer, r.leaf) for r in report.rows if r.reference == "autodiff"] == [
        (0, "W"),
        (0, "b"),
        (1, "W"),
        (1, "b"),
    ]
    assert report.worst("autodiff").rel < 1e-12


def test_levenberg_marquardt_jacobian_from_the_default_per_example_backward():
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), fnn.init(jax.random.key(2), REG))
        x, y = (jnp.asarray(a, jnp.float64) for a in _regression(10))
        e, J = jax.jit(optimizers.residuals_and_jacobian, static_argnums=0)(REG, params, x, y)  # one compile
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        residuals = lambda theta: (REG.forward(unravel(theta), x)["a"] - y).reshape(-1)
        np.testing.assert_allclose(e, jax.jit(residuals)(flat), rtol=1e-14)
        np.testing.assert_allclose(J, jax.jit(jax.jacrev(residuals))(flat), rtol=1e-12, atol=1e-14)


def test_mlps_own_per_example_backward_is_the_defaults():
    net = fnn.MLP((3, 5, 4, 2), activation=("tanh", "relu"), output="sigmoid", loss="mse")
    params = fnn.init(jax.random.key(3), net)
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    cache = net.forward(params, jnp.asarray(x))
    delta = jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32)[None], (7, 2, 2))
    mlp = net.per_example_backward(params, cache, delta)
    default = fnn.protocol.Network.per_example_backward(net, params, cache, delta)
    for a, b in zip(jax.tree_util.tree_leaves(mlp), jax.tree_util.tree_leaves(default)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "levenberg_marquardt"])
def test_it_trains_with_fit(optimizer):
    x, y = _regression()
    params = fnn.init(jax.random.key(4), REG)
    batch = 16 if optimizer == "adam" else None
    trained, h = fnn.fit(
        REG,
        params,
        (x, y),
        optimizer=optimizer,
        learning_rate=3e-2 if optimizer == "adam" else None,
        epochs=40,
        batch_size=batch,
        key=jax.random.key(5),
        validation=(x[:16], y[:16]),
    )
    before, after = fnn.loss(REG, params, x, y), fnn.loss(REG, trained, x, y)
    assert float(after) < 0.2 * float(before), (before, after)
    assert set(trained) == {"hidden", "out"} and len(h.grad_norm[0]) == 2
    assert fnn.evaluate(REG, trained, x, y)["loss"] == pytest.approx(float(after), rel=1e-5)


def test_a_classifier_trains_with_diagnostics_and_under_bf16():
    x, y = _blobs()
    params = fnn.init(jax.random.key(6), CLF)
    _, h = fnn.fit(
        CLF,
        params,
        (x, y),
        optimizer="adam",
        learning_rate=3e-2,
        epochs=15,
        batch_size=32,
        key=jax.random.key(7),
        diagnostics=True,
    )
    assert h.train_accuracy[-1] > 0.9
    d = h.diagnostics
    assert len(d["grad_norm"]) == 15 and len(d["saturation"][0]) == 2 and np.isnan(d["dead_relu"][0]).all()
    assert all(0 < r < 1 for r in d["update_ratio"][0])
    _, h16 = fnn.fit(
        CLF,
        params,
        (x, y),
        optimizer="adam",
        learning_rate=3e-2,
        epochs=15,
        batch_size=32,
        key=jax.random.key(7),
        precision="bf16",
    )
    assert h16.train_accuracy[-1] > 0.9


@pytest.mark.exact
def test_it_resumes_from_a_checkpoint_exactly(tmp_path):
    x, y = _blobs()
    params = fnn.init(jax.random.key(8), CLF)
    kw = dict(
        optimizer="adam",
        learning_rate=1e-2,
        batch_size=24,
        key=jax.random.key(9),
        validation=(x[:24], y[:24]),
    )
    whole, h_whole = fnn.fit(CLF, params, (x, y), epochs=6, **kw)
    path = tmp_path / "run.npz"
    fnn.fit(CLF, params, (x, y), epochs=3, checkpoint=path, **kw)
    resumed, h = fnn.fit(CLF, params, (x, y), epochs=6, checkpoint=path, resume=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert h.train_loss == h_whole.train_loss and h.epoch == list(range(1, 7))
    wider = OneHidden(4, 9, 3, output="softmax", loss="cross_entropy")
    with pytest.raises(ValueError, match="the checkpoint was written for network"):
        fnn.fit(
            wider, fnn.init(jax.random.key(8), wider), (x, y), epochs=6, checkpoint=path, resume=True, **kw
        )


@pytest.mark.parametrize("net", [REG, CLF], ids=["regression", "classifier"])
def test_its_own_r_operator_gives_the_curvature(net):
    """fnn.hvp and fnn.gnvp through the protocol equal JAX's products; the diagonals and factors run on it."""
    from jax.flatten_util import ravel_pytree

    from fnn.core.forward import loss_core

    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), fnn.init(jax.random.key(4), net))
        x, y = _regression(9) if net is REG else _blobs(9)
        x, y = (
            jnp.asarray(x, jnp.float64),
            (jnp.asarray(y, jnp.float64) if net is REG else jax.nn.one_hot(y, 3)),
        )
        v = jax.tree_util.tree_map(
            lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), params
        )
        _, _, hv = fnn.hvp(net, params, x, y, v)
        ref = jax.jvp(jax.grad(lambda w: loss_core(net, w, x, y)), (params,), (v,))[1]
        np.testing.assert_allclose(ravel_pytree(hv)[0], ravel_pytree(ref)[0], rtol=1e-11, atol=1e-13)
        c = fnn.curvature(net, params, x, y)
        flat, unravel = ravel_pytree(params)
        dense = jax.vmap(lambda e: ravel_pytree(c.gnvp(unravel(e)))[0])(jnp.eye(flat.size))
        np.testing.assert_allclose(
            ravel_pytree(c.gauss_newton_diag())[0], jnp.diag(dense), rtol=1e-11, atol=1e-14
        )
        assert float(ravel_pytree(v)[0] @ ravel_pytree(fnn.gnvp(net, params, x, y, v)[2])[0]) >= 0
        factors = c.kronecker_factors(jax.random.key(0))
        assert [name for name, _ in factors] == ["hidden", "out"] and factors[1][1]["A"].shape == (
            net.n_hidden,
        ) * 2
