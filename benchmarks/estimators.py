"""``fnn.sklearn`` against scikit-learn's own MLPs: one set of estimator settings, timed side by side.

Both estimators get the same constructor arguments (Adam, ``batch_size="auto"``,
i.e. 200, the default rate and L2 term, ``tol=0`` and ``n_iter_no_change=inf``
so that each runs exactly ``max_iter`` epochs) and the same data, in float64
and in float32 (each library computes in the dtype of its input). Per round the
two run in a fresh random order: scikit-learn's fit, and fnn's fit twice, first
after ``jax.clear_caches()`` ("cold": it compiles its epoch), then again
("warm": the compiled epoch reused, as by every later fit of the same shapes).
Per epoch is a warm (or scikit-learn's) whole fit over ``max_iter``. Medians
over rounds; the paired ratios are the median of each round's own ratio.
"""

from __future__ import annotations

import random
import statistics
import time
import warnings

import numpy as np

CASES = {
    "digits 1797x64, (100,)": dict(hidden=(100,), epochs=50),
    "synthetic 50000x100, (256, 256)": dict(hidden=(256, 256), epochs=5),
}


def dataset(case: str, dtype):
    """``(X_train, y_train, X_test, y_test)`` of a case, 75/25, in ``dtype``."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split

    if case.startswith("digits"):
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        X, y = make_classification(
            n_samples=50_000, n_features=100, n_informative=60, n_classes=10, random_state=0
        )
    X_tr, X_te, y_tr, y_te = train_test_split(X.astype(dtype), y, test_size=0.25, random_state=0, stratify=y)
    return X_tr, y_tr, X_te, y_te


def settings(case: str, seed: int) -> dict:
    c = CASES[case]
    return dict(
        hidden_layer_sizes=c["hidden"],
        solver="adam",
        max_iter=c["epochs"],
        tol=0.0,
        n_iter_no_change=np.inf,
        random_state=seed,
    )


def timed_fit(cls, kwargs, data) -> tuple[float, float]:
    """Wall time of one ``fit`` and the test accuracy."""
    X_tr, y_tr, X_te, y_te = data
    est = cls(**kwargs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached, by design
        est.fit(X_tr, y_tr)
    return time.perf_counter() - t0, float(est.score(X_te, y_te))


def one_round(case: str, dtype, data, seed: int, rng: random.Random) -> dict:
    """scikit-learn and fnn (cold, then warm) on one case, in a random order."""
    import jax
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from fnn.sklearn import MLPClassifier as FnnMLP

    kwargs, epochs, out = settings(case, seed), CASES[case]["epochs"], {}
    order = ["scikit-learn", "fnn.sklearn"]
    rng.shuffle(order)
    for who in order:
        if who == "scikit-learn":
            whole, acc = timed_fit(SklearnMLP, kwargs, data)
            out[who] = {"whole_fit_s": whole, "epoch_s": whole / epochs, "test_accuracy": acc}
        else:
            jax.clear_caches()
            cold, _ = timed_fit(FnnMLP, kwargs, data)
            warm, acc = timed_fit(FnnMLP, kwargs, data)
            out[who] = {
                "whole_fit_s": warm,
                "cold_fit_s": cold,
                "epoch_s": warm / epochs,
                "test_accuracy": acc,
            }
    return {"order": order, **out}


def _median(rounds, who, key):
    return statistics.median(r[who][key] for r in rounds)


def _paired(rounds, key_sk, key_fnn):
    return statistics.median(r["scikit-learn"][key_sk] / r["fnn.sklearn"][key_fnn] for r in rounds)


def summarise(rounds: list[dict]) -> dict:
    """Medians of each contender, and scikit-learn's time over fnn's, paired by round."""
    return {
        "scikit-learn": {
            k: _median(rounds, "scikit-learn", k) for k in ("whole_fit_s", "epoch_s", "test_accuracy")
        },
        "fnn.sklearn": {
            k: _median(rounds, "fnn.sklearn", k)
            for k in ("whole_fit_s", "cold_fit_s", "epoch_s", "test_accuracy")
        },
        "sklearn_over_fnn_epoch": _paired(rounds, "epoch_s", "epoch_s"),
        "sklearn_over_fnn_whole_cold": _paired(rounds, "whole_fit_s", "cold_fit_s"),
    }


def run(rounds: int, seed: int, progress=print) -> dict:
    """Every case in float64 and float32, ``rounds`` interleaved rounds each."""
    rng = random.Random(seed)
    results = {}
    for case in CASES:
        for dtype in (np.float64, np.float32):
            data = dataset(case, dtype)
            per_round = []
            for r in range(rounds):
                per_round.append(one_round(case, dtype, data, r, rng))
                progress(
                    f"{case} {np.dtype(dtype).name} round {r + 1}/{rounds}: "
                    + ", ".join(
                        f"{who} {per_round[-1][who]['whole_fit_s']:.2f} s" for who in per_round[-1]["order"]
                    )
                )
            results[f"{case}, {np.dtype(dtype).name}"] = {
                "settings": {**settings(case, 0), "random_state": "round index", "n_iter_no_change": "inf"},
                "summary": summarise(per_round),
                "rounds": per_round,
            }
    return results


def table(results: dict) -> str:
    """The results as a markdown table."""
    lines = [
        "| case | scikit-learn epoch | fnn epoch | sklearn/fnn (epoch) | scikit-learn fit | fnn fit, cold | "
        "sklearn/fnn (fit, cold) | test accuracy sklearn / fnn |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case, r in results.items():
        s, f = r["summary"]["scikit-learn"], r["summary"]["fnn.sklearn"]
        lines.append(
            f"| {case} | {1e3 * s['epoch_s']:.1f} ms | {1e3 * f['epoch_s']:.1f} ms | "
            f"{r['summary']['sklearn_over_fnn_epoch']:.2f}x | {s['whole_fit_s']:.2f} s | "
            f"{f['cold_fit_s']:.2f} s | {r['summary']['sklearn_over_fnn_whole_cold']:.2f}x | "
            f"{s['test_accuracy']:.4f} / {f['test_accuracy']:.4f} |"
        )
    return "\n".join(lines)


def draw(results: dict, path) -> None:
    """Per-epoch time of each contender for each case, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(results)
    x = np.arange(len(cases))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for i, who in enumerate(("scikit-learn", "fnn.sklearn")):
        ms = [1e3 * results[c]["summary"][who]["epoch_s"] for c in cases]
        ax.bar(x + (i - 0.5) * 0.38, ms, 0.38, label=who)
    ax.set_yscale("log")
    ax.set_xticks(x, [c.replace(", (", "\n(").replace("), ", ")\n") for c in cases], fontsize=8)
    ax.set_ylabel("time per epoch (ms, log scale)")
    ax.set_title("MLPClassifier, the same settings: scikit-learn vs fnn.sklearn (median of rounds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
