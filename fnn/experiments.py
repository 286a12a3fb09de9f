"""The experiments behind ``scripts/``: why deep nets fail to train, the 1986 problems, overfitting.

* ``gradient_survey``: per-layer gradient norms of a deep network at
  initialisation, for each init scheme x hidden activation
  (``scripts/vanishing_gradients.py``).
* ``classic``: the problems of Rumelhart, Hinton & Williams (1986), XOR with
  2-2-1, the 8-3-8 encoder and symmetry detection with 6-2-1, trained as in the
  paper, sweeps counted over many seeds (``scripts/classic_experiments.py``).
* ``overfitting``: a big network on a small training set, train and
  validation curves parting, and where early stopping ends the run
  (``scripts/overfitting.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from fnn import diagnostics
from fnn.backprop import backprop_core
from fnn.forward import forward
from fnn.initializers import init
from fnn.network import MLP

# --------------------------------------------------------------------------- vanishing gradients

SURVEY_INITS = ("normal", "small_uniform", "glorot_uniform", "he_normal", "lecun_normal")
SURVEY_ACTIVATIONS = ("sigmoid", "tanh", "relu")


def digits_batch(n: int = 256, seed: int = 0):
    """``n`` standardised digits (64 features) and their labels: the probe batch of the survey."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    x = x[idx].astype(np.float32)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    return x.astype(np.float32), y[idx].astype(np.int32)


def gradient_survey(x, y, *, depth: int = 10, width: int = 32, inits=SURVEY_INITS,
                    activations=SURVEY_ACTIVATIONS, seeds: int = 3) -> list[dict]:
    """Per-layer statistics at initialisation of a ``depth``-layer network for each init x activation.

    The network is ``n_in -> width x (depth - 1) -> n_classes``, softmax and
    cross-entropy. For every combination the per-layer gradient norms are
    averaged geometrically over ``seeds`` initialisations (norms span decades,
    so the geometric mean is the typical value); saturation and dead fractions
    arithmetically. Returns one row per combination with ``grad_norm`` (list,
    first layer first), ``first_over_last = g_1 / g_L``, ``max_over_min``,
    ``saturation`` and ``dead_relu`` (means over the hidden layers).
    """
    n_classes = int(np.max(y)) + 1
    rows = []
    for act in activations:
        net = MLP((x.shape[1], *[width] * (depth - 1), n_classes), activation=act, output="softmax",
                  loss="cross_entropy")
        for scheme in inits:
            stats = [diagnostics.layer_stats(net, init(jax.random.key(s), net, scheme), x, y) for s in range(seeds)]
            g = np.exp(np.mean([np.log(np.maximum(s["grad_norm"], 1e-300)) for s in stats], axis=0))
            sat = np.mean([s["saturation"][:-1] for s in stats])
            dead = np.mean([s["dead_relu"][:-1] for s in stats])
            rows.append({
                "init": scheme, "activation": act, "grad_norm": [float(v) for v in g],
                "first_over_last": float(g[0] / g[-1]), "max_over_min": float(g.max() / g.min()),
                "saturation": float(sat), "dead_relu": float(dead),
            })
    return rows


def survey_table(rows: list[dict]) -> str:
    """The survey as a markdown table."""
    head = ("| init | activation | grad norm layer 1 | grad norm layer L | layer 1 / layer L | max / min "
            "| saturated (hidden) | dead relu (hidden) |\n|---|---|---|---|---|---|---|---|")
    cells = []
    for r in rows:
        pct = lambda v: "–" if math.isnan(v) else f"{100 * v:.0f}%"  # noqa: E731
        cells.append(f"| {r['init']} | {r['activation']} | {r['grad_norm'][0]:.2e} | {r['grad_norm'][-1]:.2e} "
                     f"| {r['first_over_last']:.1e} | {r['max_over_min']:.1e} | {pct(r['saturation'])} "
                     f"| {pct(r['dead_relu'])} |")
    return "\n".join([head, *cells]) + "\n"


def survey_csv(rows: list[dict], path) -> None:
    depth = len(rows[0]["grad_norm"])
    header = ["init", "activation", "first_over_last", "max_over_min", "saturation", "dead_relu"]
    header += [f"grad_norm_{l + 1}" for l in range(depth)]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            vals = [r["init"], r["activation"]] + [repr(r[k]) for k in header[2:6]] + [repr(v) for v in r["grad_norm"]]
            f.write(",".join(vals) + "\n")


