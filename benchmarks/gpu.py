"""Every GPU check in one run, within a time budget: the first thing to run when a GPU is available.

    python benchmarks/gpu.py                      # 540 s budget; results/gpu_<device>/
    python benchmarks/gpu.py --budget 300 --checks gradients_default,mfu
    python benchmarks/gpu.py --dry-run            # the same code at tiny sizes on the CPU (seconds)

See benchmarks/README.md ("Every GPU check in one script") and fnn/bench/gpu.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    from fnn.bench import gpu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=gpu.BUDGET_S,
                        help="seconds for all checks (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/gpu_<device>/; "
                                                 "a temporary folder for --dry-run)")
    parser.add_argument("--checks", default=",".join(gpu.NAMES),
                        help="comma-separated checks to run, in priority order (default: all: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on JAX's CPU device, well under a minute")
    args = parser.parse_args(argv)
    args.checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(args.checks) - set(gpu.NAMES))
    if unknown or not args.checks:
        parser.error(f"unknown check(s) {unknown}; choose from {','.join(gpu.NAMES)}")
    if args.budget < 0:
        parser.error("--budget must be >= 0")
    return args


def main(argv=None) -> int:
    """0 when every check ran or was skipped for the budget, 1 when one failed, 2 without a GPU."""
    if argv is None and "--dry-run" in sys.argv and "jax" not in sys.modules:
        os.environ["JAX_PLATFORMS"] = "cpu"  # a dry run on a GPU machine leaves the GPU alone
    from fnn.bench import gpu
    from fnn.scale.machine import DeviceUnavailable

    args = parse_args(argv)
    try:
        device = gpu.device(args.dry_run)
    except DeviceUnavailable as err:
        print(f"error: no GPU is visible to JAX ({err}); run with --dry-run to try the checks on the CPU at "
              "tiny sizes", file=sys.stderr)
        return 2
    out = args.out or (Path(tempfile.mkdtemp(prefix="fnn-gpu-dry-run-")) if args.dry_run
                       else RESULTS / gpu.slug(device.device_kind))
    checks = [c for c in gpu.CHECKS if c.name in args.checks]
    command = " ".join(["python benchmarks/gpu.py", *(sys.argv[1:] if argv is None else argv)])
    summary = gpu.run_all(device, out, args.budget, args.dry_run, checks, command)
    print()
    print(gpu.table(summary))
    print(f"\nwrote {out}/summary.json, summary.md and each check's files in {summary['wall_s']:.0f} s")
    return 1 if any(r["status"] == "error" for r in summary["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
