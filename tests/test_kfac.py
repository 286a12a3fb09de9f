"""K-FAC (``fnn.optim.kfac``) proven in float64 against dense linear algebra, and shown to train.

* one block's update against ``(A + pi sqrt(l) I)^-1 grad (G + sqrt(l)/pi I)^-1`` by ``numpy.linalg``;
* a one-layer linear model with the exact estimator: K-FAC's first step is the
  exact damped Gauss-Newton step ``-(G_GN + D)^-1 g`` (``G_GN`` from
  ``jax.jacfwd``), on the params tree and on one flat vector;
* the exact estimator's factors against their definitions (a two-layer MLP);
* the model-chosen ``(alpha, mu)`` minimise the quadratic model (dense ``G_GN``);
* eigendecompositions refreshed only every ``T3`` steps; the damping rule;
* a jitted ``lax.scan`` of steps lowers the loss of an MLP classifier, a
  regression MLP and a graph with a residual and dropout;
* every bad option is a ``ValueError`` naming it;
* by name in ``fnn.fit`` and ``fnn train``: it trains a graph with dropout,
  records its damping, learning rate and momentum, and resumes bit for bit.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fit_whole_and_resumed
from jax.flatten_util import ravel_pytree

import fnn
from fnn import optimizers
from fnn.core.backprop import backprop_core
from fnn.core.validation import prepare
from fnn.optim import kfac
from fnn.training.epoch import learning_rate
from fnn.training.objective import MinibatchObjective


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def rel(got, ref) -> float:
    got, ref = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _spd(rng, n, rank=None):
    m = rng.normal(size=(n, rank or n))
    return m @ m.T / (rank or n)


def _as64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


# ----------------------------------------------------------------------- one block, densely


@pytest.mark.parametrize("rank", [None, 2], ids=["full-rank", "rank-2"])
def test_block_update_is_the_damped_kronecker_solve(x64, rank):
    rng = np.random.default_rng(0)
    a, g, grad, lam = _spd(rng, 5, rank), _spd(rng, 3), rng.normal(size=(5, 3)), 0.3
    pi = np.sqrt((np.trace(a) / 5) / (np.trace(g) / 3))
    ref = (
        np.linalg.inv(a + pi * np.sqrt(lam) * np.eye(5))
        @ grad
        @ np.linalg.inv(g + np.sqrt(lam) / pi * np.eye(3))
    )
    got = kfac.block_update(jnp.asarray(grad), kfac.eigen(jnp.asarray(a)), kfac.eigen(jnp.asarray(g)), lam)
    assert rel(got, ref) < 1e-10


# ----------------------------------------------------------------------- one linear layer: exact Gauss-Newton


def _linear_problem(n_in=4, n_out=3, batch=6):
    rng = np.random.default_rng(1)
    net = fnn.MLP([n_in, n_out], output="identity", loss="mse")
    params = [{"W": jnp.asarray(rng.normal(size=(n_in, n_out))), "b": jnp.asarray(rng.normal(size=n_out))}]
    return (
        net,
        params,
        jnp.asarray(rng.normal(size=(batch, n_in))),
        jnp.asarray(rng.normal(size=(batch, n_out))),
    )


def _gauss_newton(net, params, x):
    """``J^T H_L J`` for identity + mse (``H_L = I / B``), ``J`` of the logits by ``jax.jacfwd``."""
    flat, unravel = ravel_pytree(params)
    jac = jax.jacfwd(lambda f: net.output_of(net.forward(unravel(f), x))[0].reshape(-1))(flat)
    return np.asarray(jac.T @ jac) / x.shape[0]


@pytest.mark.parametrize("eta", [0.0, 0.05], ids=["plain", "weight-decay"])
def test_one_linear_layer_takes_the_exact_damped_gauss_newton_step(x64, eta):
    """With weight decay ``eta``: the gradient gains ``eta theta`` and the damping is ``lambda + eta``."""
    net, params, x, y = _linear_problem()
    _, grads = backprop_core(net, params, x, y)
    g = np.asarray(ravel_pytree(grads)[0]) + eta * np.asarray(ravel_pytree(params)[0])
    lam = 0.2 + eta
    gn = _gauss_newton(net, params, x)
    xbar = np.concatenate([np.asarray(x), np.ones((x.shape[0], 1))], axis=1)
    a = xbar.T @ xbar / x.shape[0]
    n_out = y.shape[1]
    assert rel(gn, np.kron(a, np.eye(n_out))) < 1e-12  # the homogeneous block is exactly Kronecker here
    pi, c = np.sqrt((np.trace(a) / a.shape[0]) / 1.0), np.sqrt(lam)  # G = I: tr G / dim G = 1
    damping = c / pi * np.kron(a, np.eye(n_out)) + pi * c * np.eye(gn.shape[0]) + lam * np.eye(gn.shape[0])
    ref = -np.linalg.solve(gn + damping, g)

    tx = fnn.optimizers.kfac(0.2, learning_rate=1.0, momentum=0.0, estimator="exact", weight_decay=eta)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params, value_fn=MinibatchObjective(net, x, y))
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(params)
    assert rel(ravel_pytree(updates)[0], ref) < 1e-10


def test_kfac_takes_the_params_tree_and_is_declared_so():
    """K-FAC's blocks are the weight matrices: it refuses one flat vector, and its record says
    flat=False, so fit hands it the tree (and nothing guesses which form it got)."""
    net, params, _, _ = _linear_problem()
    with pytest.raises(ValueError, match="params tree"):
        fnn.optimizers.kfac().init(ravel_pytree(params)[0])
    assert optimizers.spec("kfac").flat is False


# ----------------------------------------------------------------------- the factors


def test_exact_factors_are_their_definitions(x64):
    """Two layers, softmax + cross-entropy: ``G_2 = mean H_n``, ``G_1 = mean D_n W_2 H_n W_2^T D_n``
    (``D_n = diag(f'(z_1n))``), ``A_l = abar^T abar / B``."""
    rng = np.random.default_rng(2)
    net = fnn.MLP((3, 4, 3), activation="tanh", output="softmax", loss="cross_entropy")
    params = _as64(fnn.init(jax.random.key(0), net))
    x, y = prepare(net, params, rng.normal(size=(5, 3)), rng.integers(0, 3, 5))
    factors = kfac.kronecker_factors(MinibatchObjective(net, x, y).curvature(params), None, "exact")

    z1 = np.asarray(x @ params[0]["W"] + params[0]["b"])
    a1 = np.tanh(z1)
    p = np.asarray(jax.nn.softmax(a1 @ params[1]["W"] + params[1]["b"]))
    h = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    w2 = np.asarray(params[1]["W"])
    jac = (1 - a1**2)[:, :, None] * w2[None]  # [n] = D_n W_2, dz_2/dz_1 as (n_1, n_out)
    bar = lambda a: np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
    assert rel(factors[1]["G"], h.mean(0)) < 1e-12
    assert rel(factors[0]["G"], np.einsum("nik,nkl,njl->ij", jac, h, jac) / 5) < 1e-12
    assert rel(factors[0]["A"][0], bar(np.asarray(x)).T @ bar(np.asarray(x)) / 5) < 1e-12
    assert rel(factors[1]["A"][0], bar(a1).T @ bar(a1) / 5) < 1e-12


def test_graph_blocks_fold_the_bias_into_the_first_matrix(x64):
    """A node reading ``("h1", "x")``: one A per input, the bias row only in the first (sorted: ``h1``)."""
    net = fnn.Graph(
        3, (fnn.Dense("h1", 4, "tanh"), fnn.Dense("out", 2, "identity", inputs=("x", "h1"))), "mse"
    )
    params = _as64(fnn.init(jax.random.key(0), net))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 3)))
    y = jnp.zeros((6, 2))
    factors = kfac.kronecker_factors(
        MinibatchObjective(net, x, y).curvature(params), jax.random.key(0), "sampled"
    )
    assert [f.shape for f in factors[1]["A"]] == [(5, 5), (3, 3)]  # [h1 + bias, x]
    assert factors[1]["G"].shape == (2, 2)


