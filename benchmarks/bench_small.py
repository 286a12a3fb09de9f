r"""Small networks: fnn.fit vs a plain JAX + optax program vs PyTorch eager vs torch.compile, per epoch.

Five workloads, each trained by every contender from the same float32 params, data, loss, optimizer,
learning rate and batch size (``benchmarks/small.py`` says how, exactly):

* ``simplechains``: SimpleChains.jl's benchmark, a 4-32-16-4 tanh MLP learning the 2x2 matrix
  exponential from 10,000 examples, Adam lr 1e-3, full batch, 10,000 epochs;
* ``digits``: ``fnn train --dataset digits`` (64-128-128-10 relu/softmax, cross-entropy, Adam lr
  1e-3, minibatch 64, 50 epochs, the 1,212 examples of its training split);
* ``curve_gd``, ``curve_rprop``, ``curve_lm``: a 1-10-1 tanh net fitting ``sin(x)`` at 200 points of
  ``[0, 2 pi]``, full batch, 1,000 epochs, with gradient descent, Rprop and Levenberg-Marquardt
  (which has neither an optax transform nor a PyTorch optimizer: fnn alone).

The contenders: ``fnn.fit(...)`` as a user calls it; plain JAX + optax with all epochs in one jitted
``lax.scan``; PyTorch eager (``nn.Sequential``, ``torch.optim``, a Python loop); ``torch.compile``
of its training step (``skipped`` with the reason where it fails). Each measurement is a fresh
Python process that warms up with one whole training, then times one more; every round runs every
contender of a workload once, in a fresh random order (``--seed``, default the time); medians over
the rounds, and paired ratios (the median of each round's own ratio). The fraction of the machine's
limit is the epoch's arithmetic (matmul FLOPs at the measured matmul peak, hidden activations at
the measured tanh/relu rate) over the measured time. Writes ``small.json`` (everything: the
machine, versions, command, seed, every sample), ``small.md`` (the table) and ``small.png`` to
``--out``:

    python benchmarks/bench_small.py                        # the full run: benchmarks/results/small_cpu/
    python benchmarks/bench_small.py --quick --out /tmp/small_quick      # a smoke run: few epochs, 2 rounds
    python benchmarks/bench_small.py --plot-only --out benchmarks/results/small_cpu   # redraw md and png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# `python benchmarks/bench_small.py` puts benchmarks/ on sys.path, not the repository's root: the root goes
# first, so that the package `benchmarks` (not installed with fnn) imports from any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from benchmarks import small  # noqa: E402


def _names(text: str | None, known) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; expected some of {list(known)}")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "small_cpu",
        help="output folder (default: benchmarks/results/small_cpu)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: each workload's few quick epochs, 2 rounds"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"interleaved rounds (default {small.DEFAULT_ROUNDS}; quick: {small.QUICK_ROUNDS})",
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the contenders' order in each round (default: the time)"
    )
    parser.add_argument("--epochs", type=int, help="the same number of epochs for every workload")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(small.WORKLOADS)}")
    parser.add_argument("--contenders", help=f"comma-separated subset of {','.join(small.CONTENDERS)}")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of a fresh one per measurement (faster; for smoke tests)",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="run nothing: redraw small.md and small.png from small.json"
    )
    args = parser.parse_args(argv)
    if args.plot_only:
        results = json.loads((args.out / "small.json").read_text())
        for path in small.redraw(results, args.out):
            print(f"wrote {path}")
        return 0
    for name, value in (("--rounds", args.rounds), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            parser.error(f"{name} must be positive")
    try:
        workloads = _names(args.workloads, small.WORKLOADS)
        contenders = _names(args.contenders, small.CONTENDERS)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    results = small.run(
        workloads,
        contenders,
        rounds=args.rounds,
        seed=args.seed,
        quick=args.quick,
        epochs=args.epochs,
        fresh=not args.in_process,
        on_round=lambda partial: small.save_partial(partial, args.out),
        command=[Path(sys.executable).name, *sys.argv],
    )
    paths = small.save(results, args.out)
    print(paths[1].read_text())
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
