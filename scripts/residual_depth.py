"""What residual connections buy: plain vs residual nets of 8 to 64 hidden layers on digits.

    python scripts/residual_depth.py [--quick] [--seeds N] [--epochs N] [--depths 8,16] [--activations relu]
                                     [--width N] [--out DIR]

For sigmoid, tanh and relu hidden layers and depth 8, 16, 32 and 64, a plain
chain and a residual net (``fnn.Graph.residual``) of width 64, softmax and
cross-entropy, the same shapes, init (Glorot uniform, fnn's default) and
seeds. Each gets the first-over-last hidden-layer gradient-norm ratio at
initialisation (on the first 256 training examples) and the test accuracy
after the same budget: Adam, learning rate 1e-3, batch 64, 30 epochs of the
1212 training digits (570 steps; why, in ``depth.Budget``), and its
last-epoch training loss. Writes ``DIR/residual_depth.png`` (accuracy, training
loss and gradient ratio vs depth), ``.csv`` (one row per net and seed), ``.json``
(the summary, the runs, the machine and the command) and ``.md`` (the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

# `python scripts/residual_depth.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from fnn import data  # noqa: E402
from fnn.data import datasets  # noqa: E402
from scripts import common, depth  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: depths 2 and 4, 1 seed, 2 epochs")
    p.add_argument("--seeds", type=int, help="seeds per net (default 3)")
    p.add_argument("--epochs", type=int, help="epochs of training (default 30)")
    p.add_argument("--depths", help="comma-separated hidden-layer counts (default 8,16,32,64)")
    p.add_argument("--activations", help="comma-separated hidden activations (default sigmoid,tanh,relu)")
    p.add_argument("--width", type=int, default=64, help="hidden width (default 64)")
    p.add_argument("--out", default="results/residual_depth", help="output directory")
    args = p.parse_args(argv)
    depths = (
        tuple(map(int, args.depths.split(","))) if args.depths else (2, 4) if args.quick else depth.DEPTHS
    )
    acts = tuple(args.activations.split(",")) if args.activations else depth.DEPTH_ACTIVATIONS
    seeds = args.seeds or (1 if args.quick else 3)
    budget = dataclasses.replace(depth.Budget(), epochs=args.epochs or (2 if args.quick else 30))
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    splits = data.prepare(datasets.load("digits"), test_size=0.25, val_size=0.1, seed=0, scale="standard")
    rows = depth.residual_depth(
        splits,
        activations=acts,
        depths=depths,
        width=args.width,
        seeds=seeds,
        budget=budget,
        progress=lambda r: print(_progress(r, time.perf_counter() - t0), flush=True),
    )
    summary = depth.depth_summary(rows)
    table = depth.depth_table(summary)
    out = os.path.join(args.out, "residual_depth")
    common.write_csv(rows, out + ".csv")
    common.write_json(
        out + ".json",
        {
            "budget": dataclasses.asdict(budget),
            "width": args.width,
            "seconds": time.perf_counter() - t0,
            "summary": summary,
            "runs": rows,
        },
    )
    with open(out + ".md", "w") as f:
        f.write(table)
    depth.plot_depth(summary, out + ".png")
    print(table)
    print(f"wrote {out}.png, .csv, .json, .md in {time.perf_counter() - t0:.1f} s")
    return 0


def _progress(r: dict, elapsed: float) -> str:
    """One finished net as a line of the progress printout."""
    return (
        f"{elapsed:6.0f} s  {r['activation']:7s} depth {r['depth']:2d} {r['kind']:8s} seed {r['seed']}: "
        f"grad ratio {r['grad_ratio']:.1e}, test accuracy {r['test_accuracy']:.3f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
