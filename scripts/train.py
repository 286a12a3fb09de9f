"""Thin wrapper: ``python scripts/train.py ARGS`` is ``fnn train ARGS``."""

import sys

from fnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
