"""Vanishing gradients: per-layer gradient norms of a deep network at initialisation,
for each init scheme x hidden activation (``scripts/vanishing_gradients.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from fnn.core.initializers import init
from fnn.core.mlp import MLP
from fnn.training import diagnostics
from scripts.common import pyplot

SURVEY_INITS = ("normal", "small_uniform", "glorot_uniform", "he_normal", "lecun_normal")
SURVEY_ACTIVATIONS = ("sigmoid", "tanh", "relu")


def gradient_survey(
    x,
    y,
    *,
    depth: int = 10,
    width: int = 32,
    inits=SURVEY_INITS,
    activations=SURVEY_ACTIVATIONS,
    seeds: int = 3,
) -> list[dict]:
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
        net = MLP(
            (x.shape[1], *[width] * (depth - 1), n_classes),
            activation=act,
            output="softmax",
            loss="cross_entropy",
        )
        for scheme in inits:
            stats = [
                diagnostics.layer_stats(net, init(jax.random.key(s), net, scheme), x, y) for s in range(seeds)
            ]
            g = np.exp(np.mean([np.log(np.maximum(s["grad_norm"], 1e-300)) for s in stats], axis=0))
            sat = np.mean([s["saturation"][:-1] for s in stats])
            dead = np.mean([s["dead_relu"][:-1] for s in stats])
            rows.append(
                {
                    "init": scheme,
                    "activation": act,
                    "grad_norm": [float(v) for v in g],
                    "first_over_last": float(g[0] / g[-1]),
                    "max_over_min": float(g.max() / g.min()),
                    "saturation": float(sat),
                    "dead_relu": float(dead),
                }
            )
    return rows


def survey_table(rows: list[dict]) -> str:
    """The survey as a markdown table."""
    head = (
        "| init | activation | grad norm layer 1 | grad norm layer L | layer 1 / layer L | max / min "
        "| saturated (hidden) | dead relu (hidden) |\n|---|---|---|---|---|---|---|---|"
    )
    cells = []
    for r in rows:
        pct = lambda v: "–" if math.isnan(v) else f"{100 * v:.0f}%"
        cells.append(
            f"| {r['init']} | {r['activation']} | {r['grad_norm'][0]:.2e} | {r['grad_norm'][-1]:.2e} "
            f"| {r['first_over_last']:.1e} | {r['max_over_min']:.1e} | {pct(r['saturation'])} "
            f"| {pct(r['dead_relu'])} |"
        )
    return "\n".join([head, *cells]) + "\n"


def survey_csv(rows: list[dict], path) -> None:
    depth = len(rows[0]["grad_norm"])
    header = ["init", "activation", "first_over_last", "max_over_min", "saturation", "dead_relu"]
    header += [f"grad_norm_{l + 1}" for l in range(depth)]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            vals = (
                [r["init"], r["activation"]]
                + [repr(r[k]) for k in header[2:6]]
                + [repr(v) for v in r["grad_norm"]]
            )
            f.write(",".join(vals) + "\n")


def plot_survey(rows: list[dict], path) -> None:
    """One panel per activation: per-layer gradient norm (log scale), one line per init scheme."""
    plt = pyplot()
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
