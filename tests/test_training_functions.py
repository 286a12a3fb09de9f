"""MATLAB's training functions (br, scg, cgf, cgp, cgb, bfgs, oss) and Levenberg-Marquardt beyond
4,096 parameters.

Every one lowers the loss (``test_optimizers.test_every_optimizer_lowers_the_loss``
loops the registry). Here each is held to a reference: scipy.optimize's BFGS
and CG on the same convex objective after the same number of iterations,
the exact minimum of a quadratic, Battiti's one-step-secant formula,
MacKay's fixed point for a linear model, and the unchunked normal equations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree

import fnn
from fnn import optimizers
from fnn.core.validation import prepare
from fnn.optim import conjugate_gradient, gauss_newton, quasi_newton
from fnn.scale import memory

NEW = ("br", "scg", "cgf", "cgp", "cgb", "bfgs", "oss")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _logistic_problem():
    """Binary logistic regression on overlapping classes: smooth and strictly convex, one minimum."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=80) > 0).astype(np.float64)[:, None]
    net = fnn.MLP((4, 1), output="sigmoid", loss="bce")
    return net, fnn.init(jax.random.key(0), net, dtype=np.float64), x, y


def _smallest_curvature(x, w):
    """The smallest eigenvalue of the logistic loss's Hessian X1^T diag(p (1 - p)) X1 / N at ``w``
    (``w`` in ravel_pytree order: W (4 x 1) then b)."""
    ones = np.hstack([x, np.ones((len(x), 1))])
    p = 1 / (1 + np.exp(-ones @ np.asarray(w)))
    return np.linalg.eigvalsh(ones.T @ (ones * (p * (1 - p))[:, None]) / len(x))[0]


@pytest.mark.parametrize(
    "name, method",
    [
        ("bfgs", "BFGS"),
        ("cgp", "CG"),
        # scipy's CG is Polak-Ribiere+: for Fletcher-Reeves and Powell-Beale it is a reference at the
        # minimum only
        pytest.param("cgf", "CG", marks=pytest.mark.slow),
        pytest.param("cgb", "CG", marks=pytest.mark.slow),
    ],
)
def test_agrees_with_scipy_after_the_same_number_of_iterations(x64, name, method):
    """scipy's BFGS, and its CG (Polak-Ribiere+), run to gtol 1e-9 take ``nit`` iterations;
    fnn's method, one iteration per epoch, runs as many from the same start.

    The tolerance: for a strictly convex loss with Hessian >= lambda_min I, any
    point with gradient g lies within |g| / lambda_min of the minimum, so the
    two answers can differ by at most (|g_fnn| + |g_scipy|) / lambda_min;
    their losses agree to rounding (1e-13 relative)."""
    net, p0, x, y = _logistic_problem()
    w0, unravel = ravel_pytree(p0)

    def loss_and_grad(w):
        loss, grads = fnn.backprop(net, unravel(w), x, y)
        return float(loss), np.asarray(ravel_pytree(grads)[0])

    ref = scipy.optimize.minimize(
        loss_and_grad, np.asarray(w0), jac=True, method=method, options={"gtol": 1e-9, "maxiter": 500}
    )
    assert np.linalg.norm(ref.jac) < 1e-8  # (CG may end on "precision loss" in the last line search)
    params, history = fnn.fit(net, p0, (x, y), optimizer=name, epochs=ref.nit, key=jax.random.key(0))
    assert len(history) == ref.nit
    w = np.asarray(ravel_pytree(params)[0])
    loss, g = loss_and_grad(w)
    # along the way from w0 to the minimum
    lam_min = min(_smallest_curvature(x, w0), _smallest_curvature(x, w))
    assert lam_min > 0
    assert np.linalg.norm(g) < 1e-8
    assert np.linalg.norm(w - ref.x) <= (np.linalg.norm(g) + np.linalg.norm(ref.jac)) / lam_min
    assert loss == pytest.approx(ref.fun, rel=1e-13)


def _least_squares_problem(n=50):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 6)) * [1, 2, 3, 0.5, 1, 4]
    y = x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(n, 2))
    net = fnn.MLP((6, 2), output="identity", loss="mse")
    ones = np.hstack([x, np.ones((n, 1))])
    best = np.linalg.lstsq(ones, y, rcond=None)[0]
    return (
        net,
        fnn.init(jax.random.key(0), net, dtype=np.float64),
        x,
        y,
        0.5 * np.sum((ones @ best - y) ** 2) / n,
    )


