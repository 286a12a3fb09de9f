"""Hessian-free (``fnn.optimizers.hessian_free``) and ``scg`` with exact curvature.

* Martens' conjugate gradient solves ``A x = b`` to the tolerance asked,
  against ``numpy.linalg.solve``, preconditioned and warm-started; it stops
  before a direction of non-positive curvature and at its relative-progress
  test; the iterates it keeps are those at ``ceil(1.3^j)``.
* One Hessian-free step's CG solution is ``-(G + lambda I)^-1 g`` with ``G``
  built densely from ``jax.jacfwd`` and ``jax.hessian``.
* Hessian-free lowers the loss on each network family, with either curvature
  and on a subset of the batch; records lambda, rho and CG iterations; resumes
  bit for bit; is selectable by name in ``fnn train`` and ``fnn.sklearn``.
* ``scg``'s curvature along its direction is the same with ``gnvp``, ``hvp``
  and finite differences on a linear least-squares model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fit_whole_and_resumed
from jax.flatten_util import ravel_pytree

import fnn
from fnn import optimizers
from fnn.core import activations, losses
from fnn.core.validation import prepare
from fnn.optim.hessian_free import linear_cg, save_schedule
from fnn.training import checkpoint
from fnn.training.objective import MinibatchObjective


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _spd(n, cond, rng):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1, cond, n)) @ q.T


def _solve(a, b, **kw):
    a = jnp.asarray(a)
    return jax.jit(lambda b, x0, m: linear_cg(lambda v: a @ v, b, x0, preconditioner=m, **kw))


@pytest.mark.parametrize("tol", [1e-4, 1e-8, 1e-12])
@pytest.mark.parametrize("preconditioned", [False, True])
def test_cg_solves_the_system_to_the_tolerance_asked(tol, preconditioned, x64):
    rng = np.random.default_rng(0)
    a, b = _spd(40, 1e3, rng), rng.normal(size=40)
    m = np.abs(np.diag(a)) if preconditioned else np.ones(40)
    x0 = 0.1 * rng.normal(size=40)
    res = _solve(a, b, max_iterations=400, tol=tol, progress=0.0)(
        jnp.asarray(b), jnp.asarray(x0), jnp.asarray(m)
    )
    exact = np.linalg.solve(a, b)
    r, r0 = b - a @ np.asarray(res.x), b - a @ x0
    assert np.sqrt(r @ (r / m)) <= tol * np.sqrt(r0 @ (r0 / m)) * (1 + 1e-6)  # the stopping rule, met
    assert np.linalg.norm(np.asarray(res.x) - exact) <= 1e3 * tol * np.linalg.norm(exact) * 40  # cond * tol
    xs = np.asarray(res.x)
    assert float(res.phi) == pytest.approx(0.5 * xs @ a @ xs - b @ xs, rel=1e-10)
    if tol == 1e-12:
        np.testing.assert_allclose(res.x, exact, rtol=0, atol=1e-8 * np.linalg.norm(exact))


def test_cg_keeps_the_iterates_at_powers_of_1_3_and_stops_on_progress(x64):
    assert save_schedule(30) == (1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24)
    rng = np.random.default_rng(1)
    # 20 large eigenvalues, 180 tiny: phi settles, r does not
    q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    a, b = (
        (q * np.concatenate([np.geomspace(1, 10, 20), np.geomspace(1e-6, 1e-4, 180)])) @ q.T,
        rng.normal(size=200),
    )
    run = _solve(a, b, max_iterations=200, tol=0.0, progress=5e-4)
    res = run(jnp.asarray(b), jnp.zeros(200), jnp.ones(200))
    slow = _solve(a, b, max_iterations=200, tol=0.0, progress=0.0)(
        jnp.asarray(b), jnp.zeros(200), jnp.ones(200)
    )
    assert 10 < int(res.iterations) < int(slow.iterations) == 200  # the progress test ended it early
    kept = [i for i in save_schedule(200) if i <= int(res.iterations)]
    assert int(res.n_saved) == len(kept)
    phis = np.asarray(res.saved_phi[: len(kept)])
    assert np.all(np.diff(phis) < 0)  # CG lowers phi monotonically
    a, b = _spd(100, 30.0, rng), rng.normal(size=100)  # well conditioned: CG's rounding stays small
    res = _solve(a, b, max_iterations=40, tol=0.0, progress=0.0)(
        jnp.asarray(b), jnp.zeros(100), jnp.ones(100)
    )
    iterates, kept = _textbook_cg(a, b, 40), save_schedule(40)
    assert int(res.n_saved) == len(kept)
    for slot, i in enumerate(kept):  # each kept iterate is the i-th
        np.testing.assert_allclose(
            res.saved[slot], iterates[i], rtol=1e-9, atol=1e-9 * np.linalg.norm(iterates[i])
        )


def _textbook_cg(a, b, n):
    """The iterates ``x_0 .. x_n`` of plain CG from 0, in NumPy."""
    x, r = np.zeros_like(b), b.copy()
    d, out = r.copy(), [np.zeros_like(b)]
    for _ in range(n):
        ad = a @ d
        alpha = (r @ r) / (d @ ad)
        x, r_new = x + alpha * d, r - alpha * ad
        d, r = r_new + (r_new @ r_new) / (r @ r) * d, r_new
        out.append(x)
    return out


def test_cg_stops_before_a_direction_of_negative_curvature(x64):
    a = np.diag([1.0, 2.0, -1.0])
    b = np.array([1.0, 1.0, 1.0])
    res = _solve(a, b, max_iterations=10, tol=1e-12, progress=0.0)(jnp.asarray(b), jnp.zeros(3), jnp.ones(3))
    assert int(res.iterations) < 3 and np.all(np.isfinite(res.x))
    assert float(res.phi) < 0  # the iterates before it lowered the model


def _dense_gauss_newton(net, params, x, y):
    flat, unravel = ravel_pytree(params)
    logits = lambda w: net.output_of(net.forward(unravel(w), x))[0]
    j = jax.jacfwd(lambda w: logits(w).ravel())(flat)
    z = logits(flat)
    act = activations.get(net.output)
    h = jax.hessian(
        lambda zf: losses.mean_loss(net.output, net.loss, zf.reshape(z.shape), act.fn(zf.reshape(z.shape)), y)
    )(z.ravel())
    return np.asarray(j.T @ h @ j)


@pytest.mark.parametrize(
    "net",
    [
        fnn.MLP((3, 5, 4), activation="tanh", output="softmax", loss="cross_entropy"),
        fnn.MLP((3, 4, 2), activation="sigmoid"),
    ],
    ids=["softmax", "mse"],
)
def test_one_step_solves_the_damped_gauss_newton_system(net, x64):
    rng = np.random.default_rng(2)
    params = fnn.init(jax.random.key(0), net, dtype=jnp.float64)
    x = rng.normal(size=(12, 3))
    y = rng.integers(0, 4, 12) if net.loss == "cross_entropy" else rng.normal(size=(12, 2))
    x, y = prepare(net, params, x, y)
    flat, unravel = ravel_pytree(params)
    loss, grads = fnn.backprop(net, params, x, y)
    g = ravel_pytree(grads)[0]
    damping = 0.3
    tx = optimizers.hessian_free(
        damping,
        max_cg_iterations=200,
        cg_tol=1e-13,
        cg_progress=0.0,
        warm_start=0.0,
        preconditioner_exponent=0.0,
    )
    update = jax.jit(
        lambda w, g, s, loss: tx.update(g, s, w, value=loss, value_fn=MinibatchObjective(net, x, y, unravel))
    )
    step, state = update(flat, g, tx.init(flat), loss)
    exact = -np.linalg.solve(
        _dense_gauss_newton(net, params, x, y) + damping * np.eye(flat.size), np.asarray(g)
    )
    np.testing.assert_allclose(state.direction, exact, rtol=0, atol=1e-9 * np.linalg.norm(exact))
    assert float(state.damping) in (damping * 1.5, damping, damping * 2 / 3)
    assert int(state.cg_iterations) <= flat.size + 1
    assert float(fnn.loss(net, unravel(flat + step), x, y)) < float(loss)


def _problems():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    labels = (x[:, 0] * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)
    target = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], axis=1).astype(np.float32)
    graph = fnn.Graph(
        4,
        (
            fnn.Dense("h1", 8, "tanh"),
            fnn.Dense("h2", 8, "relu", inputs=("h1",), residual="h1", dropout=0.2),
            fnn.Dense("out", 3, "softmax", inputs=("h2", "x")),
        ),
        "cross_entropy",
    )
    return {
        "mlp-softmax": (
            fnn.MLP((4, 12, 3), activation="tanh", output="softmax", loss="cross_entropy"),
            x,
            labels,
        ),
        "mlp-mse": (fnn.MLP((4, 12, 2), activation="sigmoid"), x, target),
        "graph-residual-dropout": (graph, x, labels),
    }


PROBLEMS = _problems()


@pytest.mark.parametrize(
    "name, options",
    [(name, {}) for name in PROBLEMS]
    + [("graph-residual-dropout", {"curvature": "hvp"}), ("mlp-softmax", {"curvature_fraction": 0.5})],
    ids=[*PROBLEMS, "graph-residual-dropout-hvp", "mlp-softmax-half-batch"],
)
def test_hessian_free_lowers_the_loss_and_records_what_it_adapts(name, options):
    net, x, y = PROBLEMS[name]
    params = fnn.init(jax.random.key(0), net)
    # other options: hessian_free's record with a factory of its own, so its reports stay
    record = optimizers.spec("hessian_free")
    tx = (
        dataclasses.replace(record, factory=lambda lr, **_: optimizers.hessian_free(**options))
        if options
        else ("hessian_free")
    )
    trained, h = fnn.fit(
        net, params, (x, y), optimizer=tx, epochs=12, batch_size=len(x), key=jax.random.key(1)
    )
    before, after = float(fnn.loss(net, params, x, y)), float(fnn.loss(net, trained, x, y))
    # from lambda = 1, Martens' start, which the first steps lower
    assert after < 0.8 * before, (
        before,
        after,
    )
    assert len(h.damping) == len(h.rho) == len(h.cg_iterations) == len(h)
    assert all(d > 0 for d in h.damping) and all(1 <= i <= 250 for i in h.cg_iterations)
    factors = {round(b / a, 6) for a, b in zip([1.0, *h.damping[:-1]], h.damping)}  # Martens' rule
    assert factors <= {1.5, 1.0, round(2 / 3, 6)}, factors


def test_the_history_and_its_csv_hold_the_damping_rho_and_cg_iterations(tmp_path):
    net, x, y = PROBLEMS["mlp-softmax"]
    _, h = fnn.fit(
        net,
        fnn.init(jax.random.key(0), net),
        (x, y),
        optimizer="hessian_free",
        epochs=3,
        key=jax.random.key(0),
    )
    h.to_csv(tmp_path / "h.csv")
    header, *rows = (tmp_path / "h.csv").read_text().splitlines()
    cols = header.split(",")
    assert {"damping", "rho", "cg_iterations"} <= set(cols) and len(rows) == 3
    assert float(rows[-1].split(",")[cols.index("damping")]) == h.damping[-1]
    _, other = fnn.fit(
        net, fnn.init(jax.random.key(0), net), (x, y), optimizer="adam", epochs=1, key=jax.random.key(0)
    )
    assert other.reports == {} and "damping" not in other.columns  # adam reports nothing


@pytest.mark.exact
def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    net, x, y = PROBLEMS["graph-residual-dropout"]
    _, h_full, _, h_res = fit_whole_and_resumed(
        tmp_path, net, (x, y), 4, optimizer="hessian_free", key=jax.random.key(3)
    )
    assert h_res.damping == h_full.damping and h_res.cg_iterations == h_full.cg_iterations
    assert checkpoint.load(tmp_path / "ckpt.npz").meta["epoch"] == 4


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("damping", 0.0, "damping must be a positive number"),
        ("damping", float("nan"), "damping must be a positive number"),
        ("curvature", "fisher", "curvature must be one of"),
        ("max_cg_iterations", 0, "max_cg_iterations must be a positive int, got 0"),
        ("max_cg_iterations", 2.5, "max_cg_iterations must be a positive int, got 2.5"),
        ("cg_tol", -1e-3, "cg_tol must be in"),
        ("warm_start", 1.5, "warm_start must be in"),
        ("preconditioner_exponent", -1, "preconditioner_exponent must be in"),
        ("armijo_c", 1.0, "armijo_c must be in"),
        ("curvature_fraction", 0.0, "curvature_fraction must be in"),
    ],
)
def test_bad_options_are_named(option, value, match):
    with pytest.raises(ValueError, match=match):
        optimizers.hessian_free(**{option: value})


def test_scg_curvature_is_the_same_exactly_and_by_finite_differences_on_a_quadratic(x64):
    """On a linear model with the mse loss ``G = H``, and the finite difference of the gradient is exact but
    for rounding: scg's first steps agree whichever curvature it uses."""
    rng = np.random.default_rng(4)
    net = fnn.MLP((5, 3), output="identity")
    params = fnn.init(jax.random.key(0), net, dtype=jnp.float64)
    x, y = prepare(net, params, rng.normal(size=(30, 5)), rng.normal(size=(30, 3)))
    steps = {}
    for curvature in ("finite_difference", "gnvp", "hvp"):
        trained, _ = fnn.fit(
            net,
            params,
            (x, y),
            optimizer=optimizers.scg(curvature=curvature),
            epochs=3,
            batch_size=30,
            key=jax.random.key(0),
        )
        steps[curvature] = ravel_pytree(trained)[0] - ravel_pytree(params)[0]
    np.testing.assert_allclose(steps["gnvp"], steps["hvp"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(steps["finite_difference"], steps["gnvp"], rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="curvature must be one of"):
        optimizers.scg(curvature="exact")


@pytest.mark.parametrize("curvature", ["gnvp", "hvp"])
def test_scg_with_exact_curvature_lowers_the_loss(curvature):
    net, x, y = PROBLEMS["graph-residual-dropout"]
    params = fnn.init(jax.random.key(0), net)
    trained, _ = fnn.fit(
        net,
        params,
        (x, y),
        optimizer=optimizers.scg(curvature=curvature),
        epochs=15,
        batch_size=len(x),
        key=jax.random.key(1),
    )
    assert float(fnn.loss(net, trained, x, y)) < 0.8 * float(fnn.loss(net, params, x, y))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_hessian_free_by_name_in_scikit_learn():
    from fnn.sklearn import MLPClassifier

    net, x, y = PROBLEMS["mlp-softmax"]
    clf = MLPClassifier((12,), solver="hessian_free", max_iter=15, random_state=0).fit(x, y)
    assert clf.score(x, y) > 0.8
    assert clf.history_.damping[-1] > 0
