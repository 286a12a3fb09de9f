"""The problems of Rumelhart, Hinton & Williams (1986): XOR with 2-2-1, the 8-3-8
encoder and symmetry detection with 6-2-1, trained as in the paper, sweeps
counted over many seeds (``scripts/classic_experiments.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core.backprop import backprop_core
from fnn.core.forward import predict_core
from fnn.core.mlp import MLP
from scripts.common import pyplot


def xor_problem():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return x, np.array([[0], [1], [1], [0]], np.float32)


def encoder_problem(n: int = 8):
    """The n-log2(n)-n encoder: each one-hot pattern must be reproduced at the output."""
    x = np.eye(n, dtype=np.float32)
    return x, x.copy()


def symmetry_problem(n: int = 6):
    """All 2^n binary vectors; target 1 when the vector is symmetric about its centre."""
    x = ((np.arange(2**n)[:, None] >> np.arange(n)[::-1]) & 1).astype(np.float32)
    y = np.all(x == x[:, ::-1], axis=1).astype(np.float32)[:, None]
    return x, y


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    sizes: tuple[int, ...]
    data: tuple
    lr: float  # epsilon of the paper, on the error summed over patterns
    momentum: float = 0.9


def classic_problems() -> list[Problem]:
    """XOR 2-2-1 (eps 0.5), the 8-3-8 encoder (eps 0.1), symmetry 6-2-1 (eps 0.1, as in the Nature
    paper); alpha 0.9."""
    return [
        Problem("xor 2-2-1", (2, 2, 1), xor_problem(), 0.5),
        Problem("encoder 8-3-8", (8, 3, 8), encoder_problem(8), 0.1),
        Problem("symmetry 6-2-1", (6, 2, 1), symmetry_problem(6), 0.1),
    ]


def uniform_init(key, net: MLP, scale: float = 0.3) -> list[dict]:
    """Weights and biases ``U(-scale, scale)``, the paper's "random, between -0.3 and 0.3"."""
    keys = jax.random.split(key, net.n_layers)
    out = []
    for k, n_in, n_out in zip(keys, net.sizes[:-1], net.sizes[1:]):
        kw, kb = jax.random.split(k)
        out.append(
            {
                "W": jax.random.uniform(kw, (n_in, n_out), jnp.float32, -scale, scale),
                "b": jax.random.uniform(kb, (n_out,), jnp.float32, -scale, scale),
            }
        )
    return out


@functools.partial(jax.jit, static_argnums=(0, 5))
def _sweeps_to_solve(net: MLP, params, x, y, hyper, max_sweeps: int):
    """Full-batch gradient descent with momentum until every output is within ``tol`` of its target.

    The paper's rule on its error ``E = 1/2 sum_patterns sum_outputs (o - t)^2``:
    ``dw(t) = -eps dE/dw + alpha dw(t-1)``. fnn's mse is ``E / B`` (B patterns),
    so ``dE/dw = B * grad``. Returns ``(sweeps, solved)``.
    """
    lr, momentum, tol = hyper
    batch = x.shape[0]

    def solved(params):
        return jnp.max(jnp.abs(predict_core(net, params, x) - y)) < tol

    def cond(state):
        sweep, _, _, done = state
        return (~done) & (sweep < max_sweeps)

    def body(state):
        sweep, params, velocity, _ = state
        _, grads = backprop_core(net, params, x, y)  # fnn's hand-written backprop
        velocity = jax.tree_util.tree_map(lambda v, g: momentum * v - lr * batch * g, velocity, grads)
        params = jax.tree_util.tree_map(jnp.add, params, velocity)
        return sweep + 1, params, velocity, solved(params)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    sweep, _, _, done = jax.lax.while_loop(cond, body, (jnp.int32(0), params, zeros, solved(params)))
    return sweep, done


def run_classic(problem: Problem, seeds: int = 20, max_sweeps: int = 5000, tol: float = 0.1) -> dict:
    """Train ``problem`` from ``seeds`` initialisations at once (vmapped); sweeps to solve each.

    Returns ``{"name", "sweeps": [...] (solved runs), "failures", "median", "min", "max", "seeds"}``.
    """
    net = MLP(problem.sizes, activation="sigmoid", output="sigmoid", loss="mse")
    x, y = (jnp.asarray(a) for a in problem.data)
    params = jax.vmap(lambda k: uniform_init(k, net))(jax.random.split(jax.random.key(0), seeds))
    hyper = (jnp.float32(problem.lr), jnp.float32(problem.momentum), jnp.float32(tol))
    sweeps, done = jax.vmap(lambda p: _sweeps_to_solve(net, p, x, y, hyper, max_sweeps))(params)
    sweeps, done = np.asarray(sweeps), np.asarray(done)
    ok = sweeps[done]
    return {
        "name": problem.name,
        "lr": problem.lr,
        "momentum": problem.momentum,
        "seeds": seeds,
        "max_sweeps": max_sweeps,
        "sweeps": [int(s) for s in ok],
        "failures": int((~done).sum()),
        "median": float(np.median(ok)) if ok.size else math.nan,
        "min": int(ok.min()) if ok.size else None,
        "max": int(ok.max()) if ok.size else None,
    }


def classic_table(results: list[dict]) -> str:
    head = (
        "| problem | eps | alpha | seeds | solved | median sweeps | min | max |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    cells = [
        f"| {r['name']} | {r['lr']} | {r['momentum']} | {r['seeds']} | {r['seeds'] - r['failures']} "
        f"| {r['median']:.0f} | {r['min']} | {r['max']} |"
        for r in results
    ]
    return "\n".join([head, *cells]) + "\n"


def plot_classic(results: list[dict], path) -> None:
    """Sweeps to solve each problem, one box (and its points) per problem; failures noted."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=90)
    data = [r["sweeps"] or [math.nan] for r in results]
    ax.boxplot(data, showfliers=False)
    for i, s in enumerate(data, start=1):
        jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(s))
        ax.plot(i + jitter, s, "o", color=f"C{i - 1}", alpha=0.6, markersize=4)
    ax.set_xticks(
        range(1, len(results) + 1),
        [f"{r['name']}\n{r['seeds'] - r['failures']}/{r['seeds']} solved" for r in results],
    )
    if any(r["sweeps"] for r in results):
        ax.set_yscale("log")
    ax.set_ylabel("sweeps until every output is within 0.1")
    ax.set_title("The 1986 problems: full-batch gradient descent with momentum")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
