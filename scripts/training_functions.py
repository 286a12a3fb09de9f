"""MATLAB's comparison of training functions (SIN, PARITY, CANCER), rebuilt on fnn's optimizers.

    python scripts/training_functions.py [--trials 30] [--problems SIN PARITY CANCER]
        [--methods LM SCG ...] [--out DIR]

Trains each problem's network with LM, BFG, RP, SCG, CGB, CGF, CGP, OSS and
GDX, MATLAB's nine, and SCG-GN and SCG-H, fnn's scaled conjugate gradient
with exact Gauss-Newton and Hessian curvature (``benchmarks.training_functions``
says which fnn optimizer each is, how the data and networks are built, and how
MATLAB's mse goal becomes fnn's loss), ``--trials`` times from different initial weights, until the goal or
``--max-epochs``. Writes ``DIR/training_functions.md`` (one table per problem:
mean, min and max time and epochs, trials reaching the goal), ``.json`` (every
trial, the summary, the machine and the command) and ``.png`` (the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

# `python scripts/training_functions.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import machine, training_functions  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument(
        "--max-epochs", type=int, default=2000, help="epochs of a trial that does not reach the goal"
    )
    all_problems, all_methods = list(training_functions.PROBLEMS), list(training_functions.METHODS)
    p.add_argument("--problems", nargs="+", default=all_problems, choices=all_problems)
    p.add_argument("--methods", nargs="+", default=all_methods, choices=all_methods)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights and of the methods' order"
    )
    p.add_argument("--out", default=f"benchmarks/results/training_functions_{jax.default_backend()}")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.trials < 1 or args.max_epochs < 1:
        p.error("--trials and --max-epochs must be positive")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    problems = {name: training_functions.PROBLEMS[name]() for name in args.problems}
    rows = training_functions.run(
        list(problems.values()),
        args.methods,
        args.trials,
        args.max_epochs,
        args.seed,
        progress=not args.no_progress,
    )
    summary = training_functions.summary(rows)
    base = os.path.join(args.out, "training_functions")
    text = training_functions.table(summary, problems)
    header = (
        f"Machine: {machine.cpu_model()} ({machine.cpu_cores()} cores), JAX {jax.__version__} on "
        f"{jax.devices()[0].device_kind}. Command: `{' '.join(['python', *sys.argv])}`. "
        f"{args.trials} trials per method and problem, at most {args.max_epochs} epochs.\n\n"
    )
    with open(base + ".md", "w") as fh:
        fh.write(header + text)
    with open(base + ".json", "w") as fh:
        json.dump(
            {
                "method": training_functions.__doc__.strip(),
                "machine": machine.describe(jax.devices()[0]),
                "command": " ".join(sys.argv),
                "trials": args.trials,
                "max_epochs": args.max_epochs,
                "seed": args.seed,
                "summary": summary,
                "rows": rows,
            },
            fh,
            indent=1,
        )
    training_functions.plot(summary, base + ".png")
    print(text)
    print(f"wrote {base}.md, .json, .png in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