def plot_survey(rows: list[dict], path) -> None:
    """One panel per activation: per-layer gradient norm (log scale), one line per init scheme."""
    plt = _pyplot()
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    fig, axes = plt.subplots(1, len(acts), figsize=(4.2 * len(acts), 3.6), dpi=90, sharey=True, squeeze=False)
    for ax, act in zip(axes[0], acts):
        for i, r in enumerate(r for r in rows if r["activation"] == act):
            layers = np.arange(1, len(r["grad_norm"]) + 1)
            ax.plot(layers, r["grad_norm"], marker="o", markersize=3, color=f"C{i}", label=r["init"])
        ax.set_yscale("log")
        ax.set_title(f"{act} hidden layers")
        ax.set_xlabel("layer (1 = next to the input)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("||dL/dW_l|| at initialisation")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- the 1986 problems


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
    """XOR 2-2-1 (eps 0.5), the 8-3-8 encoder (eps 0.1), symmetry 6-2-1 (eps 0.1, as in the Nature paper); alpha 0.9."""
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
        out.append({"W": jax.random.uniform(kw, (n_in, n_out), jnp.float32, -scale, scale),
                    "b": jax.random.uniform(kb, (n_out,), jnp.float32, -scale, scale)})
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
        return jnp.max(jnp.abs(forward(net, params, x)[-1].a - y)) < tol

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
        "name": problem.name, "lr": problem.lr, "momentum": problem.momentum, "seeds": seeds,
        "max_sweeps": max_sweeps, "sweeps": [int(s) for s in ok], "failures": int((~done).sum()),
        "median": float(np.median(ok)) if ok.size else math.nan,
        "min": int(ok.min()) if ok.size else None, "max": int(ok.max()) if ok.size else None,
    }


def classic_table(results: list[dict]) -> str:
    head = ("| problem | eps | alpha | seeds | solved | median sweeps | min | max |\n"
            "|---|---|---|---|---|---|---|---|")
    cells = [f"| {r['name']} | {r['lr']} | {r['momentum']} | {r['seeds']} | {r['seeds'] - r['failures']} "
             f"| {r['median']:.0f} | {r['min']} | {r['max']} |" for r in results]
    return "\n".join([head, *cells]) + "\n"


def plot_classic(results: list[dict], path) -> None:
    """Sweeps to solve each problem, one box (and its points) per problem; failures noted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=90)
    data = [r["sweeps"] or [math.nan] for r in results]
    ax.boxplot(data, showfliers=False)
    for i, s in enumerate(data, start=1):
        jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(s))
        ax.plot(i + jitter, s, "o", color=f"C{i - 1}", alpha=0.6, markersize=4)
    ax.set_xticks(range(1, len(results) + 1),
                  [f"{r['name']}\n{r['seeds'] - r['failures']}/{r['seeds']} solved" for r in results])
    if any(r["sweeps"] for r in results):
        ax.set_yscale("log")
    ax.set_ylabel("sweeps until every output is within 0.1")
    ax.set_title("The 1986 problems: full-batch gradient descent with momentum")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- overfitting


def overfitting(n_train: int = 100, n_val: int = 500, epochs: int = 300, patience: int = 20,
                hidden=(256, 256), seed: int = 0) -> dict:
    """A big relu network on ``n_train`` digits: the history, the best epoch and where early stopping stops.

    Trained for all ``epochs`` without stopping so both curves are seen in
    full; ``stop_epoch`` is where ``fnn.fit(..., patience=patience)`` would
    have stopped (``patience`` epochs without a lower validation loss), and
    ``best_epoch`` the epoch whose params it would have restored.
    """
    from fnn.train import fit

    x, y = digits_batch(n_train + n_val, seed)
    net = MLP((64, *hidden, 10), activation="relu", output="softmax", loss="cross_entropy")
    params = init(jax.random.key(seed), net)
    _, history = fit(net, params, (x[:n_train], y[:n_train]), optimizer="adam", learning_rate=1e-3, epochs=epochs,
                     batch_size=32, key=jax.random.key(seed), validation=(x[n_train:], y[n_train:]))
    return {"history": history, "best_epoch": history.best_epoch,
            "stop_epoch": early_stopping_epoch(history.val_loss, patience), "patience": patience,
            "n_train": n_train, "n_val": n_val}


def early_stopping_epoch(val_loss, patience: int, min_delta: float = 0.0) -> int:
    """The epoch (1-based) at which early stopping with ``patience`` ends the run (the last epoch if never)."""
    best, bad = math.inf, 0
    for e, v in enumerate(val_loss, start=1):
        if v < best - min_delta:
            best, bad = v, 0
        else:
            bad += 1
            if bad >= patience:
                return e
    return len(val_loss)


def plot_overfitting(result: dict, path) -> None:
    """Train and validation loss (log) and accuracy over the epochs, the early-stopping epoch marked."""
    plt = _pyplot()
    h = result["history"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.6), dpi=90)
    ax.plot(h.epoch, h.train_loss, label=f"train ({result['n_train']} examples)")
    ax.plot(h.epoch, h.val_loss, label=f"validation ({result['n_val']} examples)")
    ax.set_yscale("log")
    ax.set_ylabel("cross-entropy loss")
    ax2.plot(h.epoch, h.train_accuracy, label="train")
    ax2.plot(h.epoch, h.val_accuracy, label="validation")
    ax2.set_ylabel("accuracy")
    b, s = result["best_epoch"], result["stop_epoch"]
    for a in (ax, ax2):
        a.axvline(b, color="C2", linestyle="--", linewidth=1, label=f"best validation loss (epoch {b})")
        a.axvline(s, color="C3", linestyle=":", linewidth=1.2,
                  label=f"early stopping, patience {result['patience']} (epoch {s})")
        a.set_xlabel("epoch")
        a.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Overfitting: a 64-256-256-10 network on 100 digits")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
