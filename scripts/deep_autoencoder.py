"""The deep autoencoder (Hinton & Salakhutdinov 2006) from random initialisations: Hessian-free,
K-FAC, scg with exact curvature, L-BFGS, Adam and SGD with momentum (``scripts.autoencoder``).

    python scripts/deep_autoencoder.py [--budget 20] [--inits 3] [--data-dir DIR] [--quick] [--out DIR]

Digits (64-256-128-64-8 and back) by default; MNIST's 784-1000-500-250-30 when
``--data-dir`` holds its IDX files. Every method runs from the same ``--inits``
initialisations for ``--budget`` seconds of wall time each; Adam's and
momentum's learning rates are first chosen over small grids from the first
initialisation. Writes ``DIR/deep_autoencoder.png`` (training and test error
against wall time and against gradient-equivalents), ``.json`` (the curves,
the costs, the machine and the command) and ``.md`` (the table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax

# `python scripts/deep_autoencoder.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import fnn  # noqa: E402
from scripts import autoencoder, common  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=20.0, help="wall-time seconds per run (default 20)")
    p.add_argument("--inits", type=int, default=3, help="initialisations per method (default 3)")
    p.add_argument("--data-dir", help="MNIST's IDX files: train on MNIST with the papers' architecture")
    p.add_argument("--quick", action="store_true", help="a smoke run: a tiny autoencoder, a 1 s budget")
    p.add_argument("--out", default="docs/figures", help="output directory (default docs/figures)")
    args = p.parse_args(argv)
    if args.budget <= 0 or args.inits < 1:
        p.error("--budget must be positive and --inits at least 1")
    budget = 1.0 if args.quick else args.budget
    problem = (
        autoencoder.quick_problem()
        if args.quick
        else (autoencoder.mnist_problem(args.data_dir) if args.data_dir else autoencoder.digits_problem())
    )
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    params = fnn.init(jax.random.key(0), problem.net)
    costs = autoencoder.measure_costs(problem.net, params, problem.x)
    adam_lr, adam_grid = autoencoder.tune(problem, "adam", autoencoder.ADAM_GRID, costs, budget)
    momentum_lr, momentum_grid = autoencoder.tune(
        problem, "momentum", autoencoder.MOMENTUM_GRID, costs, budget
    )
    curves = {}
    for method in autoencoder.methods(adam_lr, momentum_lr):
        curves[method.label] = [
            autoencoder.run_method(problem, method, seed, costs, budget) for seed in range(args.inits)
        ]
        print(
            f"{method.label}: train error {curves[method.label][0][-1]['train']:.3f} "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    sgd = next(label for label in curves if label.startswith("SGD"))
    # momentum's median end
    target = float(sorted(r[-1]["train"] for r in curves[sgd])[len(curves[sgd]) // 2])
    summaries = [autoencoder.summarise(label, runs, target) for label, runs in curves.items()]
    table = autoencoder.table(summaries, target)
    out = os.path.join(args.out, "deep_autoencoder")
    common.write_json(
        out + ".json",
        {
            "problem": problem.name,
            "sizes": list(problem.net.sizes),
            "budget_s": budget,
            "inits": args.inits,
            "costs": costs,
            "adam_grid": adam_grid,
            "momentum_grid": momentum_grid,
            "target": target,
            "summary": summaries,
            "curves": curves,
            "seconds": time.perf_counter() - t0,
        },
    )
    with open(out + ".md", "w") as f:
        f.write(table)
    autoencoder.plot(curves, out + ".png")
    print(table)
    print(f"wrote {out}.png, .json, .md in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
