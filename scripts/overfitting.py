"""Overfitting made visible: a big network on 100 digits, train and validation curves parting;
dropout against it.

    python scripts/overfitting.py [--quick] [--dropout P] [--out DIR]

Trains 64-256-256-10 (relu, Adam) on 100 digits for 300 epochs, validating on
500 others, and marks the best validation epoch and the epoch where early
stopping with patience 20 would end the run. Then trains the same network
from the same init and shuffling with dropout ``P`` (default 0.5) on both
hidden layers. Writes ``DIR/overfitting.png`` (without dropout),
``DIR/overfitting_dropout.png`` (the validation curves with and without),
``overfitting.csv`` (per-epoch curves of both) and ``overfitting.json`` (the
best validation loss of each, the machine and the command). ``--dropout 0``
trains only the first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# `python scripts/overfitting.py` puts scripts/ on sys.path, not the repository's root: the root goes first,
# so that the packages `scripts` and `benchmarks` (not installed with fnn) import from any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scripts import common, overfit  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 epochs instead of 300")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--dropout", type=float, default=0.5, help="dropout of the second run (0: no second run)")
    p.add_argument("--out", default="results/overfitting", help="output directory")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    epochs = args.epochs or (100 if args.quick else 300)
    kwargs = dict(epochs=epochs, patience=args.patience)
    results = (
        overfit.dropout_comparison(args.dropout, **kwargs)
        if args.dropout
        else [overfit.overfitting(**kwargs)]
    )
    out = os.path.join(args.out, "overfitting")
    overfit.plot_overfitting(results[0], out + ".png")
    best = [overfit.best_validation(r) for r in results]
    for b in best:
        print(_line(b, args.patience))
    common.write_csv(overfit.curves_rows(results), out + ".csv")
    common.write_json(out + ".json", {"seconds": time.perf_counter() - t0, "runs": best})
    if len(results) > 1:
        overfit.plot_dropout(results, out + "_dropout.png")
    print(
        f"wrote {out}.png{', _dropout.png' if len(results) > 1 else ''}, .csv, .json "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _line(b: dict, patience: int) -> str:
    """One run's ``best_validation`` as a sentence."""
    return (
        f"{overfit.dropout_label(b['dropout'])}: best validation loss {b['best_val_loss']:.4f} "
        f"at epoch {b['best_epoch']} (val accuracy {b['best_val_accuracy']:.3f}); "
        f"early stopping (patience {patience}) stops at epoch {b['stop_epoch']}; "
        f"after {b['epochs']} epochs: train loss {b['final_train_loss']:.2e}, "
        f"val loss {b['final_val_loss']:.4f} (val accuracy {b['final_val_accuracy']:.3f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
