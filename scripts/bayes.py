"""An oversized network on a few noisy samples of a sine, trained by
Levenberg-Marquardt and by Bayesian regularisation (``br``); the error of each
fit against the noise-free function (``scripts/bayesian_regularisation.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core.forward import predict_core
from fnn.core.initializers import init
from fnn.core.mlp import MLP
from fnn.training.loop import fit
from scripts.common import pyplot


def noisy_sine(n: int = 41, noise: float = 0.1, seed: int = 0):
    """``sin(2 pi x)`` at ``n`` points of [-1, 1] plus N(0, noise^2) (MATLAB's ``trainbr`` example)."""
    x = np.linspace(-1, 1, n)[:, None]
    y = np.sin(2 * np.pi * x) + noise * np.random.default_rng(seed).normal(size=x.shape)
    return x.astype(np.float32), y.astype(np.float32)


def bayesian_regularisation(
    hidden: int = 20, n: int = 41, noise: float = 0.1, epochs: int = 500, seed: int = 0
) -> dict:
    """1-``hidden``-1 (tanh; 3 * hidden + 1 parameters, more than ``n``) trained on ``noisy_sine``
    by ``levenberg_marquardt`` and by ``br`` from the same Nguyen-Widrow weights.

    Returns the data, the noise-free function on 401 points, each fit there,
    each fit's test mse against the noise-free function (MATLAB's mse: the mean
    of e^2), and each history (``br``'s records gamma, alpha and beta).
    """
    x, y = noisy_sine(n, noise, seed)
    grid = np.linspace(-1, 1, 401, dtype=np.float32)[:, None]
    truth = np.sin(2 * np.pi * grid)
    net = MLP((1, hidden, 1), activation="tanh", loss="mse")
    params = init(jax.random.key(seed), net, scheme="nguyen_widrow")
    out = {"x": x, "y": y, "grid": grid, "truth": truth, "n_params": net.n_params, "noise": noise, "runs": {}}
    for name in ("levenberg_marquardt", "br"):
        trained, history = fit(net, params, (x, y), optimizer=name, epochs=epochs, key=jax.random.key(seed))
        fitted = np.asarray(predict_core(net, trained, jnp.asarray(grid)))
        out["runs"][name] = {
            "fit": fitted,
            "test_mse": float(np.mean((fitted - truth) ** 2)),
            "train_mse": float(np.mean((np.asarray(predict_core(net, trained, jnp.asarray(x))) - y) ** 2)),
            "history": history,
        }
    return out


def bayesian_summary(result: dict) -> dict:
    """The numbers of ``bayesian_regularisation``: each method's mse, epochs, stop, and br's last gamma."""
    runs = result["runs"]
    br = runs["br"]["history"]
    return {
        "n_params": result["n_params"],
        "n_examples": len(result["x"]),
        "noise": result["noise"],
        **{
            f"{k}_{m}": v
            for m, r in runs.items()
            for k, v in (
                ("test_mse", r["test_mse"]),
                ("train_mse", r["train_mse"]),
                ("epochs", len(r["history"])),
                ("stop", r["history"].stop_reason),
            )
        },
        "br_gamma": br.gamma[-1],
        "br_alpha": br.alpha[-1],
        "br_beta": br.beta[-1],
    }


def plot_bayesian(result: dict, path) -> None:
    """Left: the data, the noise-free sine and both fits; right: br's gamma over the epochs."""
    plt = pyplot()
    fig, (ax, ax_g) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax.plot(result["grid"], result["truth"], color="black", lw=1, label="sin(2 pi x), noise-free")
    ax.scatter(result["x"], result["y"], s=14, color="gray", label=f"{len(result['x'])} noisy samples")
    for name, color in (("levenberg_marquardt", "tab:red"), ("br", "tab:blue")):
        r = result["runs"][name]
        ax.plot(result["grid"], r["fit"], color=color, label=f"{name}: test mse {r['test_mse']:.4f}")
    ax.set_ylim(-1.6, 1.6)
    ax.set_title(
        f"1-{(result['n_params'] - 1) // 3}-1 tanh ({result['n_params']} parameters) on noisy samples"
    )
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
