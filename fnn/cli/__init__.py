"""Internal: ``fnn demo`` and ``fnn train``. Public as the ``fnn`` command (``python -m fnn``)."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from fnn.cli import demo

    sizes = tuple(int(s) for s in args.sizes.split(","))
    return 0 if demo.run(sizes=sizes, activation=args.activation, seed=args.seed) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnn", description="Feed-forward networks with hand-written backprop."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build a network, run backprop, print the gradient check and timings")
    demo.add_argument("--sizes", default="8,32,32,4", help="layer widths, inputs first (default 8,32,32,4)")
    demo.add_argument("--activation", default="tanh", help="hidden activation (default tanh)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    from fnn.cli import train

    train.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"fnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
