"""Gradient descent at the edge of stability (Cohen et al. 2021): does the sharpness rise to 2/eta
and stay there?

    python scripts/edge_of_stability.py [--quick] [--every N] [--seed N] [--out DIR]

Full-batch gradient descent from one init at several step sizes ``eta`` on
1000 digits (tanh 64-64-64-10, mse on one-hot targets, 12000 steps, 2/eta =
13, 15, 16, 20) and on a 1-D sine regression (tanh 1-64-64-1, mse, 10000
steps, 2/eta = 20, 30, 45, 80); every ``N`` steps (default 20) the top
Hessian eigenvalue by warm-started Lanczos over ``fnn.curvature``'s exact
Hessian-vector products (``scripts.eos``). About 2.5
minutes on two cores. Writes ``DIR/edge_of_stability.png`` (sharpness with
2/eta dashed, and loss, vs step), ``.json`` (the summaries, the curves at each
measurement, the machine and the command) and ``.md`` (the table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# `python scripts/edge_of_stability.py` puts scripts/ on sys.path, not the repository's root: the root
# goes first, so that the packages `scripts` and `benchmarks` (not installed with fnn) import from
# any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from scripts import common, eos  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: small nets, 200 and 1000 steps")
    p.add_argument("--every", type=int, default=20, help="steps between sharpness measurements (default 20)")
    p.add_argument("--seed", type=int, default=0, help="the init's seed (default 0)")
    p.add_argument("--out", default="docs/figures", help="output directory (default docs/figures)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    runs = {}
    for plan in eos.plans(args.quick):
        runs[plan.problem.name] = eos.edge_of_stability(
            plan.problem,
            plan.etas,
            plan.steps,
            every=args.every,
            seed=args.seed,
            progress=lambda r: print(_progress(r, time.perf_counter() - t0), flush=True),
        )
    summaries = [eos.summarise(r) for rs in runs.values() for r in rs]
    table = eos.summary_table(summaries)
    out = os.path.join(args.out, "edge_of_stability")
    curves = [eos.curves(r) for rs in runs.values() for r in rs]
    common.write_json(
        out + ".json",
        {
            "seconds": time.perf_counter() - t0,
            "band": eos.BAND,
            "reached": eos.REACHED,
            "residual_tol": eos.RESIDUAL_TOL,
            "summary": summaries,
            "curves": curves,
        },
    )
    with open(out + ".md", "w") as f:
        f.write(table)
    eos.plot_edge_of_stability(runs, out + ".png")
    print(table)
    print(f"wrote {out}.png, .json, .md in {time.perf_counter() - t0:.1f} s")
    return 0


def _progress(r: dict, elapsed: float) -> str:
    """One finished run as a line of the progress printout."""
    return (
        f"{elapsed:6.0f} s  {r['problem'].split(' (')[0]:20s} eta {r['eta']:.4g} (2/eta {2 / r['eta']:.3g}): "
        f"sharpness {r['sharpness'][0]:.2f} -> max {max(r['sharpness']):.2f}, "
        f"loss {r['loss'][0]:.3g} -> {r['loss'][-1]:.3g}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
