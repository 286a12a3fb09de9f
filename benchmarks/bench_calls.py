"""Time fnn's public functions as a user's loop calls them against the jitted plain-JAX equivalent.

    python benchmarks/bench_calls.py --out benchmarks/results/calls_cpu
    python benchmarks/bench_calls.py --quick --out /tmp/calls

Writes results.json, results.csv, summary.md and calls.png; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `python benchmarks/bench_calls.py` puts benchmarks/ on sys.path, not the repository's root: the root goes
# first, so that the package `benchmarks` (not installed with fnn) imports from any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import calls  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results/calls"), help="output folder (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer cases and rounds (about a minute)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per case (default 61; 21 quick)"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (21 if args.quick else 61)
    if rounds < 1:
        parser.error("--rounds must be positive")
    results = calls.run(args.quick, rounds, progress=not args.no_progress)
    paths = calls.save(results, args.out)
    print(paths[2].read_text())
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
