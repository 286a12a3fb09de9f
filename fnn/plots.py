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
