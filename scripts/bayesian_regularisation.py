"""Bayesian regularisation against Levenberg-Marquardt: an oversized network on a noisy sine.

    python scripts/bayesian_regularisation.py [--hidden 20] [--seeds 10] [--out DIR]

Fits 1-20-1 (61 parameters) to 41 samples of sin(2 pi x) with N(0, 0.1^2)
noise, as in MATLAB's ``trainbr`` example, with ``levenberg_marquardt`` and
with ``br`` from the same initial weights, and measures each fit's mse
against the noise-free function on 401 points. Writes
``DIR/bayesian_regularisation.png`` (both fits of the first seed, and br's
effective number of parameters per epoch) and ``.json`` (every seed's
numbers, the machine and the command).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# `python scripts/bayesian_regularisation.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scripts import bayes, common  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=20)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument(
        "--seeds", type=int, default=10, help="noise draws and initial weights, each run with both methods"
    )
    p.add_argument("--out", default="docs/figures", help="output directory")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        result = bayes.bayesian_regularisation(args.hidden, noise=args.noise, epochs=args.epochs, seed=seed)
        if seed == 0:
            bayes.plot_bayesian(result, os.path.join(args.out, "bayesian_regularisation.png"))
        runs.append({"seed": seed, **bayes.bayesian_summary(result)})
        print(
            f"seed {seed}: test mse levenberg_marquardt {runs[-1]['test_mse_levenberg_marquardt']:.5f}, "
            f"br {runs[-1]['test_mse_br']:.5f} (gamma {runs[-1]['br_gamma']:.1f} of {runs[-1]['n_params']})"
        )
    better = sum(r["test_mse_br"] < r["test_mse_levenberg_marquardt"] for r in runs)
    medians = {m: statistics.median(r[f"test_mse_{m}"] for r in runs) for m in ("levenberg_marquardt", "br")}
    print(
        f"br's test mse is below levenberg_marquardt's for {better} of {len(runs)} seeds; medians "
        f"{medians['br']:.5f} vs {medians['levenberg_marquardt']:.5f}"
    )
    path = os.path.join(args.out, "bayesian_regularisation.json")
    common.write_json(
        path,
        {"seconds": time.perf_counter() - t0, "br_better": better, "median_test_mse": medians, "runs": runs},
    )
    print(f"wrote {path} and the .png beside it in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
