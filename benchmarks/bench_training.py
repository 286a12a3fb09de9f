"""Training speed on digits: fnn.fit vs scikit-learn's MLPClassifier vs a plain jax.grad + optax loop.

All three train 64,128,128,10 relu/softmax with Adam (lr 1e-3), batch 64, 50
epochs, on the same standardised stratified 75/25 split (no validation, no
early stopping, no L2: MLPClassifier(alpha=0, tol=0, n_iter_no_change=huge)).
scikit-learn computes in float64 with NumPy, the JAX runs in float32.

* whole fit: wall time of one complete training run, compilation included
  (a fresh fnn.fit / a fresh jit for the plain loop in every repeat);
* epoch: the steady-state time of one epoch (fnn: median of epochs 2-50 from
  history.epoch_time_s; plain loop: median epoch after the first; scikit-learn:
  whole fit / 50, it has nothing to compile).

Medians over --repeats runs. Writes benchmarks/results/training_cpu.json.

    python benchmarks/bench_training.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn
from fnn import data, datasets
from fnn.forward import loss_core
from fnn.validation import prepare

EPOCHS, BATCH, LR = 50, 64, 1e-3
NET = fnn.MLP((64, 128, 128, 10), activation="relu", output="softmax", loss="cross_entropy")


def run_fnn(train, test, seed):
    fnn.train.make_epoch.cache_clear()  # fits of one configuration share a compiled epoch: compile afresh
    t0 = time.perf_counter()
    params, h = fnn.fit(NET, fnn.init(jax.random.key(seed), NET), train, optimizer="adam", learning_rate=LR,
                        epochs=EPOCHS, batch_size=BATCH, key=jax.random.key(seed + 100))
    jax.block_until_ready(params)
    whole = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(np.asarray(fnn.predict(NET, params, test.x)), 1) == test.y))
    return whole, statistics.median(h.epoch_time_s[1:]), acc


def run_plain(train, test, seed):
    """The usual hand-rolled loop: jax.value_and_grad + optax, one jitted step per minibatch."""
    t0 = time.perf_counter()
    params = fnn.init(jax.random.key(seed), NET)
    x, y = prepare(NET, params, train.x, train.y)
    tx = optax.adam(LR)
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_core, argnums=1)(NET, params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    n = x.shape[0]
    times = []
    for _ in range(EPOCHS):
        e0 = time.perf_counter()
        perm = rng.permutation(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            if len(idx) < BATCH:  # keep one shape (no recompile): fill up like fnn.fit does
                idx = np.concatenate([idx, perm[:BATCH - len(idx)]])
            params, state, loss = step(params, state, x[idx], y[idx])
        jax.block_until_ready(params)
        times.append(time.perf_counter() - e0)
    whole = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(np.asarray(fnn.predict(NET, params, test.x)), 1) == test.y))
    return whole, statistics.median(times[1:]), acc


def run_sklearn(train, test, seed):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier((128, 128), activation="relu", solver="adam", learning_rate_init=LR, batch_size=BATCH,
                        max_iter=EPOCHS, alpha=0.0, tol=0.0, n_iter_no_change=10**9, shuffle=True, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" after max_iter
        clf.fit(train.x, train.y)
    whole = time.perf_counter() - t0
    return whole, whole / EPOCHS, float(clf.score(test.x, test.y))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "training_cpu.json"))
    args = ap.parse_args()
    splits = data.prepare(datasets.load("digits"), test_size=0.25, val_size=0.0, seed=0)
    runners = {"fnn.fit": run_fnn, "jax.grad + optax loop": run_plain, "sklearn MLPClassifier": run_sklearn}
    results = {}
    for name, fn in runners.items():
        runs = [fn(splits.train, splits.test, seed) for seed in range(args.repeats)]
        results[name] = {
            "whole_fit_s": statistics.median(r[0] for r in runs),
            "epoch_s": statistics.median(r[1] for r in runs),
            "test_accuracy": statistics.median(r[2] for r in runs),
            "runs": [{"whole_fit_s": r[0], "epoch_s": r[1], "test_accuracy": r[2]} for r in runs],
        }
        print(f"{name:<24} whole fit {results[name]['whole_fit_s']:8.3f} s   epoch {1e3 * results[name]['epoch_s']:9.3f} ms"
              f"   test accuracy {100 * results[name]['test_accuracy']:.2f}%", flush=True)
    f, p, s = (results[k] for k in runners)
    ratios = {
        "sklearn_whole_over_fnn_whole": s["whole_fit_s"] / f["whole_fit_s"],
        "sklearn_epoch_over_fnn_epoch": s["epoch_s"] / f["epoch_s"],
        "plain_epoch_over_fnn_epoch": p["epoch_s"] / f["epoch_s"],
        "plain_whole_over_fnn_whole": p["whole_fit_s"] / f["whole_fit_s"],
    }
    for k, v in ratios.items():
        print(f"{k:<32} {v:8.2f}x")
    doc = {
        "benchmark": "digits 64,128,128,10 relu/softmax, adam lr 1e-3, batch 64, 50 epochs",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "jax": jax.__version__, "device": str(jax.devices()[0])},
        "repeats": args.repeats,
        "n_train": int(len(splits.train.x)),
        "n_test": int(len(splits.test.x)),
        "results": results,
        "ratios": ratios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
