"""Curvature by hand (``fnn.hvp``, ``fnn.gnvp``, ``fnn.curvature``) proven in float64.

* ``hvp`` against forward-over-reverse ``jax.jvp(jax.grad(loss))`` on random
  MLPs and random graphs (fan-in, residuals, every hidden activation, every
  (output, loss) pair, dropout under a fixed key, batch 1-16), against the
  dense ``jax.hessian`` where ``P <= 200``, and against central differences
  of the hand-written gradient;
* ``gnvp`` against ``J^T H_L J v`` built from ``jax.jacfwd`` of the logits and
  ``jax.hessian`` of the loss in them, and ``v^T G v >= 0`` where the loss is
  convex in the logits;
* the diagonals against per-example ``vmap(jax.grad)`` and the dense ``G``;
  the Kronecker factors against their definitions;
* nothing in the curvature path calls JAX's differentiation.

Each random example's references and fnn's products are compiled into one
program, with XLA's default options: many programs compiled without its backend
optimisations preceded compiler crashes later in the same test worker.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import chain_params, graphs, host_targets, networks, with_random_biases, worst_over_examples
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import fnn
from fnn.core import activations, dispatch, losses, validation
from fnn.core.curvature import curvature_core, gnvp_core, hvp_core
from fnn.core.forward import loss_core


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


CONVEX_IN_LOGITS = {("identity", "mse"), ("identity", "mae"), ("identity", "huber"), *losses.FUSED}


def _flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0])


def rel(got, ref) -> float:
    """``||got - ref|| / ||ref||`` over every leaf together (0 when both vanish)."""
    got, ref = _flat(got), _flat(ref)
    scale = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / scale) if scale > 0 else float(np.linalg.norm(got))


def _logits(net, params, x, key):
    return net.output_of(net.forward(params, x, key=key))[0]


def _loss_in_logits(net, y):
    """``L(z)``: the batch-mean loss as a function of the output pre-activation."""
    act = activations.get(net.output)
    return lambda z: losses.mean_loss(net.output, net.loss, z, act.fn(z), y)


def gauss_newton_reference(net, params, v, x, y, key):
    """``J^T H_L J v`` from ``jax.jacfwd`` of the logits and ``jax.hessian`` of the loss in them."""
    flat, unravel = ravel_pytree(params)
    z_of = lambda w: _logits(net, unravel(w), x, key).ravel()
    J = jax.jacfwd(z_of)(flat)  # (B n_out, P)
    z = _logits(net, params, x, key)
    H = jax.hessian(lambda zf: _loss_in_logits(net, y)(zf.reshape(z.shape)))(z.ravel())
    return unravel(J.T @ (H @ (J @ ravel_pytree(v)[0])))


@functools.partial(jax.jit, static_argnums=0)
def _products_and_references(net, params, v, x, y, key):
    loss = lambda w: loss_core(net, w, x, y, key)
    forward_over_reverse = jax.jvp(jax.grad(loss), (params,), (v,))[1]
    return (
        hvp_core(net, params, v, x, y, key),
        gnvp_core(net, params, v, x, y, key),
        forward_over_reverse,
        gauss_newton_reference(net, params, v, x, y, key),
    )


def _direction(rng, params):
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)


def floored_rel(got, ref, floor: float) -> float:
    """``||got - ref|| / max(||ref||, floor)``: relative, but not to a product that vanishes below
    ``floor``."""
    got, ref = _flat(got), _flat(ref)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), floor))


def _check_products(net, params, x, y, rng, key=None):
    v = _direction(rng, params)
    (loss, grads, hv), (loss_g, grads_g, gv), ref_hv, ref_gv = _products_and_references(
        net, params, v, x, y, key
    )
    # A product that vanishes (a linear net under mae: 1e-17 on both sides) is rounding against rounding:
    # judged against 1e-3 of the problem's scale ||v|| (1 + |L|) instead of its own size.
    floor = 1e-3 * np.linalg.norm(_flat(v)) * (1 + abs(float(loss)))
    errors = floored_rel(hv, ref_hv, floor), floored_rel(gv, ref_gv, floor)
    assert errors[0] <= 1e-10, "hvp"
    assert errors[1] <= 1e-10, "gnvp"
    # the gradient and loss beside each product: two programs, which XLA may sum in another order (seen:
    # 3.8e-18 relative on a linear 1-2-1-1-1-1 net), so equal up to float64 rounding
    assert rel(grads, grads_g) <= 1e-15 and abs(float(loss) - float(loss_g)) <= 1e-15 * (1 + abs(float(loss)))
    if (net.output, net.loss) in CONVEX_IN_LOGITS:
        assert float(_flat(v) @ _flat(gv)) >= -1e-12 * np.linalg.norm(_flat(v)) ** 2 * max(
            1.0, np.abs(_flat(gv)).max()
        )
    return errors


def _mlp_errors(net_and_scale, batch, seed):
    net, scale = net_and_scale
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, chain_params(rng, net, scale))
        x, y = validation.prepare(
            net, params, rng.normal(size=(batch, net.n_in)), host_targets(rng, net.loss, batch, net.n_out)
        )
        return _check_products(net, params, x, y, rng)


def _graph_errors(net, batch, dropout, seed):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params = with_random_biases(rng, fnn.init(jax.random.key(seed), net, dtype=jnp.float64))
        x, y = validation.prepare(
            net, params, rng.normal(size=(batch, net.n_in)), host_targets(rng, net.loss, batch, net.n_out)
        )
        return _check_products(net, params, x, y, rng, key=jax.random.key(seed + 1) if dropout else None)


MLPS = (networks(), st.integers(1, 16), st.integers(0, 2**31 - 1))
GRAPHS = (graphs(), st.integers(1, 16), st.booleans(), st.integers(0, 2**31 - 1))


@settings(max_examples=15, deadline=None)
@given(*MLPS)
def test_hvp_and_gnvp_equal_jax_on_random_mlps(net_and_scale, batch, seed):
    _mlp_errors(net_and_scale, batch, seed)


@settings(max_examples=12, deadline=None)
@given(*GRAPHS)
def test_hvp_and_gnvp_equal_jax_on_random_graphs(net, batch, dropout, seed):
    _graph_errors(net, batch, dropout, seed)


@pytest.mark.slow
def test_the_worst_errors_over_many_random_networks(capsys):
    """``pytest -m slow -s tests/test_curvature.py -k worst``: 150 MLPs and 150 graphs, the worst
    errors printed."""
    worst = {
        "mlp": worst_over_examples(150, MLPS, _mlp_errors),
        "graph": worst_over_examples(150, GRAPHS, _graph_errors),
    }
    with capsys.disabled():
        for kind, (h, g) in worst.items():
            print(
                f"\nworst rel error over 150 random {kind}s: hvp vs jax.jvp(jax.grad) {h:.2e}, "
                f"gnvp vs J^T H_L J v {g:.2e}"
            )


# ------------------------------------------------------------------------- dense Hessians, finite differences

# the canonical pairs, and residual losses after outputs of each kind (elementwise, softmax, piecewise)
PAIRS = sorted(losses.FUSED) + [("tanh", "mse"), ("softmax", "mse"), ("elu", "huber"), ("sigmoid", "mae")]


def _small(pair, seed=0):
    """A net with P <= 200 for ``pair``, its float64 params (random biases) and data."""
    output, loss = pair
    rng = np.random.default_rng(seed)
    net = fnn.Graph(
        n_in=3,
        nodes=(
            fnn.Dense("h1", 5, "tanh"),
            fnn.Dense("h2", 5, "gelu", inputs=("h1", "x"), residual="h1", dropout=0.3),
            fnn.Dense("out", 3, output, inputs=("h2", "h1")),
        ),
        loss=loss,
    )
    params = with_random_biases(rng, fnn.init(jax.random.key(seed), net, dtype=jnp.float64))
    x, y = validation.prepare(net, params, rng.normal(size=(7, 3)), host_targets(rng, loss, 7, 3))
    return net, params, x, y, rng


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_hvp_is_the_dense_hessian_times_v_and_the_gradients_difference_quotient(pair, x64):
    net, params, x, y, rng = _small(pair)
    key = jax.random.key(3)
    assert net.n_params <= 200
    v = _direction(rng, params)
    # a unit step: eps is the step's length
    v = jax.tree_util.tree_map(lambda t: t / np.linalg.norm(_flat(v)), v)
    _, _, hv = fnn.hvp(net, params, x, y, v, key=key)
    flat, unravel = ravel_pytree(params)
    hessian = jax.jit(jax.hessian(lambda w: loss_core(net, unravel(w), x, y, key)))
    assert rel(hv, unravel(hessian(flat) @ _flat(v))) <= 1e-10
    eps = 1e-5  # central differences of the hand-written gradient: error O(eps^2) + O(rounding / eps)
    shifted = lambda s: fnn.backprop(
        net,
        jax.tree_util.tree_map(lambda p, t: p + s * t, params, v),
        x,
        y,
        key=key,
    )[1]
    difference = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), shifted(eps), shifted(-eps))
    assert rel(hv, difference) <= 1e-6


# ------------------------------------------------------------------------- diagonals and Kronecker factors


def _per_example_grads(net, params, x, y, key=None):
    """``g_n``: the gradient of example ``n``'s own loss, by ``vmap(jax.grad)``; leaves ``(B, *shape)``."""
    one = lambda xn, yn: jax.grad(lambda w: loss_core(net, w, xn[None], yn[None], key))(params)
    return jax.vmap(one)(x, y)


