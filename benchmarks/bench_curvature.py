"""Time Hessian- and Gauss-Newton-vector products: fnn's hand-written R-operator against JAX and PyTorch.

    # about 10 minutes on 2 CPU cores
    python benchmarks/bench_curvature.py --out benchmarks/results/curvature_cpu
    # about a minute
    python benchmarks/bench_curvature.py --quick --out /tmp/curvature

Writes results.csv, results.json, summary.md, cost_in_gradients.png, ratios.png and fd_error_vs_eps.png;
prints the targets, met or not (the run does not fail on a missed one). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# `python benchmarks/bench_curvature.py` puts benchmarks/ on sys.path, not the repository's root:
# the root goes first, so that the package `benchmarks` (not installed with fnn) imports from any
# working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def main(argv=None) -> int:
    from benchmarks import curvature
    from benchmarks.machine import DEVICE_KINDS, DeviceUnavailable

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/curvature"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--grid",
        choices=curvature.GRIDS,
        default=None,
        help="sizes (default: full; --quick is --grid quick; tiny: the smoke test's)",
    )
    parser.add_argument("--quick", action="store_true", help="four cases, about a minute on 2 CPU cores")
    parser.add_argument("--device", choices=DEVICE_KINDS, default="cpu", help="default: %(default)s")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick and args.grid not in (None, "quick"):
        parser.error("--quick is --grid quick")
    try:
        results = curvature.run(
            args.grid or ("quick" if args.quick else "full"), args.device, progress=not args.no_progress
        )
    except DeviceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = curvature.save(results, args.out)
    print(paths[2].read_text())
    curvature.print_targets(results)
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out} in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
