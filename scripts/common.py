"""What the experiments share: the digits probe batch, and writing results
(JSON with the machine and command, CSV) and figures.
"""

from __future__ import annotations

import csv
import json
import sys

import jax
import numpy as np

from benchmarks.machine import describe


def digits_batch(n: int = 256, seed: int = 0):
    """``n`` standardised digits (64 features) and their labels: the probe batch of the survey."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    x = x[idx].astype(np.float32)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    return x.astype(np.float32), y[idx].astype(np.int32)


def provenance() -> dict:
    """The machine and the command of this run, for the results' JSON."""
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


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
