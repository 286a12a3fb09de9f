"""What the guard on device labels costs a call: fnn's functions on integer labels, with and without it.

    python benchmarks/bench_label_guard.py [--rounds 2001]

Integer labels on the device are not read on the per-call path; the compiled
program encodes a label out of range as a row of NaN and multiplies its
results by ``where(isnan(loss), nan, 1)`` (``fnn.core.validation.guard``).
This times the programs of ``fnn.backprop``, ``fnn.loss`` and
``fnn.loss_with_manual_vjp`` as the public functions build them, against the
same programs traced as before the guard (plain ``jax.nn.one_hot``, no
factor), in interleaved rounds (a fresh random order each round), and prints
the median of the paired ratios per function and network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import jax

# `python benchmarks/bench_label_guard.py` puts benchmarks/ on sys.path, not the repository's root:
# the root goes first, so that the package `benchmarks` (not installed with fnn) imports from any
# working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import fnn  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from fnn.core import dispatch, validation  # noqa: E402
from fnn.core.backprop import backprop_core  # noqa: E402
from fnn.core.forward import loss_core  # noqa: E402
from fnn.core.manual_vjp import manual_loss  # noqa: E402
from fnn.scale.timing import paired_ratio, time_interleaved  # noqa: E402

CASES = (((8, 16, 3), 32), ((64, 128, 128, 10), 64), ((784, 256, 256, 10), 128), ((784, 1024, 1024, 10), 256))
CORES = {"backprop": backprop_core, "loss": loss_core, "loss_with_manual_vjp": manual_loss}


def programs(core, net):
    """``(guarded, unguarded)``: jitted ``(params, x, y) -> core``, to be traced with and without
    the guard."""
    return (
        jax.jit(dispatch._checked(core, net, keyed=False)),
        jax.jit(dispatch._checked(core, net, keyed=False)),
    )


def case(core, sizes, batch, rounds):
    net = fnn.MLP(sizes, activation="relu", output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
    guarded, unguarded = programs(core, net)
    jax.block_until_ready(guarded(params, x, y))
    with (
        mock.patch.object(validation, "device_labels", lambda net, y: False),
        mock.patch.object(validation, "_one_hot", lambda y, n, dtype: jax.nn.one_hot(y, n, dtype=dtype)),
    ):
        jax.block_until_ready(unguarded(params, x, y))  # traced (and compiled) here as before the guard
    t = time_interleaved(
        {
            "guarded": lambda: jax.block_until_ready(guarded(params, x, y)),
            "unguarded": lambda: jax.block_until_ready(unguarded(params, x, y)),
        },
        rounds,
    )
    return t["guarded"].median_s, t["unguarded"].median_s, paired_ratio(t["guarded"], t["unguarded"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2001)
    args = ap.parse_args()
    print(describe(jax.devices()[0]))
    print(f"{'function':22s} {'network @ batch':24s} {'guarded':>10s} {'unguarded':>10s} {'ratio':>7s}")
    for name, core in CORES.items():
        for sizes, batch in CASES:
            g, u, r = case(core, sizes, batch, args.rounds if batch < 128 else max(args.rounds // 10, 21))
            network = "-".join(map(str, sizes)) + f" @ {batch}"
            print(f"{name:22s} {network:24s} {g * 1e6:8.1f}us {u * 1e6:8.1f}us {r:7.3f}")


if __name__ == "__main__":
    main()
