"""Every GPU check in one run, within a time budget: the first thing to run when a GPU is available.

    python benchmarks/gpu.py                      # 540 s budget; results/gpu_<device>/
    python benchmarks/gpu.py --budget 300 --checks gradients_default,mfu
    python benchmarks/gpu.py --dry-run            # the same code at tiny sizes on the CPU (seconds)

See benchmarks/README.md ("Every GPU check in one script") and benchmarks/gpu_suite.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# `python benchmarks/gpu.py` puts benchmarks/ on sys.path, not the repository's root: the root goes
# first, so that the package `benchmarks` (not installed with fnn) imports from any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    from benchmarks import gpu_suite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=gpu_suite.BUDGET_S,
        help="seconds for all checks (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: benchmarks/results/gpu_<device>/; a temporary folder for --dry-run)",
    )
    parser.add_argument(
        "--checks",
        default=",".join(gpu_suite.NAMES),
        help="comma-separated checks to run, in priority order (default: all: %(default)s)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on JAX's CPU device, well under a minute"
    )
    args = parser.parse_args(argv)
    args.checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(args.checks) - set(gpu_suite.NAMES))
    if unknown or not args.checks:
        parser.error(f"unknown check(s) {unknown}; choose from {','.join(gpu_suite.NAMES)}")
    if args.budget < 0:
        parser.error("--budget must be >= 0")
    return args


def main(argv=None) -> int:
    """0 when every check ran or was skipped for the budget, 1 when one failed, 2 without a GPU."""
    if argv is None and "--dry-run" in sys.argv and "jax" not in sys.modules:
        os.environ["JAX_PLATFORMS"] = "cpu"  # a dry run on a GPU machine leaves the GPU alone
    from benchmarks import gpu_suite
    from benchmarks.machine import DeviceUnavailable

    args = parse_args(argv)
    try:
        device = gpu_suite.device(args.dry_run)
    except DeviceUnavailable as err:
        print(
            f"error: no GPU is visible to JAX ({err}); run with --dry-run to try the checks on the CPU at "
            "tiny sizes",
            file=sys.stderr,
        )
        return 2
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="fnn-gpu-dry-run-"))
        if args.dry_run
        else RESULTS / gpu_suite.slug(device.device_kind)
    )
    checks = [c for c in gpu_suite.CHECKS if c.name in args.checks]
    command = " ".join(["python benchmarks/gpu.py", *(sys.argv[1:] if argv is None else argv)])
    summary = gpu_suite.run_all(device, out, args.budget, args.dry_run, checks, command)
    print()
    print(gpu_suite.table(summary))
    print(f"\nwrote {out}/summary.json, summary.md and each check's files in {summary['wall_s']:.0f} s")
    return 1 if any(r["status"] == "error" for r in summary["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