# ----------------------------------------------------------------------- the step, the model, the schedule


def test_model_chosen_alpha_and_mu_minimise_the_quadratic_model(x64):
    rng = np.random.default_rng(4)
    net = fnn.MLP((3, 4, 2), activation="tanh")
    params = _as64(fnn.init(jax.random.key(0), net))
    x, y = jnp.asarray(rng.normal(size=(8, 3))), jnp.asarray(rng.normal(size=(8, 2)))
    tx = fnn.optimizers.kfac(0.05, inverse_every=1)
    state = tx.init(params)
    for _ in range(2):
        _, grads = backprop_core(net, params, x, y)
        before = state
        updates, state = tx.update(grads, state, params, value_fn=MinibatchObjective(net, x, y))
        params_before, params = params, jax.tree_util.tree_map(jnp.add, params, updates)
    g = np.asarray(ravel_pytree(grads)[0])
    prev, delta = (np.asarray(ravel_pytree(s.previous)[0]) for s in (before, state))
    alpha, mu = float(state.learning_rate), float(state.momentum)
    assert mu != 0.0
    proposal = (delta - mu * prev) / alpha
    c = _gauss_newton(net, params_before, x) + float(before.damping) * np.eye(g.size)
    slope = g + c @ delta  # dM/d(alpha, mu) = slope . (Delta, delta_prev) = 0 at the minimiser
    assert abs(slope @ proposal) < 1e-10 * np.linalg.norm(g) * np.linalg.norm(proposal)
    assert abs(slope @ prev) < 1e-10 * np.linalg.norm(g) * np.linalg.norm(prev)


