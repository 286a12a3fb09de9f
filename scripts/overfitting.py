"""Overfitting made visible: a big network on 100 digits, train and validation curves parting.

    python scripts/overfitting.py [--quick] [--out DIR]

Trains 64-256-256-10 (relu, Adam) on 100 digits for 300 epochs, validating on
500 others, and marks the best validation epoch and the epoch where early
stopping with patience 20 would end the run. Writes ``DIR/overfitting.png``.
"""

from __future__ import annotations

import argparse
import os
import time

from fnn import experiments


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 epochs instead of 300")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--out", default="results/overfitting", help="output directory")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    result = experiments.overfitting(epochs=args.epochs or (100 if args.quick else 300), patience=args.patience)
    experiments.plot_overfitting(result, os.path.join(args.out, "overfitting.png"))
    h = result["history"]
    b, s = result["best_epoch"], result["stop_epoch"]
    print(f"best validation loss {h.val_loss[b - 1]:.4f} at epoch {b} (val accuracy {h.val_accuracy[b - 1]:.3f}); "
          f"early stopping (patience {result['patience']}) stops at epoch {s}; "
          f"after {len(h)} epochs: train loss {h.train_loss[-1]:.2e}, val loss {h.val_loss[-1]:.4f} "
          f"(val accuracy {h.val_accuracy[-1]:.3f})")
    print(f"wrote {args.out}/overfitting.png in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
