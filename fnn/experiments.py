"""The experiments behind ``scripts/``: why deep nets fail to train, the 1986 problems, overfitting.

* ``gradient_survey``: per-layer gradient norms of a deep network at
  initialisation, for each init scheme x hidden activation
  (``scripts/vanishing_gradients.py``).
* ``classic``: the problems of Rumelhart, Hinton & Williams (1986), XOR with
  2-2-1, the 8-3-8 encoder and symmetry detection with 6-2-1, trained as in the
  paper, sweeps counted over many seeds (``scripts/classic_experiments.py``).
* ``overfitting``: a big network on a small training set, train and
  validation curves parting, and where early stopping ends the run; with
  and without dropout (``dropout_comparison``) (``scripts/overfitting.py``).
* ``residual_depth``: plain chains against residual nets of the same width
  and depth, 8 to 64 hidden layers, on digits: the gradient ratio at
  initialisation and the test accuracy after the same training budget
  (``scripts/residual_depth.py``).
* ``bayesian_regularisation``: an oversized network on a few noisy samples
  of a sine, trained by Levenberg-Marquardt and by Bayesian regularisation
  (``br``); the error of each fit against the noise-free function
  (``scripts/bayesian_regularisation.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fnn import diagnostics
from fnn.backprop import backprop_core
from fnn.forward import predict_core
from fnn.graph import Graph
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
                hidden=(256, 256), seed: int = 0, dropout: float = 0.0) -> dict:
    """A big relu network on ``n_train`` digits: the history, the best epoch and where early stopping stops.

    Trained for all ``epochs`` without stopping so both curves are seen in
    full; ``stop_epoch`` is where ``fnn.fit(..., patience=patience)`` would
    have stopped (``patience`` epochs without a lower validation loss), and
    ``best_epoch`` the epoch whose params it would have restored. ``dropout``
    is the dropout rate of every hidden layer (active in training only; the
    validation loss is that of the whole network).
    """
    from fnn.train import fit

    x, y = digits_batch(n_train + n_val, seed)
    net = MLP((64, *hidden, 10), activation="relu", output="softmax", loss="cross_entropy", dropout=dropout)
    params = init(jax.random.key(seed), net)
    _, history = fit(net, params, (x[:n_train], y[:n_train]), optimizer="adam", learning_rate=1e-3, epochs=epochs,
                     batch_size=32, key=jax.random.key(seed), validation=(x[n_train:], y[n_train:]))
    return {"history": history, "best_epoch": history.best_epoch,
            "stop_epoch": early_stopping_epoch(history.val_loss, patience), "patience": patience,
            "n_train": n_train, "n_val": n_val, "dropout": dropout}


def dropout_comparison(rate: float = 0.5, **kwargs) -> list[dict]:
    """``overfitting`` without and with dropout ``rate``: same network, data, init and shuffling (``kwargs``)."""
    return [overfitting(dropout=p, **kwargs) for p in (0.0, rate)]


def best_validation(result: dict) -> dict:
    """The headline numbers of one ``overfitting`` run: its best validation epoch, loss and accuracy, its end."""
    h, b = result["history"], result["best_epoch"]
    return {"dropout": result["dropout"], "best_epoch": b, "best_val_loss": h.val_loss[b - 1],
            "best_val_accuracy": h.val_accuracy[b - 1], "stop_epoch": result["stop_epoch"], "epochs": len(h),
            "final_train_loss": h.train_loss[-1], "final_val_loss": h.val_loss[-1],
            "final_val_accuracy": h.val_accuracy[-1]}


def curves_rows(results: list[dict]) -> list[dict]:
    """One row per epoch: train and validation loss and accuracy of each run, suffixed by its dropout rate."""
    cols = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    rows = [{"epoch": e} for e in results[0]["history"].epoch]
    for r in results:
        for row, *vals in zip(rows, *(getattr(r["history"], c) for c in cols)):
            row.update({f"{c}_dropout{r['dropout']:g}": v for c, v in zip(cols, vals)})
    return rows


def plot_dropout(results: list[dict], path) -> None:
    """Validation loss (log) and accuracy per epoch of each run of ``dropout_comparison``, best epochs marked."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.6), dpi=90)
    for i, r in enumerate(results):
        h, b, name = r["history"], r["best_epoch"], dropout_label(r["dropout"])
        ax.plot(h.epoch, h.val_loss, color=f"C{i}", label=f"validation, {name}")
        ax.plot(h.epoch, h.train_loss, color=f"C{i}", linestyle=":", linewidth=1, label=f"train, {name}")
        ax.plot(b, h.val_loss[b - 1], "o", color=f"C{i}", label=f"best {h.val_loss[b - 1]:.3f} (epoch {b})")
        ax2.plot(h.epoch, h.val_accuracy, color=f"C{i}", label=f"validation, {name}")
    ax.set_yscale("log")
    ax.set_ylabel("cross-entropy loss")
    ax2.set_ylabel("validation accuracy")
    for a in (ax, ax2):
        a.set_xlabel("epoch")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7)
    r = results[0]
    fig.suptitle(f"Dropout on the hidden layers: 64-256-256-10 on {r['n_train']} digits, "
                 f"validated on {r['n_val']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def dropout_label(p: float) -> str:
    """``"dropout 0.5"``, or ``"no dropout"`` for 0: the name of a run in the figures and the printout."""
    return f"dropout {p:g}" if p else "no dropout"


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


# --------------------------------------------------------------------------- plain vs residual, by depth

DEPTHS = (8, 16, 32, 64)
DEPTH_ACTIVATIONS = ("sigmoid", "tanh", "relu")
KINDS = ("plain", "residual")
RATIO_FLOOR = 1e-40  # where a ratio that underflowed to 0 in float32 is drawn on the log axis


@dataclasses.dataclass(frozen=True)
class Budget:
    """The training budget every net of ``residual_depth`` gets: the same optimizer, steps and batches.

    Adam at 1e-3, batch 64, 30 epochs: 570 steps on the 1212 training digits.
    That is enough for the depth-8 tanh and relu nets of both kinds to fit
    the training set (last-epoch loss below 0.003), and it is one ordinary
    recipe, not tuned per depth or kind, so what a deeper net loses is what
    its depth costs under a fixed budget; He et al. (2016) likewise trained
    their plain and residual nets with one recipe. Adam rather than SGD: it
    scales each parameter's step by its gradient's running size, so small but
    non-zero gradients still move a plain net, the stronger baseline for it.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"


def depth_net(kind: str, activation: str, depth: int, width: int = 64, n_in: int = 64, n_out: int = 10) -> Graph:
    """``depth`` hidden layers of ``width`` units, softmax and cross-entropy: a plain chain or ``Graph.residual``.

    Both have the same weight shapes (``n_in -> width``, ``depth - 1`` times
    ``width -> width``, ``width -> n_out``), so the same parameter count and
    the same initial weights from the same key; the residual net adds the
    identity around each of its ``depth - 1`` width-to-width layers.
    """
    if kind == "plain":
        return Graph.chain((n_in, *[width] * depth, n_out), activation, "softmax", "cross_entropy")
    if kind == "residual":
        return Graph.residual(n_in, width, depth, n_out, activation, "softmax", "cross_entropy")
    raise ValueError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")


def hidden_gradient_ratio(net: Graph, params, x, y) -> dict:
    """``||dL/dθ||`` of the first hidden layer over that of the last, on ``(x, y)``.

    "First" is the node fed by the input (``layer1`` / ``h1``), "last" the
    hidden node that feeds the output (the node before it): the output layer
    itself is left out, so plain and residual nets are measured on the same
    ``depth`` hidden layers. A ratio far below 1 is a vanishing gradient.
    """
    g = diagnostics.layer_stats(net, params, x, y)["grad_norm"]
    first, last = float(g[0]), float(g[len(net.nodes) - 2])
    return {"grad_first": first, "grad_last": last, "grad_ratio": first / last if last > 0 else math.nan}


def depth_run(kind: str, activation: str, depth: int, splits, *, width: int = 64, seed: int = 0,
              budget: Budget = Budget()) -> dict:
    """One net of ``depth_net``: its gradient ratio at initialisation (on the probe batch), then its test
    loss and accuracy after training for ``budget`` from ``jax.random.key(seed)`` (init and shuffling)."""
    from fnn.train import evaluate, fit

    net = depth_net(kind, activation, depth, width, splits.train.x.shape[1], int(splits.train.y.max()) + 1)
    params = init(jax.random.key(seed), net)
    row = {"kind": kind, "activation": activation, "depth": depth, "width": width, "seed": seed,
           **hidden_gradient_ratio(net, params, *diagnostics.probe_batch(splits.train.x, splits.train.y))}
    params, history = fit(net, params, (splits.train.x, splits.train.y), optimizer=budget.optimizer,
                          learning_rate=budget.learning_rate, epochs=budget.epochs, batch_size=budget.batch_size,
                          key=jax.random.key(seed))
    test = evaluate(net, params, splits.test.x, splits.test.y)
    return {**row, "train_loss": history.train_loss[-1], "test_loss": test["loss"],
            "test_accuracy": test["accuracy"]}


def residual_depth(splits, *, activations=DEPTH_ACTIVATIONS, depths=DEPTHS, width: int = 64, seeds: int = 3,
                   budget: Budget = Budget(), progress=None) -> list[dict]:
    """``depth_run`` for every activation x depth x kind x seed (seeds ``0 .. seeds - 1``): one row each.

    ``splits`` is ``fnn.data.prepare``'s; ``progress``, if given, is called
    with each row as it is done.
    """
    rows = []
    for act, depth, kind, seed in itertools.product(activations, depths, KINDS, range(seeds)):
        rows.append(depth_run(kind, act, depth, splits, width=width, seed=seed, budget=budget))
        if progress:
            progress(rows[-1])
    return rows


# What depth_summary averages over the seeds, and how: ratios and losses span decades, so geometrically.
SUMMARISED = {"test_accuracy": "arithmetic", "train_loss": "geometric", "grad_ratio": "geometric"}


def depth_summary(rows: list[dict]) -> list[dict]:
    """One row per activation x depth x kind over the seeds: for each key ``m`` of ``SUMMARISED`` (test
    accuracy, final training loss, gradient ratio at init) ``m_mean`` (the mean ``SUMMARISED`` names; a
    geometric mean is 0 when any seed underflowed to 0), ``m_min`` and ``m_max``."""
    groups = {}
    for r in rows:
        groups.setdefault((r["activation"], r["depth"], r["kind"]), []).append(r)
    out = []
    for (act, depth, kind), rs in groups.items():
        row = {"activation": act, "depth": depth, "kind": kind, "seeds": len(rs)}
        for m, mean in SUMMARISED.items():
            v = np.array([r[m] for r in rs], np.float64)
            with np.errstate(divide="ignore"):
                row[f"{m}_mean"] = float(v.mean() if mean == "arithmetic" else np.exp(np.mean(np.log(v))))
            row[f"{m}_min"], row[f"{m}_max"] = float(v.min()), float(v.max())
        out.append(row)
    return out


def depth_table(summary: list[dict]) -> str:
    """The summary as a markdown table: a row per activation x depth, plain and residual side by side."""
    by = {(s["activation"], s["depth"], s["kind"]): s for s in summary}
    head = ("| activation | depth | plain test acc. | residual test acc. | plain train loss | residual train loss "
            "| plain grad ratio | residual grad ratio |\n|---|---|---|---|---|---|---|---|")
    cells = []
    for act, depth in dict.fromkeys((s["activation"], s["depth"]) for s in summary):
        p, r = by[act, depth, "plain"], by[act, depth, "residual"]
        cells.append(f"| {act} | {depth} | {_accuracy_cell(p)} | {_accuracy_cell(r)} "
                     f"| {p['train_loss_mean']:.2g} | {r['train_loss_mean']:.2g} "
                     f"| {_ratio_cell(p['grad_ratio_mean'])} | {_ratio_cell(r['grad_ratio_mean'])} |")
    return "\n".join([head, *cells]) + "\n"


def _accuracy_cell(s: dict) -> str:
    spread = f" ({s['test_accuracy_min']:.3f}-{s['test_accuracy_max']:.3f})" if s["seeds"] > 1 else ""
    return f"{s['test_accuracy_mean']:.3f}{spread}"


def _ratio_cell(v: float) -> str:
    return "0 (underflow)" if v == 0 else f"{v:.1e}"


_DEPTH_PANELS = (("test_accuracy", "test accuracy after training", "linear"),
                 ("train_loss", "training loss, last epoch", "log"),
                 ("grad_ratio", "||grad first hidden|| / ||grad last hidden||\nat initialisation", "log"))


def plot_depth(summary: list[dict], path) -> None:
    """Per activation (columns): test accuracy, last-epoch training loss and first/last hidden gradient ratio
    at init vs depth (rows); plain dashed, residual solid, the band the seeds' min to max."""
    plt = _pyplot()
    acts = list(dict.fromkeys(s["activation"] for s in summary))
    depths = sorted({s["depth"] for s in summary})
    fig, axes = plt.subplots(3, len(acts), figsize=(4.2 * len(acts), 8.4), dpi=90, sharex=True, squeeze=False)
    for (m, label, scale), row in zip(_DEPTH_PANELS, axes):
        for ax, act in zip(row, acts):
            for i, kind in enumerate(KINDS):
                ss = sorted((s for s in summary if s["activation"] == act and s["kind"] == kind),
                            key=lambda s: s["depth"])
                d = [s["depth"] for s in ss]
                mean, lo, hi = ([max(s[f"{m}_{k}"], RATIO_FLOOR) for s in ss] for k in ("mean", "min", "max"))
                ax.plot(d, mean, color=f"C{i}", linestyle="--" if kind == "plain" else "-", marker="o",
                        markersize=4, label=kind)
                ax.fill_between(d, lo, hi, color=f"C{i}", alpha=0.15)
            ax.set_yscale(scale)
            ax.grid(True, alpha=0.3)
        row[0].set_ylabel(label)
    for ax, act in zip(axes[0], acts):
        ax.set_title(f"{act} hidden layers")
        ax.set_ylim(0, 1.02)
    for ax in axes[-1]:
        ax.axhline(1, color="gray", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlabel("hidden layers (depth)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Plain (dashed) vs residual (solid) nets on digits, width 64, the same budget "
                 f"(ratios below {RATIO_FLOOR:.0e}: underflow)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- Bayesian regularisation


def noisy_sine(n: int = 41, noise: float = 0.1, seed: int = 0):
    """``sin(2 pi x)`` at ``n`` points of [-1, 1] plus N(0, noise^2) (MATLAB's ``trainbr`` example)."""
    x = np.linspace(-1, 1, n)[:, None]
    y = np.sin(2 * np.pi * x) + noise * np.random.default_rng(seed).normal(size=x.shape)
    return x.astype(np.float32), y.astype(np.float32)


def bayesian_regularisation(hidden: int = 20, n: int = 41, noise: float = 0.1, epochs: int = 500,
                            seed: int = 0) -> dict:
    """1-``hidden``-1 (tanh; 3 * hidden + 1 parameters, more than ``n``) trained on ``noisy_sine``
    by ``levenberg_marquardt`` and by ``br`` from the same Nguyen-Widrow weights.

    Returns the data, the noise-free function on 401 points, each fit there,
    each fit's test mse against the noise-free function (MATLAB's mse: the mean
    of e^2), and each history (``br``'s records gamma, alpha and beta).
    """
    from fnn.train import fit

    x, y = noisy_sine(n, noise, seed)
    grid = np.linspace(-1, 1, 401, dtype=np.float32)[:, None]
    truth = np.sin(2 * np.pi * grid)
    net = MLP((1, hidden, 1), activation="tanh", loss="mse")
    params = init(jax.random.key(seed), net, scheme="nguyen_widrow")
    out = {"x": x, "y": y, "grid": grid, "truth": truth, "n_params": net.n_params, "noise": noise, "runs": {}}
    for name in ("levenberg_marquardt", "br"):
        trained, history = fit(net, params, (x, y), optimizer=name, epochs=epochs, key=jax.random.key(seed))
        fitted = np.asarray(predict_core(net, trained, jnp.asarray(grid)))
        out["runs"][name] = {"fit": fitted, "test_mse": float(np.mean((fitted - truth) ** 2)),
                             "train_mse": float(np.mean((np.asarray(predict_core(net, trained, jnp.asarray(x))) - y) ** 2)),
                             "history": history}
    return out


def bayesian_summary(result: dict) -> dict:
    """The numbers of ``bayesian_regularisation``: each method's mse, epochs, stop, and br's last gamma."""
    runs = result["runs"]
    br = runs["br"]["history"]
    return {"n_params": result["n_params"], "n_examples": len(result["x"]), "noise": result["noise"],
            **{f"{k}_{m}": v for m, r in runs.items()
               for k, v in (("test_mse", r["test_mse"]), ("train_mse", r["train_mse"]),
                            ("epochs", len(r["history"])), ("stop", r["history"].stop_reason))},
            "br_gamma": br.gamma[-1], "br_alpha": br.alpha[-1], "br_beta": br.beta[-1]}


def plot_bayesian(result: dict, path) -> None:
    """Left: the data, the noise-free sine and both fits; right: br's gamma over the epochs."""
    plt = _pyplot()
    fig, (ax, ax_g) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax.plot(result["grid"], result["truth"], color="black", lw=1, label="sin(2 pi x), noise-free")
    ax.scatter(result["x"], result["y"], s=14, color="gray", label=f"{len(result['x'])} noisy samples")
    for name, color in (("levenberg_marquardt", "tab:red"), ("br", "tab:blue")):
        r = result["runs"][name]
        ax.plot(result["grid"], r["fit"], color=color, label=f"{name}: test mse {r['test_mse']:.4f}")
    ax.set_ylim(-1.6, 1.6)
    ax.set_title(f"1-{(result['n_params'] - 1) // 3}-1 tanh ({result['n_params']} parameters) on noisy samples")
    ax.legend(fontsize=8, loc="lower left")
    h = result["runs"]["br"]["history"]
    ax_g.plot(h.epoch, h.gamma, color="tab:blue")
    ax_g.axhline(result["n_params"], color="gray", ls=":", label="P")
    ax_g.set_xlabel("epoch")
    ax_g.set_ylabel("effective parameters gamma")
    ax_g.set_title("br: gamma")
    ax_g.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- writing results


def provenance() -> dict:
    """The machine and the command of this run, for the results' JSON."""
    from fnn.bench.machine import describe

    return {"machine": describe(jax.devices()[0]), "command": " ".join(["python", *sys.argv])}


def write_json(path, payload: dict) -> None:
    """``payload`` and ``provenance()`` as JSON at ``path``."""
    with open(path, "w") as f:
        json.dump({**provenance(), **payload}, f, indent=2)


def write_csv(rows: list[dict], path) -> None:
    """``rows`` (dicts with the same keys) as CSV, the first row's keys the header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
