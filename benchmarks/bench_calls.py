"""Time fnn's public functions as a user's loop calls them against the jitted plain-JAX equivalent.

    python benchmarks/bench_calls.py --out benchmarks/results/calls_cpu
    python benchmarks/bench_calls.py --quick --out /tmp/calls

Writes results.json, results.csv, summary.md and calls.png; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from fnn.bench import calls
from fnn.bench.output import write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/calls"), help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="fewer cases and rounds (about a minute)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 61; 21 quick)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (21 if args.quick else 61)
    if rounds < 1:
        parser.error("--rounds must be positive")
    results = calls.run(args.quick, rounds, progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "results.json")
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results["rows"][0]))
        writer.writeheader()
        writer.writerows(results["rows"])
    summary = calls.summary_markdown(results)
    (args.out / "summary.md").write_text(summary)
    calls.plot(results, args.out / "calls.png")
    print(summary)
    print(f"wrote results.json, results.csv, summary.md and calls.png to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
