"""Shared test helpers: data for a network, and gradient comparisons."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fnn
from fnn.check import gradcheck
from fnn.core import activations, losses

HIDDEN = tuple(n for n in activations.BUILTIN_ACTIVATIONS if activations.get(n).hidden_ok)
OUTPUTS = activations.BUILTIN_ACTIVATIONS
PAIRS = tuple(
    [(out, loss) for out in OUTPUTS for loss in losses.LOSSES]
    + [(out, loss) for loss, out in losses.FUSED_ONLY.items()]
)


# XLA options for test programs that are compiled once and run once: backend
# optimisation off cuts their compile time, which dominates such tests.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def targets(key, loss: str, batch: int, n_out: int, dtype, labels: bool = True):
    """Targets that suit ``loss``: labels or one-hot rows, probabilities, counts, or reals."""
    if loss == "cross_entropy":
        y = jax.random.randint(key, (batch,), 0, n_out)
        return y if labels else jax.nn.one_hot(y, n_out, dtype=dtype)
    if loss == "bce":
        return jax.random.uniform(key, (batch, n_out), dtype)
    if loss == "poisson":
        return jax.random.poisson(key, 1.5, (batch, n_out)).astype(dtype)
    return 0.5 * jax.random.normal(key, (batch, n_out), dtype)


def host_targets(rng, loss: str, batch: int, n_out: int):
    """NumPy targets that suit ``loss``, from the generator ``rng``: labels, probabilities, counts or
    reals."""
    if loss == "cross_entropy":
        return rng.integers(0, n_out, batch)
    if loss == "bce":
        return rng.uniform(0, 1, (batch, n_out))
    if loss == "poisson":
        return rng.poisson(1.5, (batch, n_out)).astype(float)
    return 0.5 * rng.normal(size=(batch, n_out))


def worst_rel_error(grads, refs, loss) -> float:
    """The largest per-leaf ``rel`` of fnn.check_gradients (see fnn/check/gradcheck.py)."""
    tiny = gradcheck.gradient_floor(grads, loss)
    pairs = zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(refs))
    return max(gradcheck.compare(g, r, tiny)[1] for g, r in pairs)


def leaf_norm_error(got, ref) -> float:
    """``||g - r|| / ||r||``: the error relative to the leaf's norm."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), np.finfo(np.float64).tiny))


def worst_norm_error(grads, refs) -> float:
    return max(
        leaf_norm_error(g, r)
        for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(refs))
    )


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str, folder: Path = BENCHMARKS):
    """The script ``folder/name.py`` as a module, to call its ``main(argv)`` in the test process."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- random networks (hypothesis)


@st.composite
def networks(draw):
    n_hidden = draw(st.integers(0, 4))
    sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=n_hidden + 2, max_size=n_hidden + 2)))
    output, loss = draw(st.sampled_from(PAIRS))
    if output == "softmax" and sizes[-1] == 1:
        sizes = sizes[:-1] + (2,)  # a one-class softmax is constant: nothing to learn
    hidden = tuple(draw(st.sampled_from(HIDDEN)) for _ in range(n_hidden))
    scale = draw(st.sampled_from(["glorot", "unit", "small"]))  # the init schemes' three regimes
    return fnn.MLP(sizes, hidden, output, loss), scale


def chain_params(rng, net, scale):
    def std(n_in, n_out):
        return {"glorot": np.sqrt(2 / (n_in + n_out)), "unit": 1.0, "small": 0.05}[scale]

    return [
        {"W": rng.normal(0, std(i, o), (i, o)), "b": rng.normal(0, 0.1, o)}
        for i, o in zip(net.sizes[:-1], net.sizes[1:])
    ]


@st.composite
def graphs(draw):
    """A random graph: each hidden node reads a random non-empty set of earlier nodes, maybe adds a
    residual."""
    n_in = draw(st.integers(1, 5))
    widths, nodes = {"x": n_in}, []
    for j in range(draw(st.integers(0, 4))):
        earlier = list(widths)
        inputs = tuple(
            draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=len(earlier), unique=True))
        )
        residual = draw(st.one_of(st.none(), st.sampled_from(earlier)))
        width = widths[residual] if residual is not None else draw(st.integers(1, 5))
        nodes.append(
            fnn.Dense(
                f"h{j}",
                width,
                draw(st.sampled_from(HIDDEN)),
                inputs=inputs,
                residual=residual,
                dropout=draw(st.sampled_from([0.0, 0.0, 0.4])),
            )
        )
        widths[f"h{j}"] = width
    output, loss = draw(st.sampled_from(PAIRS))
    n_out = draw(st.integers(2 if output == "softmax" else 1, 4))
    read = {i for n in nodes for i in (*n.inputs, n.residual)}
    unread = [n.name for n in nodes if n.name not in read]  # the output reads them, so that every node counts
    chosen = draw(st.lists(st.sampled_from(list(widths)), min_size=1, max_size=len(widths), unique=True))
    inputs = tuple(dict.fromkeys([*chosen, *unread]))
    return fnn.Graph(n_in, (*nodes, fnn.Dense("out", n_out, output, inputs=inputs)), loss)


def with_random_biases(rng, params: dict) -> dict:
    """``params`` with N(0, 0.1) biases: with the init's zero biases a relu node whose inputs are all 0
    has ``z = 0`` exactly, on the kink, where no difference quotient is the derivative."""
    return {name: {**p, "b": p["b"] + rng.normal(0, 0.1, p["b"].shape)} for name, p in params.items()}


def fit_whole_and_resumed(tmp_path, net, data, epochs: int, **kw):
    """``(whole, history, resumed, history)``: ``fnn.fit`` for ``epochs`` at once, and for half of them with a
    checkpoint then resumed from it to ``epochs``, for the resume-is-bit-exact tests."""
    p0 = fnn.init(jax.random.key(0), net)
    whole, h_whole = fnn.fit(net, p0, data, epochs=epochs, **kw)
    path = tmp_path / "ckpt.npz"
    fnn.fit(net, p0, data, epochs=epochs // 2, checkpoint=path, **kw)
    resumed, h_res = fnn.fit(net, p0, data, epochs=epochs, checkpoint=path, resume=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    return whole, h_whole, resumed, h_res


def worst_over_examples(count: int, strategies: tuple, errors) -> list[float]:
    """The largest of each error that ``errors(*example)`` returns, over ``count`` examples drawn from
    ``strategies`` (the slow sweeps that print the worst errors of a property test)."""
    worst = []

    @settings(max_examples=count, deadline=None, database=None)
    @given(st.tuples(*strategies))
    def one(example):
        found = errors(*example)
        worst[:] = map(max, worst or [0.0] * len(found), found)

    one()
    return worst