@pytest.mark.parametrize("name", ["scg", "bfgs"])
def test_a_quadratic_is_minimised_in_p_steps(x64, name):
    """On a linear least-squares problem (P = 14) scaled conjugate gradient, whose curvature
    estimate is exact for a quadratic, is conjugate gradients with exact steps: it reaches
    the least-squares minimum in P iterations; BFGS reaches it in as many."""
    net, p0, x, y, best = _least_squares_problem()
    params, _ = fnn.fit(net, p0, (x, y), optimizer=name, epochs=net.n_params, key=jax.random.key(0))
    assert float(fnn.loss(net, params, x, y)) == pytest.approx(best, rel=1e-10)


def test_one_step_secant_is_battitis_formula(x64):
    """oss's direction after one step is Battiti's d = -g + A s + B y (1992, eq. 21)."""
    rng = np.random.default_rng(3)
    w0, w1, g0, g1 = (jnp.asarray(rng.normal(size=5)) for _ in range(4))
    tx = optax.chain(optax.scale_by_lbfgs(memory_size=1, scale_init_precond=False), optax.scale(-1.0))

    @jax.jit
    def second_direction(w0, w1, g0, g1):
        _, state = tx.update(g0, tx.init(w0), w0)
        return tx.update(g1, state, w1)[0]

    d = second_direction(w0, w1, g0, g1)
    s, y = w1 - w0, g1 - g0
    B = s @ g1 / (y @ s)
    A = -(1 + y @ y / (y @ s)) * (s @ g1) / (y @ s) + y @ g1 / (y @ s)
    np.testing.assert_allclose(d, -g1 + A * s + B * y, rtol=1e-12)
    assert isinstance(optimizers.get("oss"), optax.GradientTransformationExtraArgs)


def test_bfgs_update_keeps_the_secant_equation(x64):
    rng = np.random.default_rng(4)
    M = rng.normal(size=(6, 6))
    H = M @ M.T + np.eye(6)
    s, y = rng.normal(size=6), rng.normal(size=6)
    y = y if y @ s > 0 else -y
    H1 = quasi_newton.bfgs_update(jnp.asarray(H), jnp.asarray(s), jnp.asarray(y))
    np.testing.assert_allclose(H1 @ y, s, rtol=1e-10)  # H_{k+1} y = s
    np.testing.assert_allclose(H1, H1.T, rtol=1e-12)
    assert np.linalg.eigvalsh(H1)[0] > 0


def test_powell_beale_restarts_when_gradients_are_not_orthogonal():
    tx = conjugate_gradient.conjugate_direction("powell_beale")
    g0 = jnp.array([1.0, 0.0, 0.0])
    state = tx.init(g0)
    d, state = tx.update(g0, state)
    np.testing.assert_allclose(d, -g0)  # the first step is steepest descent
    g1 = jnp.array([0.5, 1.0, 0.0])  # |g0 . g1| = 0.5 >= 0.2 |g1|^2 = 0.25: restart
    d, state = tx.update(g1, state)
    np.testing.assert_allclose(d, -g1)
    assert int(state.since_restart) == 0
    g2 = jnp.array([0.01, 0.1, 1.0])  # nearly orthogonal to g1: a conjugate step
    d, state = tx.update(g2, state)
    assert not np.allclose(d, -g2) and float(d @ g2) < 0
    with pytest.raises(ValueError, match="rule must be one of"):
        conjugate_gradient.conjugate_direction("hestenes")