NETS = {
    "mlp-softmax": (fnn.MLP((4, 6, 5, 3), ("tanh", "relu"), "softmax", "cross_entropy"), "cross_entropy"),
    "mlp-sigmoid-bce": (fnn.MLP((4, 6, 2), "gelu", "sigmoid", "bce"), "bce"),
    "mlp-sigmoid-mse": (fnn.MLP((4, 6, 2), "elu", "sigmoid", "mse"), "mse"),
    "graph-poisson": (
        fnn.Graph(
            n_in=4,
            nodes=(fnn.Dense("h", 6, "softplus"), fnn.Dense("out", 2, "exp", inputs=("h", "x"))),
            loss="poisson",
        ),
        "poisson",
    ),
}


def _problem(name, batch=9):
    net, loss = NETS[name]
    rng = np.random.default_rng(1)
    params = fnn.init(jax.random.key(1), net, dtype=jnp.float64)
    x, y = validation.prepare(
        net, params, rng.normal(size=(batch, net.n_in)), host_targets(rng, loss, batch, net.n_out)
    )
    return net, params, x, y


@pytest.mark.parametrize("name", NETS)
def test_the_diagonals(name, x64):
    net, params, x, y = _problem(name)
    c = fnn.curvature(net, params, x, y)
    per_example = _per_example_grads(net, params, x, y)
    fisher = jax.tree_util.tree_map(lambda g: jnp.mean(g * g, axis=0), per_example)  # (1/B) sum_n g_n^2
    assert rel(c.empirical_fisher_diag(), fisher) <= 1e-12
    flat, unravel = ravel_pytree(params)
    eye = jnp.eye(flat.size)
    dense_g = jax.vmap(lambda e: ravel_pytree(c.gnvp(unravel(e)))[0])(eye)  # gnvp is proven against JAX above
    reference = gauss_newton_reference(net, params, unravel(eye[0]), x, y, None)
    assert rel(unravel(dense_g[0]), reference) <= 1e-10
    assert rel(c.gauss_newton_diag(), unravel(jnp.diag(dense_g))) <= 1e-10
    key = jax.random.key(5)  # the sampled Fisher: the empirical formula at targets drawn as the model says
    z, a = net.output_of(net.forward(params, x))
    sampled = losses.sample_targets(key, net.output, net.loss, z, a)
    g_sampled = _per_example_grads(net, params, x, sampled)
    assert (
        rel(c.sampled_fisher_diag(key), jax.tree_util.tree_map(lambda g: jnp.mean(g * g, axis=0), g_sampled))
        <= 1e-12
    )


