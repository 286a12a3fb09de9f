"""Vanishing and exploding gradients: per-layer gradient norms of a deep network at initialisation.

    python scripts/vanishing_gradients.py [--quick] [--out DIR]

A 10-layer network (64 -> 32 x 9 -> 10, softmax, cross-entropy) on 256
standardised digits, for each init scheme x hidden activation. Writes
``DIR/vanishing_gradients.png`` (per-layer gradient norm, log scale, one panel
per activation), ``.csv`` and ``.md`` (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# `python scripts/vanishing_gradients.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scripts import common, vanishing  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed instead of 5")
    p.add_argument("--out", default="results/vanishing_gradients", help="output directory")
    p.add_argument("--depth", type=int, default=10, help="weight layers (default 10)")
    p.add_argument("--width", type=int, default=32, help="hidden width (default 32)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    x, y = common.digits_batch(256)
    rows = vanishing.gradient_survey(x, y, depth=args.depth, width=args.width, seeds=1 if args.quick else 5)
    table = vanishing.survey_table(rows)
    vanishing.survey_csv(rows, os.path.join(args.out, "vanishing_gradients.csv"))
    with open(os.path.join(args.out, "vanishing_gradients.md"), "w") as f:
        f.write(table)
    vanishing.plot_survey(rows, os.path.join(args.out, "vanishing_gradients.png"))
    print(table)
    print(f"wrote {args.out}/vanishing_gradients.png, .csv, .md in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
