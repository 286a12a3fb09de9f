"""The optimizers: every one lowers the loss; the hand-written pieces behave as documented."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn import optimizers
from fnn.core.forward import predict_core
from fnn.core.validation import prepare
from fnn.training.epoch import learning_rate
from fnn.training.objective import MinibatchObjective


def _regression_problem(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    y = np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 1])], axis=1).astype(np.float32)
    return x, y


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_every_optimizer_lowers_the_loss(name):
    x, y = _regression_problem()
    net = fnn.MLP((3, 8, 2), activation="tanh")
    params = fnn.init(jax.random.key(0), net)
    before = float(fnn.loss(net, params, x, y))
    batch = 16 if not optimizers.spec(name).full_batch else None
    trained, history = fnn.fit(
        net, params, (x, y), optimizer=name, epochs=20, batch_size=batch, key=jax.random.key(1)
    )
    after = float(fnn.loss(net, trained, x, y))
    assert len(history) >= 1
    assert np.isfinite(after)
    assert after < 0.9 * before, (name, before, after)


def test_lm_jacobian_matches_jax_and_gives_the_gradient():
    """The hand-written per-example Jacobian equals jax.jacrev's (a test-only reference), and
    J^T e / B = grad."""
    for output in ("sigmoid", "softmax"):
        net = fnn.MLP((3, 5, 4, 2), activation=("tanh", "relu"), output=output, loss="mse")
        params = fnn.init(jax.random.key(2), net)
        x, y = _regression_problem(10)
        x, y = prepare(net, params, x, y)
        e, J = jax.jit(optimizers.residuals_and_jacobian, static_argnums=0)(net, params, x, y)  # one compile
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        residual = lambda f: (predict_core(net, unravel(f), x) - y).reshape(-1)
        np.testing.assert_allclose(e, jax.jit(residual)(flat), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(J, jax.jit(jax.jacrev(residual))(flat), rtol=1e-4, atol=1e-5)
        _, grads = fnn.backprop(net, params, x, y)
        np.testing.assert_allclose(
            J.T @ e / x.shape[0], jax.flatten_util.ravel_pytree(grads)[0], rtol=1e-4, atol=1e-6
        )


def test_lm_rejects_cross_entropy():
    net = fnn.MLP((4, 8, 3), output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    x = np.zeros((5, 4), np.float32)
    y = np.zeros(5, np.int32)
    for name in ("levenberg_marquardt", "br"):
        with pytest.raises(
            ValueError, match=f"{name} minimises a sum of squared residuals and needs loss='mse'"
        ):
            fnn.fit(net, params, (x, y), optimizer=name, epochs=1, key=jax.random.key(0))


def test_lm_mu_adapts_and_stops_at_mu_max():
    x, y = _regression_problem(32)
    net = fnn.MLP((3, 4, 2))
    params = fnn.init(jax.random.key(0), net)
    trained, h = fnn.fit(
        net, params, (x, y), optimizer="levenberg_marquardt", epochs=3, key=jax.random.key(0)
    )
    # mu moves by powers of ten from 1e-3, and every accepted step lowered the loss
    for m in h.mu:
        assert np.log10(m) == pytest.approx(round(np.log10(m)), abs=1e-4)
    assert h.train_loss[2] < h.train_loss[1] < h.train_loss[0]
    tx = optimizers.levenberg_marquardt(mu=1e-3, mu_max=0.05)
    xx, yy = prepare(net, params, x, y)
    obj = MinibatchObjective(net, xx, yy)
    state = tx.init(params)
    # Claim a current loss of -1 that no step can beat: mu grows x10 past mu_max and the update is zero.
    upd, state = tx.update(None, state, params, value=jnp.asarray(-1.0), value_fn=obj)
    assert float(state.mu) == pytest.approx(0.1, rel=1e-5)
    assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree_util.tree_leaves(upd))


def test_adaptive_lr_rejects_a_step_that_raises_the_loss():
    tx = optimizers.adaptive_lr(0.1)
    params = {"w": jnp.array([1.0])}
    f = lambda p: jnp.sum(p["w"] ** 2)
    state = tx.init(params)
    # a good step: loss falls, lr x1.05
    upd, state = tx.update({"w": jnp.array([2.0])}, state, params, value=f(params), value_fn=f)
    assert float(upd["w"][0]) == pytest.approx(-0.2)
    assert float(state.learning_rate) == pytest.approx(0.105)
    # a far too large gradient: the step would raise the loss by > 4%, so it is rejected and lr x0.7
    upd, state = tx.update({"w": jnp.array([100.0])}, state, params, value=f(params), value_fn=f)
    assert float(upd["w"][0]) == 0.0
    assert bool(state.rejected)
    assert float(state.learning_rate) == pytest.approx(0.105 * 0.7)


def test_options_weight_decay_clipping_and_schedules():
    params = {"w": jnp.array([3.0, 4.0])}
    tx = optimizers.get("sgd", 1.0, clip_norm=1.0)
    upd, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.6, -0.8], rtol=1e-6)
    tx = optimizers.get("sgd", 0.5, weight_decay=0.1)
    upd, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.15, -0.2], rtol=1e-6)
    schedule = optax.linear_schedule(1.0, 0.0, 10)
    tx = optimizers.get("momentum", schedule, nesterov=True)
    state = tx.init(params)
    for _ in range(5):
        _, state = tx.update({"w": jnp.ones(2)}, state, params)
    assert float(learning_rate(state)) == pytest.approx(0.6)  # the rate of the 5th step, schedule(4)


@pytest.mark.parametrize("bad", [-1e-3, 0.0, float("nan")])
def test_bad_learning_rate(bad):
    with pytest.raises(ValueError, match="learning rate must be a positive"):
        optimizers.get("adam", bad)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optimizers.get("adamw")


def test_custom_optax_transform_is_accepted():
    x, y = _regression_problem()
    net = fnn.MLP((3, 8, 2))
    params = fnn.init(jax.random.key(0), net)
    trained, h = fnn.fit(
        net, params, (x, y), optimizer=optax.adamw(1e-2), epochs=5, batch_size=16, key=jax.random.key(0)
    )
    assert h.train_loss[-1] < h.train_loss[0]