@pytest.mark.parametrize("mu_free", [0.4, 7.0, -3.0])
def test_model_step_is_the_minimiser_with_mu_kept_in_its_interval(x64, mu_free):
    """``model_step``: the 2-D minimiser of ``M`` when its ``mu`` lies in ``[0, MAX_MOMENTUM]``;
    otherwise ``mu`` at the nearer bound and ``alpha`` the minimiser given it, which is the minimum
    of ``M`` over the interval (a fine grid of ``mu``, each with its best ``alpha``, finds none
    lower)."""
    m = np.array([[2.0, 0.5], [0.5, 0.3]])
    b = -m @ np.array([0.8, mu_free])  # M's unconstrained minimiser is (0.8, mu_free)
    alpha, mu = (float(v) for v in kfac.model_step(jnp.asarray(b), jnp.asarray(m)))
    value = lambda a, u: b @ [a, u] + 0.5 * np.array([a, u]) @ m @ [a, u]
    best_alpha = lambda u: -(b[0] + u * m[0, 1]) / m[0, 0]
    assert mu == pytest.approx(min(max(mu_free, 0.0), kfac.MAX_MOMENTUM), abs=1e-12)
    assert alpha == pytest.approx(best_alpha(mu), rel=1e-12)
    if 0 <= mu_free <= kfac.MAX_MOMENTUM:
        assert alpha == pytest.approx(0.8, rel=1e-12)
    grid = np.linspace(0.0, kfac.MAX_MOMENTUM, 2001)
    assert value(alpha, mu) <= min(value(best_alpha(u), u) for u in grid) + 1e-12
    fixed_alpha_mu = float(kfac.model_step(jnp.asarray(b), jnp.asarray(m), alpha=0.8)[1])
    assert fixed_alpha_mu == pytest.approx(min(max(mu_free, 0.0), kfac.MAX_MOMENTUM), abs=1e-12)


