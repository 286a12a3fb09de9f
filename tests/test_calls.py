"""The public functions as a user's loop calls them: they never wait on the device,
check once per signature, and work inside the user's jax.jit, jax.vmap and jax.grad."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.core import dispatch, validation
from fnn.core.backprop import backprop_core

CLF = fnn.MLP((5, 8, 3), "tanh", "softmax", "cross_entropy")
REG = fnn.MLP((5, 8, 2), "tanh", "identity", "mse")
B = 6


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def data(net, dtype=jnp.float32, labels=True):
    kp, kx, ky = jax.random.split(jax.random.key(0), 3)
    params = fnn.init(kp, net, dtype=dtype)
    x = jax.random.normal(kx, (B, net.sizes[0]), dtype)
    if net.loss == "cross_entropy":
        y = jax.random.randint(ky, (B,), 0, net.sizes[-1])
        return params, x, y if labels else jax.nn.one_hot(y, net.sizes[-1], dtype=dtype)
    return params, x, jax.random.normal(ky, (B, net.sizes[-1]), dtype)


def assert_close(got, want, rtol=1e-12):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=1e-14)


# --- no wait on the device -------------------------------------------------------------------


@jax.jit
def _slow(a, rounds):
    """Seconds of matrix products, returning a zero that depends on all of them."""
    m = jax.lax.fori_loop(0, rounds, lambda _, m: jnp.tanh(m @ a), a)
    return jnp.sum(m) * 0


@jax.jit
def _delayed(args, zero):
    return tuple(a + zero.astype(a.dtype) for a in args)


def _rounds_for(seconds: float, a) -> int:
    _slow(a, 1).block_until_ready()  # compiled
    t = time.perf_counter()
    _slow(a, 8).block_until_ready()
    return max(8, int(8 * seconds / (time.perf_counter() - t)))


PENDING = [
    ("backprop", True),
    ("backprop", False),
    ("loss", True),
    ("loss", False),
    ("loss_with_manual_vjp", True),
    ("loss_with_manual_vjp", False),
    ("predict", None),
]


@pytest.mark.parametrize(
    "name,labels",
    PENDING,
    ids=[f"{n}-{'labels' if l else 'one-hot' if l is False else 'x'}" for n, l in PENDING],
)
def test_a_call_returns_before_the_work_that_makes_its_input_ends(name, labels):
    """Queue about a second of device work that produces ``y`` (``x`` for predict),
    call, and find that input still pending when the call has returned: the call
    read no value of it. The result is that of the same call on ready inputs."""
    fn = getattr(fnn, name)
    params, x, y = data(CLF, labels=labels is not False)
    a = jax.random.normal(jax.random.key(3), (384, 384)) / 20
    rounds = _rounds_for(1.0, a)
    args = (x,) if name == "predict" else (x, y)
    want = jax.block_until_ready(fn(CLF, params, *args))  # compiled and checked: the steady call is timed
    jax.block_until_ready(_delayed(args, _slow(a, 1)))
    start = time.perf_counter()
    pending = _delayed(args, _slow(a, rounds))  # the same values, once the work is done
    queued = time.perf_counter()
    got = fn(CLF, params, *pending)
    returned = time.perf_counter()
    still_pending = not pending[-1].is_ready()
    jax.block_until_ready(got)
    done = time.perf_counter()
    print(
        f"{name}: queued in {1e3 * (queued - start):.2f} ms, the call returned after "
        f"{1e3 * (returned - queued):.2f} ms, the work ended {done - start:.2f} s after it was queued"
    )
    assert still_pending, f"{name} returned only after its input was ready"
    assert_close(got, want, rtol=1e-6)


# --- checks once per signature ---------------------------------------------------------------


def test_the_checks_run_once_per_signature(monkeypatch):
    _, x, y = data(CLF)
    net = fnn.MLP((5, 7, 3), "relu", "softmax", "cross_entropy")  # a signature no other test has checked
    params = fnn.init(jax.random.key(1), net)
    runs = []
    check = validation.check
    monkeypatch.setattr(validation, "check", lambda *a, **k: runs.append(1) or check(*a, **k))
    for _ in range(3):
        fnn.backprop(net, params, x, y)
    fnn.backprop(net, params, x[:4], y[:4])
    assert len(runs) == 2
    for _ in range(2):  # host inputs are checked, values included, at every call
        fnn.backprop(net, params, np.asarray(x), np.asarray(y))
    assert len(runs) == 2 + 2 + 1  # and once more, as they reach the program one-hot: a new signature


@pytest.mark.parametrize("labels", [True, False], ids=["labels", "one-hot"])
def test_the_program_behind_a_call_is_the_core_alone(labels):
    """Checks and reshapes leave nothing in the compiled program for inputs of the
    right shape and dtype: it is the jaxpr of the core (with labels: of the core
    after jax.nn.one_hot, as a user's own loss would encode them, and the guard
    that makes its results NaN for a label out of range)."""
    params, x, y = data(CLF, labels=labels)
    program = jax.make_jaxpr(dispatch.program(backprop_core, CLF))(params, x, y)
    encode = (lambda y: validation._one_hot(y, CLF.sizes[-1], x.dtype)) if labels else (lambda y: y)
    guard = validation.guard if labels else (lambda result: result)
    core = jax.make_jaxpr(lambda p, x, y: guard(backprop_core(CLF, p, x, encode(y))))(params, x, y)
    # isnan(loss) as loss != loss: the guard is there with labels, only then
    assert (" = ne " in str(core)) == labels
    assert str(program.jaxpr.eqns[0].params["jaxpr"]) == str(core)


# --- under the user's transformations ----------------------------------------------------------

NETS = {"labels": (CLF, True), "one-hot": (CLF, False), "mse": (REG, None)}


@pytest.mark.parametrize("case", NETS)
def test_under_jit_with_data_as_arguments_and_closed_over(case, x64):
    net, labels = NETS[case]
    params, x, y = data(net, jnp.float64, labels=labels is not False)
    want = fnn.backprop(net, params, x, y)
    assert_close(jax.jit(fnn.backprop, static_argnums=0)(net, params, x, y), want)
    for xs, ys in ((x, y), (np.asarray(x), np.asarray(y))):  # concrete device arrays and NumPy inside a trace
        assert_close(jax.jit(lambda p: fnn.backprop(net, p, xs, ys))(params), want)
        assert_close(jax.jit(lambda p: fnn.loss(net, p, xs, ys))(params), want[0])
        assert_close(jax.jit(lambda p: fnn.loss_with_manual_vjp(net, p, xs, ys))(params), want[0])
        assert_close(jax.jit(lambda p: fnn.predict(net, p, xs))(params), fnn.predict(net, params, x))


@pytest.mark.parametrize("case", NETS)
def test_under_grad_with_data_as_arguments_and_closed_over(case, x64):
    net, labels = NETS[case]
    params, x, y = data(net, jnp.float64, labels=labels is not False)
    _, want = fnn.backprop(net, params, x, y)
    assert_close(jax.grad(fnn.loss, argnums=1)(net, params, x, y), want)
    assert_close(jax.grad(fnn.loss_with_manual_vjp, argnums=1)(net, params, x, y), want)
    for xs, ys in ((x, y), (np.asarray(x), np.asarray(y))):
        assert_close(jax.grad(lambda p: fnn.loss(net, p, xs, ys))(params), want)
        assert_close(jax.grad(lambda p: fnn.loss_with_manual_vjp(net, p, xs, ys))(params), want)
        assert_close(jax.grad(lambda p: fnn.backprop(net, p, xs, ys)[0])(params), want)
    # Through the hand-written backward pass itself: d/dparams of the squared gradient norm.
    sq = lambda grads: sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads))
    ref = jax.grad(lambda p: sq(jax.grad(fnn.loss, argnums=1)(net, p, x, y)))(params)
    assert_close(jax.grad(lambda p: sq(fnn.backprop(net, p, x, y)[1]))(params), ref, rtol=1e-10)


@pytest.mark.parametrize("case", NETS)
def test_under_vmap_with_data_as_arguments_and_closed_over(case, x64):
    net, labels = NETS[case]
    params, x, y = data(net, jnp.float64, labels=labels is not False)
    # Per-example gradients, data mapped as arguments: their mean is the batch gradient.
    per_example = jax.vmap(fnn.backprop, in_axes=(None, None, 0, 0))(net, params, x[:, None], y[:, None])
    loss, grads = fnn.backprop(net, params, x, y)
    assert_close(jnp.mean(per_example[0]), loss)
    assert_close(jax.tree_util.tree_map(lambda g: g.mean(axis=0), per_example[1]), grads)
    manual = jax.vmap(jax.grad(fnn.loss_with_manual_vjp, argnums=1), in_axes=(None, None, 0, 0))
    assert_close(manual(net, params, x[:, None], y[:, None]), per_example[1])
    # An ensemble of params, the data closed over.
    ensemble = [fnn.init(jax.random.key(k), net, dtype=jnp.float64) for k in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ensemble)
    for xs, ys in ((x, y), (np.asarray(x), np.asarray(y))):
        for fn in (fnn.loss, fnn.loss_with_manual_vjp):
            got = jax.vmap(lambda p: fn(net, p, xs, ys))(stacked)
            assert_close(got, jnp.stack([fnn.loss(net, p, x, y) for p in ensemble]))
        got = jax.vmap(lambda p: fnn.backprop(net, p, xs, ys))(stacked)
        assert_close(
            got[1],
            jax.tree_util.tree_map(
                lambda *a: jnp.stack(a), *[fnn.backprop(net, p, x, y)[1] for p in ensemble]
            ),
        )


def test_shape_errors_are_raised_inside_the_users_trace_too():
    params, x, y = data(CLF)
    with pytest.raises(ValueError, match=r"integer labels y must have shape \(6,\), got \(5,\)"):
        jax.jit(lambda p: fnn.backprop(CLF, p, x, y[:5]))(params)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 5\)"):
        jax.vmap(lambda xi: fnn.predict(CLF, params, xi))(x)  # one example of shape (5,) is not guessed at
