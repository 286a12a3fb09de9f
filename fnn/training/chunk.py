"""Many epochs in one compiled program: ``fnn.fit``'s chunk.

On a small network an epoch's arithmetic takes microseconds, and what a loop
adds between two epochs (launching a program, reading its statistics back,
recording them) takes longer than the epoch itself. So ``fit`` runs a chunk
of up to ``capacity`` epochs in one ``jax.jit`` program and reads back once::

    i = 0, go = True
    while go and i < limit:                                (lax.while_loop over epochs)
        params', state', stats_i = epoch(params, state, orders[i], ...)
        finite  = stats_i.finite
        halt    = not finite  or  any(rule(stats_i) for rule in rules)
        if finite: params, state = params', state'         (a non-finite epoch is never kept)
        stats[i] = stats_i;  i += 1;  go = not halt

Each slot runs exactly the program of one epoch (``epoch.epoch_body``, the
function ``make_epoch`` compiles on its own), with the same inputs: the
epoch's example order drawn on the host (``epoch_indices``) and its dropout
key ``fold_in(key, e)``, so a run's results do not depend on where its chunks
begin and end (``tests/test_chunk.py`` checks this bit for bit).

``rules`` are the callbacks' stopping decisions written for the device
(``Goal``, ``Patience``, ``MethodRule``): the chunk ends at the epoch a rule
fires on, instead of running on to its end. They are what makes a chunk end
where the run will stop; the callbacks on the host, which see every epoch's
record afterwards, still decide. Where the two could differ (a comparison in
float32 here and in float64 there), the host's decision stands and ``fit``
runs the chunk again to the epoch it chose (``limit``), which gives the same
bits: the same program on the same inputs.

A rule may also ask to keep an epoch's params (``Patience`` for
``restore_best``): the chunk returns those of the last epoch kept.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnn.training.epoch import epoch_body

__all__ = ["Goal", "MethodRule", "Patience", "below", "make_chunk"]


def below(bound: float) -> np.float32:
    """The largest float32 ``<= bound``: for a float32 ``v``, ``v <= below(b)`` exactly when ``v <= b``
    in float64, which is how the host compares."""
    b = np.float32(bound)
    return b if float(b) <= bound else np.nextafter(b, np.float32(-np.inf))


# --------------------------------------------------------------------------- rules


@dataclasses.dataclass(frozen=True)
class Goal:
    """``StopAt`` on the device: the train loss ``<= goal`` or the gradient norm
    ``sqrt(sum_l grad_norm_l^2) <= min_grad``. No state."""

    goal: float | None = None
    min_grad: float | None = None

    def __call__(self, state, stats):
        halt = jnp.bool_(False)
        if self.goal is not None:
            halt |= stats["train_loss"] <= below(self.goal)
        if self.min_grad is not None:
            halt |= jnp.sqrt(jnp.sum(jnp.square(stats["grad_norm"]))) <= below(self.min_grad)
        return state, halt, jnp.bool_(False)


@dataclasses.dataclass(frozen=True)
class Patience:
    """``EarlyStopping`` on the device. State ``(best, bad)``: the best validation loss so far and the
    epochs since it. An epoch improves when ``val_loss < best - min_delta``; the run stops once ``bad``
    reaches ``patience`` (``None``: never); ``keep`` keeps each improving epoch's params."""

    patience: int | None
    min_delta: float
    keep: bool

    @staticmethod
    def state(best: float, bad: int):
        """The device's state from the host's: ``best`` a float32's value (or inf), ``bad`` a count."""
        return np.float32(best), np.int32(bad)

    def __call__(self, state, stats):
        best, bad = state
        loss = stats["val_loss"].astype(best.dtype)
        improved = loss < best - np.float32(self.min_delta)
        best = jnp.where(improved, loss, best)
        bad = jnp.where(improved, 0, bad + 1).astype(jnp.int32)
        halt = jnp.bool_(False) if self.patience is None else bad >= self.patience
        return (best, bad), halt, improved & self.keep


@dataclasses.dataclass(frozen=True)
class MethodRule:
    """A method's own stopping rule on the device: ``halt(reports) -> bool``
    (``fnn.optimizers.Method.halt``)."""

    halt: Callable

    def __call__(self, state, stats):
        return state, jnp.asarray(self.halt(stats["reports"]), bool), jnp.bool_(False)


# --------------------------------------------------------------------------- the program


@functools.lru_cache(maxsize=32)
def make_chunk(
    net,
    tx,
    n: int,
    batch: int,
    has_val: bool,
    policy=None,
    mesh=None,
    flat: bool = False,
    report=None,
    capacity: int = 1,
    rules: tuple = (),
):
    """The jitted chunk of up to ``capacity`` epochs::

        chunk(params, opt_state, orders, first, limit, x, y, xv, yv, states, kept, key)
            -> (params, opt_state, stats, ran, halted, states, kept)

    ``orders``: ``(capacity, steps, batch)`` int32, slot ``i``'s the order of
    epoch ``first + i`` (``epoch_indices``; unused slots anything). ``limit``:
    how many epochs to run at most. ``states``: one state per rule (as the
    rule's callback gives it). ``kept``: ``(epoch, params)``, the last kept
    epoch (``-1`` and any params at first). ``key``: the run key's raw data
    for a network with dropout (epoch ``e`` draws from ``fold_in(key, e)``),
    else ``None``. ``stats``: every epoch's statistics stacked, slots past
    ``ran`` zeros; ``halted``: the last epoch run ended the chunk (non-finite
    or a rule fired); the params and state returned are those after the last
    finite epoch.
    """
    body = epoch_body(net, tx, n, batch, has_val, policy, mesh, "device", flat, report)

    def chunk(params, opt_state, orders, first, limit, x, y, xv, yv, states, kept, key=None):
        def epoch(p, s, i):
            epoch_key = None if key is None else jax.random.fold_in(jax.random.wrap_key_data(key), first + i)
            dropout = () if key is None else (jax.random.key_data(epoch_key),)
            return body(p, s, orders[i], x, y, xv, yv, *dropout)

        blank = jax.eval_shape(lambda: epoch(params, opt_state, 0)[2])
        buffers = jax.tree_util.tree_map(lambda a: jnp.zeros((capacity, *a.shape), a.dtype), blank)

        def more(carry):
            i, go = carry[0], carry[1]
            return go & (i < limit)

        def one(carry):
            i, _, p, s, states, kept, stacked = carry
            p2, s2, stats = epoch(p, s, i)
            finite = stats["finite"]
            decided = [rule(st, stats) for rule, st in zip(rules, states)]
            halt, keep = ~finite, jnp.bool_(False)
            for _, h, k in decided:
                halt, keep = halt | (finite & h), keep | (finite & k)
            p, s = _where(finite, (p2, s2), (p, s))  # a non-finite epoch is not kept
            states = _where(finite, tuple(d[0] for d in decided), states)
            kept = _where(keep, (first + i, p), kept) if kept else kept
            stacked = jax.tree_util.tree_map(lambda b, v: b.at[i].set(v), stacked, stats)
            return i + 1, ~halt, p, s, states, kept, stacked

        carry = (jnp.int32(0), jnp.bool_(True), params, opt_state, states, kept, buffers)
        ran, go, p, s, states, kept, stacked = jax.lax.while_loop(more, one, carry)
        return p, s, stacked, ran, ~go, states, kept

    return jax.jit(chunk)


def _where(c, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)