def test_eigendecompositions_refresh_every_t3_steps(x64):
    net, params, x, y = _linear_problem()
    obj = MinibatchObjective(net, x, y)
    _, grads = backprop_core(net, params, x, y)

    def two_steps(every):
        tx = fnn.optimizers.kfac(inverse_every=every)
        s0 = tx.init(params)
        s1 = tx.update(grads, s0, params, value_fn=obj)[1]
        return s1, tx.update(grads, s1, params, value_fn=obj)[1]

    s1, s2 = two_steps(20)
    leaves = lambda t: jax.tree_util.tree_leaves(t)
    assert all(np.array_equal(a, b) for a, b in zip(leaves(s1.eigens), leaves(s2.eigens)))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(s1.factors), leaves(s2.factors)))
    s1, s2 = two_steps(1)
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(s1.eigens), leaves(s2.eigens)))


@pytest.mark.parametrize("rho, factor", [(0.1, -1), (jnp.nan, -1), (0.5, 0), (0.9, 1)])
def test_damping_rule(rho, factor):
    omega = (19 / 20) ** 5
    assert float(kfac.adapt_damping(2.0, rho, 5)) == pytest.approx(2.0 * omega**factor)
    assert float(kfac.adapt_damping(2.0, rho, 5, floor=2.0)) == pytest.approx(2.0 * max(omega**factor, 1.0))


def test_the_damping_never_falls_below_its_floor(x64):
    """A problem that K-FAC's model fits exactly (one linear layer: rho = 1) lowers lambda at each
    application of the rule while it converges: without a floor it falls below 4e-3, with
    ``min_damping=4e-3`` it stops there."""
    net, params, x, y = _linear_problem()
    obj = MinibatchObjective(net, x, y)

    def dampings(steps, floor):
        tx, p = fnn.optimizers.kfac(0.01, damping_every=1, min_damping=floor), params
        state, out = tx.init(p), []
        for _ in range(steps):
            _, grads = backprop_core(net, p, x, y)
            updates, state = tx.update(grads, state, p, value_fn=obj)
            p = jax.tree_util.tree_map(jnp.add, p, updates)
            out.append(float(state.damping))
        return out

    assert min(dampings(40, 0.0)) < 4e-3  # 0.01 x 0.95^k after k lowerings
    floored = dampings(40, 4e-3)
    assert min(floored) == pytest.approx(4e-3) and all(d >= 4e-3 for d in floored)


# ----------------------------------------------------------------------- training


def _graph():
    return fnn.Graph(
        3,
        (
            fnn.Dense("h1", 8, "tanh"),
            fnn.Dense("h2", 8, "tanh", inputs=("h1", "x"), residual="h1", dropout=0.2),
            fnn.Dense("out", 2, "identity", inputs=("h2", "h1")),
        ),
        "mse",
    )


CASES = {
    "classifier": lambda: fnn.MLP((3, 8, 3), activation="tanh", output="softmax", loss="cross_entropy"),
    "regression": lambda: fnn.MLP((3, 8, 2), activation="tanh"),
    "graph-residual-dropout": _graph,
}


