"""Overfitting: a big network on a small training set, train and validation
curves parting, and where early stopping ends the run; with and without
dropout (``dropout_comparison``) (``scripts/overfitting.py``).

Every gradient is fnn's hand-written backpropagation.
"""

from __future__ import annotations

import math

import jax

from fnn.core.initializers import init
from fnn.core.mlp import MLP
from fnn.training.loop import fit
from scripts.common import digits_batch, pyplot


def overfitting(
    n_train: int = 100,
    n_val: int = 500,
    epochs: int = 300,
    patience: int = 20,
    hidden=(256, 256),
    seed: int = 0,
    dropout: float = 0.0,
) -> dict:
    """A big relu network on ``n_train`` digits: the history, the best epoch and where early stopping stops.

    Trained for all ``epochs`` without stopping so both curves are seen in
    full; ``stop_epoch`` is where ``fnn.fit(..., patience=patience)`` would
    have stopped (``patience`` epochs without a lower validation loss), and
    ``best_epoch`` the epoch whose params it would have restored. ``dropout``
    is the dropout rate of every hidden layer (active in training only; the
    validation loss is that of the whole network).
    """
    x, y = digits_batch(n_train + n_val, seed)
    net = MLP((64, *hidden, 10), activation="relu", output="softmax", loss="cross_entropy", dropout=dropout)
    params = init(jax.random.key(seed), net)
    _, history = fit(
        net,
        params,
        (x[:n_train], y[:n_train]),
        optimizer="adam",
        learning_rate=1e-3,
        epochs=epochs,
        batch_size=32,
        key=jax.random.key(seed),
        validation=(x[n_train:], y[n_train:]),
    )
    return {
        "history": history,
        "best_epoch": history.best_epoch,
        "stop_epoch": early_stopping_epoch(history.val_loss, patience),
        "patience": patience,
        "n_train": n_train,
        "n_val": n_val,
        "dropout": dropout,
    }


def dropout_comparison(rate: float = 0.5, **kwargs) -> list[dict]:
    """``overfitting`` without and with dropout ``rate``: same network, data, init and shuffling
    (``kwargs``)."""
    return [overfitting(dropout=p, **kwargs) for p in (0.0, rate)]


def best_validation(result: dict) -> dict:
    """The headline numbers of one ``overfitting`` run: its best validation epoch, loss and accuracy,
    its end."""
    h, b = result["history"], result["best_epoch"]
    return {
        "dropout": result["dropout"],
        "best_epoch": b,
        "best_val_loss": h.val_loss[b - 1],
        "best_val_accuracy": h.val_accuracy[b - 1],
        "stop_epoch": result["stop_epoch"],
        "epochs": len(h),
        "final_train_loss": h.train_loss[-1],
        "final_val_loss": h.val_loss[-1],
        "final_val_accuracy": h.val_accuracy[-1],
    }


def curves_rows(results: list[dict]) -> list[dict]:
    """One row per epoch: train and validation loss and accuracy of each run, suffixed by its dropout rate."""
    cols = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    rows = [{"epoch": e} for e in results[0]["history"].epoch]
    for r in results:
        for row, *vals in zip(rows, *(getattr(r["history"], c) for c in cols)):
            row.update({f"{c}_dropout{r['dropout']:g}": v for c, v in zip(cols, vals)})
    return rows


def plot_dropout(results: list[dict], path) -> None:
    """Validation loss (log) and accuracy per epoch of each run of ``dropout_comparison``, best epochs
    marked."""
    plt = pyplot()
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
    fig.suptitle(
        f"Dropout on the hidden layers: 64-256-256-10 on {r['n_train']} digits, validated on {r['n_val']}"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def dropout_label(p: float) -> str:
    """``"dropout 0.5"``, or ``"no dropout"`` for 0: the name of a run in the figures and the printout."""
    return f"dropout {p:g}" if p else "no dropout"


def early_stopping_epoch(val_loss, patience: int, min_delta: float = 0.0) -> int:
    """The epoch (1-based) at which early stopping with ``patience`` ends the run (the last epoch if
    never)."""
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
    plt = pyplot()
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
        a.axvline(
            s,
            color="C3",
            linestyle=":",
            linewidth=1.2,
            label=f"early stopping, patience {result['patience']} (epoch {s})",
        )
        a.set_xlabel("epoch")
        a.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Overfitting: a 64-256-256-10 network on 100 digits")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
