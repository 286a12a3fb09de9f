"""Training plots (matplotlib, an optional extra: ``pip install 'fnn[plot]'``)."""

from __future__ import annotations

import math


def loss_curve(history, path, title: str | None = None) -> None:
    """Train and validation loss per epoch (log scale), the best validation epoch marked."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        raise OSError("plots need matplotlib: pip install 'fnn[plot]'") from None
    epochs = history.epoch
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    positive = all(v > 0 for v in history.train_loss if not math.isnan(v))
    ax.plot(epochs, history.train_loss, label="train loss (mean over the epoch's minibatches)", color="C0")
    val = [v for v in history.val_loss if not math.isnan(v)]
    if val:
        ax.plot(epochs, history.val_loss, label="validation loss", color="C1")
        positive = positive and all(v > 0 for v in val)
        if history.best_epoch is not None:
            b = history.best_epoch
            vb = history.val_loss[epochs.index(b)]
            ax.axvline(b, color="0.6", linestyle=":", linewidth=1)
            ax.plot([b], [vb], marker="o", color="C3", label=f"best epoch {b} (val loss {vb:.3g})")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gradient_norms(history, path, title: str | None = None) -> None:
    """Per-layer gradient norm over the epochs (log scale); with ``history.diagnostics``
    also the update-to-weight ratio and the saturated / dead fraction of each layer."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        raise OSError("plots need matplotlib: pip install 'fnn[plot]'") from None
    import numpy as np

    d = getattr(history, "diagnostics", None) or {}
    grads = np.asarray(d.get("grad_norm") or history.grad_norm, dtype=float)  # (epochs, layers)
    epochs = np.asarray(history.epoch[-len(grads) :])
    panels = 3 if d else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), dpi=100, squeeze=False)
    axes = axes[0]
    n_layers = grads.shape[1]
    colors = plt.cm.viridis(np.linspace(0, 0.9, n_layers))

    def per_layer(ax, values, ylabel, log=True):
        for l in range(n_layers):
            ax.plot(epochs, values[:, l], color=colors[l], label=f"layer {l + 1}")
        if log and np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)

    source = "on the probe batch" if d else "mean over the epoch's steps"
    per_layer(axes[0], grads, "gradient norm ||dL/dW_l||")
    axes[0].set_title(source, fontsize=8)
    axes[0].legend(fontsize=7, ncol=2 if n_layers > 5 else 1)
    if d:
        per_layer(axes[1], np.asarray(d["update_ratio"], dtype=float), "update-to-weight ratio ||dW||/||W||")
        sat = np.asarray(d["saturation"], dtype=float)
        dead = np.asarray(d["dead_relu"], dtype=float)
        frac = np.where(np.isfinite(sat), sat, dead)
        per_layer(axes[2], frac, "saturated (sigmoid, tanh) / dead (relu)", log=False)
        axes[2].set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
