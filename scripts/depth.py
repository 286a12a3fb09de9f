"""Plain chains against residual nets of the same width and depth, 8 to 64 hidden
layers, on digits: the gradient ratio at initialisation and the test accuracy
after the same training budget (``scripts/residual_depth.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import numpy as np

from fnn.core.graph import Graph
from fnn.core.initializers import init
from fnn.training import diagnostics
from fnn.training.loop import evaluate, fit
from scripts.common import pyplot

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


def depth_net(
    kind: str, activation: str, depth: int, width: int = 64, n_in: int = 64, n_out: int = 10
) -> Graph:
    """``depth`` hidden layers of ``width`` units, softmax and cross-entropy: a plain chain or
    ``Graph.residual``.

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


def depth_run(
    kind: str,
    activation: str,
    depth: int,
    splits,
    *,
    width: int = 64,
    seed: int = 0,
    budget: Budget = Budget(),
) -> dict:
    """One net of ``depth_net``: its gradient ratio at initialisation (on the probe batch), then its test
    loss and accuracy after training for ``budget`` from ``jax.random.key(seed)`` (init and shuffling)."""
    net = depth_net(kind, activation, depth, width, splits.train.x.shape[1], int(splits.train.y.max()) + 1)
    params = init(jax.random.key(seed), net)
    row = {
        "kind": kind,
        "activation": activation,
        "depth": depth,
        "width": width,
        "seed": seed,
        **hidden_gradient_ratio(net, params, *diagnostics.probe_batch(splits.train.x, splits.train.y)),
    }
    params, history = fit(
        net,
        params,
        (splits.train.x, splits.train.y),
        optimizer=budget.optimizer,
        learning_rate=budget.learning_rate,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        key=jax.random.key(seed),
    )
    test = evaluate(net, params, splits.test.x, splits.test.y)
    return {
        **row,
        "train_loss": history.train_loss[-1],
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
    }


def residual_depth(
    splits,
    *,
    activations=DEPTH_ACTIVATIONS,
    depths=DEPTHS,
    width: int = 64,
    seeds: int = 3,
    budget: Budget = Budget(),
    progress=None,
) -> list[dict]:
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
    head = (
        "| activation | depth | plain test acc. | residual test acc. | plain train loss | "
        "residual train loss | plain grad ratio | residual grad ratio |\n|---|---|---|---|---|---|---|---|"
    )
    cells = []
    for act, depth in dict.fromkeys((s["activation"], s["depth"]) for s in summary):
        p, r = by[act, depth, "plain"], by[act, depth, "residual"]
        cells.append(
            f"| {act} | {depth} | {_accuracy_cell(p)} | {_accuracy_cell(r)} "
            f"| {p['train_loss_mean']:.2g} | {r['train_loss_mean']:.2g} "
            f"| {_ratio_cell(p['grad_ratio_mean'])} | {_ratio_cell(r['grad_ratio_mean'])} |"
        )
    return "\n".join([head, *cells]) + "\n"


def _accuracy_cell(s: dict) -> str:
    spread = f" ({s['test_accuracy_min']:.3f}-{s['test_accuracy_max']:.3f})" if s["seeds"] > 1 else ""
    return f"{s['test_accuracy_mean']:.3f}{spread}"


def _ratio_cell(v: float) -> str:
    return "0 (underflow)" if v == 0 else f"{v:.1e}"


_DEPTH_PANELS = (
    ("test_accuracy", "test accuracy after training", "linear"),
    ("train_loss", "training loss, last epoch", "log"),
    ("grad_ratio", "||grad first hidden|| / ||grad last hidden||\nat initialisation", "log"),
)


def plot_depth(summary: list[dict], path) -> None:
    """Per activation (columns): test accuracy, last-epoch training loss and first/last hidden gradient ratio
    at init vs depth (rows); plain dashed, residual solid, the band the seeds' min to max."""
    plt = pyplot()
    acts = list(dict.fromkeys(s["activation"] for s in summary))
    depths = sorted({s["depth"] for s in summary})
    fig, axes = plt.subplots(3, len(acts), figsize=(4.2 * len(acts), 8.4), dpi=90, sharex=True, squeeze=False)
    for (m, label, scale), row in zip(_DEPTH_PANELS, axes):
        for ax, act in zip(row, acts):
            for i, kind in enumerate(KINDS):
                ss = sorted(
                    (s for s in summary if s["activation"] == act and s["kind"] == kind),
                    key=lambda s: s["depth"],
                )
                d = [s["depth"] for s in ss]
                mean, lo, hi = ([max(s[f"{m}_{k}"], RATIO_FLOOR) for s in ss] for k in ("mean", "min", "max"))
                ax.plot(
                    d,
                    mean,
                    color=f"C{i}",
                    linestyle="--" if kind == "plain" else "-",
                    marker="o",
                    markersize=4,
                    label=kind,
                )
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
    fig.suptitle(
        "Plain (dashed) vs residual (solid) nets on digits, width 64, the same budget "
        f"(ratios below {RATIO_FLOOR:.0e}: underflow)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
