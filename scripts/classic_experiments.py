"""The problems of the 1986 backpropagation paper, trained as there, sweeps counted over seeds.

    python scripts/classic_experiments.py [--quick] [--out DIR]

XOR with 2-2-1, the 8-3-8 encoder and symmetry detection with 6-2-1 (all 64
patterns); sigmoid units, squared error, full-batch gradient descent with
momentum (alpha 0.9), weights and biases U(-0.3, 0.3); a run is solved when
every output is within 0.1 of its target. Writes ``DIR/classic_experiments.png``
(sweeps per problem), ``.json`` and ``.md``, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# `python scripts/classic_experiments.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scripts import classic  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="10 seeds and at most 5000 sweeps (default 50 and 20000)"
    )
    p.add_argument("--seeds", type=int, help="initialisations per problem")
    p.add_argument("--max-sweeps", type=int, help="give up after this many sweeps")
    p.add_argument("--out", default="results/classic_experiments", help="output directory")
    args = p.parse_args(argv)
    seeds = args.seeds or (10 if args.quick else 50)
    max_sweeps = args.max_sweeps or (5000 if args.quick else 20000)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    results = [
        classic.run_classic(pr, seeds=seeds, max_sweeps=max_sweeps) for pr in classic.classic_problems()
    ]
    table = classic.classic_table(results)
    with open(os.path.join(args.out, "classic_experiments.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "classic_experiments.md"), "w") as f:
        f.write(table)
    classic.plot_classic(results, os.path.join(args.out, "classic_experiments.png"))
    print(table)
    print(f"wrote {args.out}/classic_experiments.png, .json, .md in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