@pytest.mark.parametrize("case, estimator", [(case, "sampled") for case in CASES] + [("regression", "exact")])
def test_kfac_lowers_the_loss_in_a_jitted_scan(case, estimator):
    rng = np.random.default_rng(5)
    net = CASES[case]()
    params = fnn.init(jax.random.key(0), net)
    x = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] * x[:, 2] > 0)
    targets = (
        labels
        if net.loss == "cross_entropy"
        else np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 1])], 1)
    )
    x, y = prepare(net, params, x, targets.astype(np.int32 if net.loss == "cross_entropy" else np.float32))
    tx = fnn.optimizers.kfac(estimator=estimator)
    key = jax.random.key(1) if net.stochastic else None

    @jax.jit
    def run(params, state):
        def step(carry, i):
            p, s = carry
            k = None if key is None else jax.random.fold_in(key, i)
            loss, grads = backprop_core(net, p, x, y, k)
            updates, s = tx.update(
                grads, s, p, value=loss, grad=grads, value_fn=MinibatchObjective(net, x, y, key=k)
            )
            return (jax.tree_util.tree_map(jnp.add, p, updates), s), None

        return jax.lax.scan(step, (params, state), jnp.arange(15))[0]

    trained, state = run(params, tx.init(params))
    before, after = float(fnn.loss(net, params, x, y)), float(fnn.loss(net, trained, x, y))
    assert state.damping.dtype == jnp.float32 and int(state.count) == 15
    assert learning_rate(state) is state.learning_rate  # what fit records per epoch
    assert np.isfinite(after) and after < 0.2 * before, (before, after)  # measured: 0.07 at worst


# ----------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "options, name",
    [
        ({"damping": -1.0}, "damping"),
        ({"damping": 0.0}, "damping"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"estimator": "fisher"}, "estimator"),
        ({"damping_every": 0}, "damping_every"),
        ({"damping_every": 2.5}, "damping_every"),
        ({"inverse_every": 0}, "inverse_every"),
        ({"inverse_every": True}, "inverse_every"),
        ({"factor_decay": 1.0}, "factor_decay"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"min_damping": -1e-6}, "min_damping"),
        ({"damping": 1e-3, "min_damping": 1e-2}, "min_damping"),
    ],
)
def test_bad_options_are_value_errors_naming_them(options, name):
    with pytest.raises(ValueError, match=name):
        fnn.optimizers.kfac(**options)


# ----------------------------------------------------------------------- by name, in fnn.fit


def _graph_problem():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)
    graph = fnn.Graph(
        4,
        (
            fnn.Dense("h1", 8, "tanh"),
            fnn.Dense("h2", 8, "relu", inputs=("h1",), residual="h1", dropout=0.2),
            fnn.Dense("out", 3, "softmax", inputs=("h2", "x")),
        ),
        "cross_entropy",
    )
    return graph, x, y


def test_kfac_by_name_trains_and_records_damping_learning_rate_and_momentum():
    net, x, y = _graph_problem()
    params = fnn.init(jax.random.key(0), net)
    trained, h = fnn.fit(
        net, params, (x, y), optimizer="kfac", epochs=6, batch_size=60, key=jax.random.key(1)
    )
    assert float(fnn.loss(net, trained, x, y)) < 0.6 * float(fnn.loss(net, params, x, y))
    assert len(h.damping) == len(h.learning_rate) == len(h.momentum) == len(h) == 6
    assert (
        all(d > 0 for d in h.damping) and all(np.isfinite(h.learning_rate)) and all(np.isfinite(h.momentum))
    )
    assert "cg_iterations" not in h.reports  # Hessian-free's, not K-FAC's


@pytest.mark.exact
def test_kfac_resumes_an_uninterrupted_run_exactly(tmp_path):
    net, x, y = _graph_problem()
    _, h_full, _, h_res = fit_whole_and_resumed(
        tmp_path, net, (x, y), 4, optimizer="kfac", batch_size=40, key=jax.random.key(3)
    )
    assert h_res.damping == h_full.damping and h_res.momentum == h_full.momentum


def test_kfac_by_name_in_the_command_line(tmp_path):
    from fnn.cli import main

    assert (
        main(
            [
                "train",
                "--dataset",
                "iris",
                "--optimizer",
                "kfac",
                "--epochs",
                "3",
                "--quiet",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    # its own, not the preset's 64
    assert json.loads((tmp_path / "metrics.json").read_text())["batch_size"] == 256
    header, *rows = (tmp_path / "history.csv").read_text().splitlines()
    cols = header.split(",")
    assert len(rows) == 3 and all(row.split(",")[cols.index("damping")] for row in rows)