def test_br_reaches_mackays_fixed_point_on_a_linear_model(x64):
    """For a linear model the Gauss-Newton matrix is the exact Hessian, so br's fixed point
    is MacKay's: w = argmin beta E_D + alpha E_W (the ridge solution), gamma = sum
    beta l / (beta l + alpha) over the eigenvalues l of X^T X, alpha = gamma / (2 E_W),
    beta = (N - gamma) / (2 E_D); all computed here with NumPy."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 1)) + 0.3 * rng.normal(size=(40, 1))
    net = fnn.MLP((6, 1), output="identity", loss="mse")
    params, h = fnn.fit(
        net,
        fnn.init(jax.random.key(0), net, dtype=np.float64),
        (x, y),
        optimizer="br",
        epochs=200,
        key=jax.random.key(0),
    )
    assert h.stop_reason == "br: mu exceeded 1e+10 without lowering the loss"  # converged: no step lowers F
    assert len(h.gamma) == len(h.alpha) == len(h.beta) == len(h) and np.isnan(h.mu).sum() == 0
    alpha, beta = h.alpha[-1], h.beta[-1]
    ones = np.hstack([x, np.ones((40, 1))])
    w = np.linalg.solve(beta * ones.T @ ones + alpha * np.eye(7), beta * ones.T @ y).ravel()
    np.testing.assert_allclose(ravel_pytree(params)[0], w, rtol=1e-8, atol=1e-10)
    lam = np.linalg.eigvalsh(ones.T @ ones)
    gamma = np.sum(beta * lam / (beta * lam + alpha))
    assert h.gamma[-1] == pytest.approx(gamma, rel=1e-8)
    assert alpha == pytest.approx(gamma / (2 * w @ w), rel=1e-8)
    assert beta == pytest.approx((40 - gamma) / (2 * np.sum((ones @ w - y.ravel()) ** 2)), rel=1e-8)
    # the noise is N(0, 0.3^2): beta estimates 1 / (2 sigma^2) = 5.6
    assert 3 < beta < 9


def test_br_records_gamma_alpha_beta_and_other_methods_do_not():
    x = np.linspace(-1, 1, 30, dtype=np.float32)[:, None]
    y = np.sin(np.pi * x)
    net = fnn.MLP((1, 8, 1), activation="tanh")
    _, h = fnn.fit(
        net, fnn.init(jax.random.key(0), net), (x, y), optimizer="br", epochs=5, key=jax.random.key(0)
    )
    assert (
        all(0 < g <= net.n_params for g in h.gamma)
        and all(a > 0 for a in h.alpha)
        and all(b > 0 for b in h.beta)
    )
    # br's own, in its order
    assert list(h.to_dict()["reports"]) == [
        "mu",
        "mu_max",
        "gamma",
        "alpha",
        "beta",
    ]
    # after the generic ones
    assert h.csv_header(2).split(",")[6:11] == [
        "mu",
        "mu_max",
        "gamma",
        "alpha",
        "beta",
    ]
    _, h = fnn.fit(
        net, fnn.init(jax.random.key(0), net), (x, y), optimizer="scg", epochs=2, key=jax.random.key(0)
    )
    assert h.reports == {} and "gamma" not in h.csv_header(2).split(",")  # scg reports nothing


def test_normal_equations_in_chunks_equal_the_whole_jacobians(x64):
    net = fnn.MLP((3, 5, 4, 2), activation=("tanh", "relu"), output="sigmoid", loss="mse")
    params = fnn.init(jax.random.key(2), net, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = prepare(net, params, rng.normal(size=(23, 3)), rng.uniform(size=(23, 2)))
    e, J = jax.jit(optimizers.residuals_and_jacobian, static_argnums=0)(net, params, x, y)
    for chunk in (5, 23):  # 5 leaves a padded last chunk; 23 is the whole batch
        H, g, sse = jax.jit(gauss_newton.normal_equations, static_argnums=0, static_argnames="chunk")(
            net, params, x, y, chunk=chunk
        )
        np.testing.assert_allclose(H, J.T @ J, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, J.T @ e, rtol=1e-12, atol=1e-14)
        assert float(sse) == pytest.approx(float(e @ e), rel=1e-13)


BIG = fnn.MLP((8, 72, 72, 1), activation="tanh")  # P = 5,977


def test_normal_equations_memory_is_bounded_by_p_squared_not_by_the_examples():
    """At P = 5,977 the compiled normal equations need the same scratch memory for 12,000
    examples as for 48,000: one chunk of P rows of J at a time, not examples x P."""
    params = fnn.init(jax.random.key(0), BIG)
    temp = []
    for batch in (12_000, 48_000):
        fn = jax.jit(lambda p, x, y: gauss_newton.normal_equations(BIG, p, x, y))
        compiled = fn.lower(params, jnp.zeros((batch, 8)), jnp.zeros((batch, 1))).compile()
        temp.append(compiled.memory_analysis().temp_size_in_bytes)
    P = BIG.n_params
    assert temp[1] < 1.05 * temp[0]
    assert temp[1] < 4 * P * P * 4  # a few P x P float32 arrays, where one 48,000 x P Jacobian is 8 P^2


def test_levenberg_marquardt_trains_beyond_4096_parameters():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1000, 8)).astype(np.float32)
    y = np.sin(x.sum(1, keepdims=True))
    params, h = fnn.fit(
        BIG,
        fnn.init(jax.random.key(0), BIG),
        (x, y),
        optimizer="levenberg_marquardt",
        epochs=1,
        key=jax.random.key(0),
    )
    assert BIG.n_params > 4096 * 1.4
    assert float(fnn.loss(BIG, params, x, y)) < 0.5 * h.train_loss[0]


@pytest.mark.parametrize("name", ["levenberg_marquardt", "br", "bfgs"])
def test_p_squared_methods_name_the_memory_they_would_need(monkeypatch, name):
    """The limit on P follows from the device's memory: with 0.5 GiB, P = 5,977 in float32 is too much."""
    monkeypatch.setattr(memory, "device_memory", lambda device=None: 2**29)
    x, y = np.zeros((4, 8), np.float32), np.zeros((4, 1), np.float32)
    need = memory.needed(name, BIG.n_params, np.float32) / 2**30
    with pytest.raises(
        ValueError,
        match=rf"{name} holds \d P x P float32 matrices: at P = 5,977 parameters that "
        rf"is {need:.1f} GiB, more than 50% of the device's 0.5 GiB",
    ):
        fnn.fit(
            BIG, fnn.init(jax.random.key(0), BIG), (x, y), optimizer=name, epochs=1, key=jax.random.key(0)
        )
    memory.check(name, 201, np.float32)  # P = 201 is fine