def test_the_sampled_fisher_averages_to_the_gauss_newton_diagonal(x64):
    """For a canonical pair the Fisher is the Gauss-Newton matrix: the mean over many keys approaches it."""
    net, params, x, y = _problem("mlp-softmax", batch=5)
    c = fnn.curvature(net, params, x, y)

    # of the mean of n draws: Monte-Carlo, shrinking as 1/sqrt(n) (0.024, 0.010, 0.004 measured)
    def error(
        n,
    ):
        draws = jax.vmap(c.sampled_fisher_diag)(jax.random.split(jax.random.key(0), n))
        return rel(jax.tree_util.tree_map(lambda d: d.mean(axis=0), draws), c.gauss_newton_diag())

    few, many = error(250), error(4000)
    assert many <= 0.015 and many < few / 2


def test_the_kronecker_factors_are_their_definitions(x64):
    net, params, x, y = _problem("mlp-softmax")
    key = jax.random.key(2)
    factors = fnn.curvature(net, params, x, y).kronecker_factors(key)
    # a_0 = x, a_l = f_l(a_{l-1} W_l + b_l): the layers' inputs, computed here from the definition
    hidden = [x]
    for layer, act in zip(params[:-1], net.activation):
        hidden.append(activations.get(act).fn(hidden[-1] @ layer["W"] + layer["b"]))
    z, a = net.output_of(net.forward(params, x))
    sampled = losses.sample_targets(key, net.output, net.loss, z, a)
    g_b = _per_example_grads(net, params, x, sampled)  # a bias's per-example gradient is dl_n/dz: the delta
    batch = x.shape[0]
    for (_name, f), a_in, layer in zip(factors, hidden, g_b):
        np.testing.assert_allclose(f["A"], a_in.T @ a_in / batch, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(f["G"], layer["b"].T @ layer["b"] / batch, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------- the public functions


def test_curvature_inside_a_users_jit_and_as_a_pytree(x64):
    net, params, x, y = _problem("graph-poisson")
    v = _direction(np.random.default_rng(0), params)

    @jax.jit
    def products(params, v):
        c = fnn.curvature(net, params, x, y)
        return c, c.hvp(v), c.gnvp(v)

    c, hv, gv = products(params, v)
    loss, grads, hv_ref = fnn.hvp(net, params, x, y, v)
    assert rel(hv, hv_ref) <= 1e-13 and rel(gv, fnn.gnvp(net, params, x, y, v)[2]) <= 1e-13
    assert float(c.loss) == pytest.approx(float(loss), rel=1e-14) and rel(c.grads, grads) <= 1e-13
    assert rel(c.hvp(v), hv_ref) <= 1e-13  # the returned pytree keeps working outside the jit


def test_the_curvature_path_calls_no_jax_differentiation(monkeypatch):
    import jax._src.interpreters.ad as ad

    def forbidden(*args, **kwargs):
        raise AssertionError("the curvature path called JAX differentiation")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "jacrev", "jacfwd", "hessian"):
        monkeypatch.setattr(jax, name, forbidden)
    for name in ("JVPTrace", "LinearizeTrace", "jvp", "linearize"):
        monkeypatch.setattr(ad, name, forbidden)
    net = fnn.Graph(
        n_in=3,
        nodes=(fnn.Dense("h", 4, "tanh", dropout=0.2), fnn.Dense("out", 2, "softmax", inputs=("h", "x"))),
        loss="cross_entropy",
    )
    params = fnn.init(jax.random.key(0), net)
    x, y, v, key = jnp.ones((5, 3)), jax.nn.one_hot(jnp.zeros((5,), jnp.int32), 2), params, jax.random.key(1)
    for core in (hvp_core, gnvp_core):
        assert "dot_general" in str(jax.make_jaxpr(core, static_argnums=0)(net, params, v, x, y, key))

    def everything(params, v, key):
        c = curvature_core(net, params, x, y)
        return (
            c.hvp(v),
            c.gnvp(v),
            c.empirical_fisher_diag(),
            c.gauss_newton_diag(),
            c.sampled_fisher_diag(key),
            [f for _, f in c.kronecker_factors(key)],
        )

    assert "eigh" in str(jax.make_jaxpr(everything)(params, v, key))
    with pytest.raises(AssertionError, match="called JAX differentiation"):  # and the block works
        jax.make_jaxpr(jax.grad(loss_core, argnums=1), static_argnums=0)(net, params, x, y)


def test_bad_directions_and_missing_second_derivatives_are_named():
    net = fnn.MLP((3, 4, 2), "tanh", "softmax", "cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    x, y = jnp.ones((5, 3)), jnp.zeros((5,), jnp.int32)
    with pytest.raises(ValueError, match=r"v must be shaped like the params: v has 1 layers"):
        fnn.hvp(net, params, x, y, params[:1])
    with pytest.raises(TypeError, match="v must have the params' dtype float32, got float16"):
        fnn.gnvp(net, params, x, y, jax.tree_util.tree_map(lambda p: p.astype(jnp.float16), params))
    shape = lambda z: z / (1 + z * z) ** (1 / 3)
    fnn.register_activation("cube_root_ish", shape, jnp.vectorize(jax.grad(shape)), overwrite=True)
    odd = fnn.MLP((3, 4, 2), "cube_root_ish", "softmax", "cross_entropy")
    p_odd = fnn.init(jax.random.key(0), odd)
    with pytest.raises(ValueError, match="activation 'cube_root_ish' has no second derivative"):
        fnn.hvp(odd, p_odd, x, y, p_odd)
    assert np.isfinite(float(fnn.gnvp(odd, p_odd, x, y, p_odd)[0]))  # Gauss-Newton needs no f''


def test_register_activation_checks_the_second_derivative():
    f = lambda z: jnp.tanh(z) * z
    d = lambda z: jnp.tanh(z) + z * (1 - jnp.tanh(z) ** 2)
    d2 = lambda z: 2 * (1 - jnp.tanh(z) ** 2) * (1 - z * jnp.tanh(z))
    fnn.register_activation("ztanh", f, d, second_derivative=d2, overwrite=True)
    assert activations.get("ztanh").second_derivative is not None
    with pytest.raises(ValueError, match="second derivative of activation 'ztanh2' disagrees with jax.grad"):
        fnn.register_activation("ztanh2", f, d, second_derivative=lambda z: 2 * d2(z), overwrite=True)


def test_labels_out_of_range_make_the_products_nan():
    net = fnn.MLP((3, 4, 2), "relu", "softmax", "cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    x, y = jax.random.normal(jax.random.key(1), (5, 3)), jnp.asarray([0, 1, 0, 2, 1])
    for fn in (fnn.hvp, fnn.gnvp):
        loss, grads, product = fn(net, params, x, y, params)
        assert np.isnan(float(loss)) and np.isnan(_flat(product)).all() and np.isnan(_flat(grads)).all()


def test_check_curvature_passes_and_catches_a_wrong_second_derivative(monkeypatch):
    def net(width):
        return fnn.Graph(
            n_in=3,
            nodes=(
                fnn.Dense("h", width, "tanh"),
                fnn.Dense("h2", width, "sigmoid", inputs=("h", "x"), residual="h"),
                fnn.Dense("out", 3, "softmax", inputs=("h2",)),
            ),
            loss="cross_entropy",
        )

    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.arange(8) % 3
    report = fnn.check_curvature(net(5), fnn.init(jax.random.key(0), net(5)), x, y)
    assert report.passed, str(report)
    assert report.hvp.worst("autodiff").rel <= 1e-12 and report.hvp.worst("finite_differences").rel <= 1e-7
    assert "Gauss-Newton product (fnn.gnvp) check in float64" in str(report)
    # a second derivative off by a factor: the hvp rows fail, the gnvp rows do not
    tanh = activations.get("tanh")
    monkeypatch.setattr(dispatch, "_SHARED", {})  # the programs compiled with it go when the test ends
    monkeypatch.setitem(
        activations.ACTIVATIONS,
        "tanh",
        tanh._replace(second_derivative=lambda z, a: 1.5 * tanh.second_derivative(z, a)),
    )
    wrong = fnn.check_curvature(net(6), fnn.init(jax.random.key(0), net(6)), x, y)  # a new net: new programs
    assert not wrong.hvp.passed and wrong.gnvp.passed
