"""Time every gradient method across network sizes; write CSV, JSON, summary and plots.

    python benchmarks/bench_gradients.py --quick --out /tmp/bench
    python benchmarks/bench_gradients.py --out benchmarks/results/cpu            # full CPU grid
    python benchmarks/bench_gradients.py --device gpu --out benchmarks/results/gpu
    # residual and cascade nets
    python benchmarks/bench_gradients.py --grid graphs --out benchmarks/results/graphs_cpu

See benchmarks/README.md for what the columns and plots mean.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# `python benchmarks/bench_gradients.py` puts benchmarks/ on sys.path, not the repository's root:
# the root goes first, so that the package `benchmarks` (not installed with fnn) imports from any
# working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import benchmarks  # noqa: E402
from benchmarks import analysis, output  # noqa: E402
from benchmarks.grids import GRIDS  # noqa: E402
from benchmarks.machine import DEVICE_KINDS, DeviceUnavailable, resolve_kind  # noqa: E402
from benchmarks.runner import ALL_METHODS, GRAPH_METHODS  # noqa: E402


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown}; choose from {','.join(ALL_METHODS)}")
    if "forward" not in names:  # every cost is also reported in forward passes
        names = ("forward", *names)
    return names


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the small grid (under 2 minutes on 2 CPU cores)"
    )
    parser.add_argument(
        "--grid",
        choices=GRIDS,
        help="size grid (default: full on cpu, gpu on gpu; "
        "--quick means quick; graphs: residual and cascade fnn.Graph nets; "
        "tiny and graphs_tiny are for tests)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_KINDS,
        default="cpu",
        help="cpu (default), gpu, or auto: a GPU when JAX sees one",
    )
    parser.add_argument("--dtype", choices=benchmarks.DTYPES, default="float32")
    parser.add_argument(
        "--methods",
        type=_methods,
        help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: all; "
        f"{','.join(GRAPH_METHODS)} on the graph grids)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="run nothing: re-analyse and redraw from --out's results.partial.json (the cases "
        "a stopped run finished) or else its results.json",
    )
    args = parser.parse_args(argv)
    args.device = resolve_kind(args.device)
    if args.quick and args.grid not in (None, "quick"):
        parser.error("--quick and --grid disagree; give one of them")
    args.grid = "quick" if args.quick else args.grid or ("gpu" if args.device == "gpu" else "full")
    return args


def replot(out: Path) -> int:
    """``--plot-only``: the summary and figures again, from the results already in ``out``."""
    source = out / output.PARTIAL  # present only when the last run stopped before writing everything
    if not source.exists():
        source = out / "results.json"
    if not source.exists():
        print(f"error: no results.json or {output.PARTIAL} in {out}", file=sys.stderr)
        return 2
    results = analysis.analyse(output.read_json(source))
    paths = benchmarks.save(results, out)
    print(
        f"wrote {len(paths)} files to {out} from {source.name}"
        + ("" if results.get("complete", True) else f" ({results['cases_done']} of {results['cases']} cases)")
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        return replot(args.out)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def keep(partial):  # a long grid stopped early keeps the cases it finished
        output.write_json(partial, args.out / output.PARTIAL)
        if args.no_progress:
            print(
                f"case {partial['cases_done']}/{partial['cases']}: {partial['rows'][-1]['case']} "
                f"({partial['wall_s']:.0f} s)",
                flush=True,
            )

    try:
        results = benchmarks.benchmark(
            args.grid, args.device, args.dtype, args.methods, not args.no_progress, keep
        )
    except DeviceUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = benchmarks.save(results, args.out)
    for row in results["rows"]:
        if row["status"] == "skipped" and row["method"] == "torch":
            print(f"note: {row['note']}")
            break
    for t in results["targets"]:
        met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        print(f"{met:>6}  {t['target']}: {t['detail']}")
    print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
