"""Reference runs of ``fnn.fit``: the params and histories that the callback-driven
loop must reproduce bit for bit (``tests/test_callbacks.py``).

``python tests/fit_reference.py`` wrote ``tests/data/fit_reference.npz`` with
the ``fit`` of commit 73d8c44 (one function with its stops inlined), in the
commit that added both files, before the loop was rebuilt on
``fnn.callbacks``. It is kept to show what the file holds, not to be rerun
against the current code: that would make the comparison vacuous.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

import fnn

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "data", "fit_reference.npz")
# history columns that do not depend on the clock
COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "mu", "grad_norm")


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(0.0, 0.8, (n, 4))).astype(np.float32)
    return x, y


def sine(n=40):
    x = np.linspace(-1.0, 1.0, n, dtype=np.float32)[:, None]
    return x, np.sin(np.pi * x).astype(np.float32)


CLF = fnn.MLP((4, 8, 3), activation="tanh", output="softmax", loss="cross_entropy")
REG = fnn.MLP((1, 5, 1), activation="tanh", output="identity", loss="mse")


def stop_at(epoch):
    return lambda record: record["epoch"] >= epoch


def cases(tmp):
    """name -> zero-argument function returning ``(params, history)``."""
    x, y = blobs()
    xs, ys = sine()
    p_clf, p_reg = fnn.init(jax.random.key(1), CLF), fnn.init(jax.random.key(2), REG)
    key = jax.random.key(3)
    ckpt = os.path.join(tmp, "run.npz")

    def resumed():
        kw = dict(optimizer="adam", learning_rate=3e-2, batch_size=25, key=key, validation=(x[90:], y[90:]),
                  patience=4, checkpoint=ckpt, checkpoint_every=2)
        if os.path.exists(ckpt):
            os.remove(ckpt)
        fnn.fit(CLF, p_clf, (x[:90], y[:90]), epochs=5, **kw)
        return fnn.fit(CLF, p_clf, (x[:90], y[:90]), epochs=12, resume=True, **kw)

    return {
        "adam_patience": lambda: fnn.fit(CLF, p_clf, (x[:90], y[:90]), optimizer="adam", learning_rate=5e-2,
                                         epochs=60, batch_size=16, key=key, validation=(x[90:], y[90:]),
                                         patience=5, min_delta=1e-3),
        "lm_goal": lambda: fnn.fit(REG, p_reg, (xs, ys), optimizer="levenberg_marquardt", epochs=50, key=key,
                                   goal=2e-3),
        "sgd_diagnostics_callback": lambda: fnn.fit(CLF, p_clf, (x, y), optimizer="sgd", learning_rate=0.1,
                                                    epochs=30, batch_size=32, key=key, diagnostics=True,
                                                    callback=stop_at(7), validation=(x[:30], y[:30])),
        "gd_min_grad": lambda: fnn.fit(CLF, p_clf, (x, y), optimizer="gd", learning_rate=0.5, epochs=400, key=key,
                                       min_grad=0.05),
        "diverged": lambda: fnn.fit(REG, p_reg, (xs, 50 * ys), optimizer="gd", learning_rate=5.0, epochs=50,
                                    key=key),
        "resumed": resumed,
    }


def flatten(name, params, history) -> dict:
    out = {f"{name}/params/{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree_util.tree_leaves(params))}
    for c in COLUMNS:
        out[f"{name}/history/{c}"] = np.asarray(getattr(history, c), np.float64)
    out[f"{name}/stop_reason"] = np.asarray(history.stop_reason)
    out[f"{name}/best_epoch"] = np.asarray(-1 if history.best_epoch is None else history.best_epoch)
    out[f"{name}/diverged"] = np.asarray(history.diverged)
    for k, v in history.diagnostics.items():
        out[f"{name}/diagnostics/{k}"] = np.asarray(v, np.float64)
    return out


def main(tmp):
    import warnings

    arrays = {}
    for name, run in cases(tmp).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            params, history = run()
        arrays.update(flatten(name, params, history))
        print(name, len(history), history.stop_reason)
    np.savez(PATH, **arrays)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        main(tmp)
    sys.exit(0)