@pytest.mark.parametrize("name", NEW)
def test_own_step_methods_refuse_weight_decay_and_clipping(name):
    with pytest.raises(ValueError, match=f"{name} chooses its steps for the loss itself"):
        optimizers.get(name, weight_decay=1e-3)
    with pytest.raises(ValueError, match=f"{name} chooses its steps for the loss itself"):
        optimizers.get(name, clip_norm=1.0)


def test_scg_counts_a_failed_step_and_raises_its_scale():
    """A step that would raise the loss (Delta < 0) is not taken and lambda grows."""
    tx = conjugate_gradient.scaled_conjugate_gradient()
    w = jnp.array([1.0, -2.0])
    f = lambda p: jnp.sum(p**2)
    state = tx.init(w)
    # claim a current loss far below the truth: the model's decrease cannot be matched
    step, state = tx.update(2 * w, state, w, value=jnp.asarray(-10.0), value_fn=f)
    assert not bool(state.success) and float(jnp.abs(step).max()) == 0
    assert float(state.lam) > 5e-7
    lam = float(state.lam)
    step, state = tx.update(2 * w, state, w, value=f(w), value_fn=f)  # the truth: a step downhill is taken
    assert bool(state.success) and float(f(w + step)) < float(f(w))
    np.testing.assert_allclose(step / jnp.linalg.norm(step), -w / jnp.linalg.norm(w), rtol=1e-5)  # along -g
    assert float(state.lam) < lam  # the model matched the loss (Delta >= 0.75): lambda / 4


def test_matlabs_comparison_runs_scg_with_exact_curvature_beside_matlabs_rows():
    """``scripts/training_functions.py``'s rows SCG-GN and SCG-H:
    ``fnn.optimizers.scg(curvature="gnvp"|"hvp")``, built once (every trial reuses the compiled
    epoch), reach SIN's goal like MATLAB's SCG; the named methods are still given to ``fnn.fit`` by
    name."""
    from benchmarks import training_functions

    assert list(training_functions.METHODS)[:9] == [
        "LM",
        "BFG",
        "RP",
        "SCG",
        "CGB",
        "CGF",
        "CGP",
        "OSS",
        "GDX",
    ]
    assert (
        training_functions.optimizer("SCG") == "scg"
        and training_functions.optimizer("LM") == "levenberg_marquardt"
    )
    optimizer = training_functions.optimizer
    assert optimizer("SCG-GN") is optimizer("SCG-GN") and optimizer("SCG-H") is not optimizer("SCG-GN")
    assert isinstance(training_functions.optimizer("SCG-H"), optax.GradientTransformationExtraArgs)
    problem = training_functions.sin_problem()
    params = fnn.init(jax.random.key(0), problem.network(), scheme="nguyen_widrow")
    rows = [training_functions.trial(problem, m, params, 2000) for m in ("SCG", "SCG-GN", "SCG-H")]
    for r in rows:
        assert r["reached"] and r["mse"] <= problem.goal and r["epochs"] < 2000, r
    table = training_functions.table(training_functions.summary(rows), {"SIN": problem})
    assert "| SCG | `scg` |" in table
    assert "| SCG-GN | `scg(curvature='gnvp')` |" in table and "| SCG-H | `scg(curvature='hvp')` |" in table
