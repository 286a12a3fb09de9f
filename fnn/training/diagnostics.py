"""Why training fails: per-layer gradient and delta norms, saturation, dead units, update sizes.

For a network with layers ``l = 1..L`` and a probe batch ``(x, y)`` of ``B``
examples, ``layer_stats`` returns, per layer:

=============  ==========================================================================
grad_norm      ``||(dL/dW_l, dL/db_l)||``, the Frobenius norm of the layer's gradient
delta_norm     ``||delta_l||_F`` with ``delta_l = dL/dz_l`` (batch, n_l) of the batch-mean loss
saturation     sigmoid layers: fraction of ``a_l`` outside ``[0.01, 0.99]``; tanh layers:
               fraction of ``|a_l| > 0.99`` (``SATURATION``); there ``f'(z) < 0.01``,
               so almost no gradient passes. NaN for other activations.
dead_relu      relu layers: fraction of units whose output is 0 on every example of the
               probe batch (they receive no gradient from it). NaN for other activations.
=============  ==========================================================================

and ``update_ratio`` compares two parameter sets, e.g. before and after an
epoch: ``||W_l' - W_l|| / ||W_l||`` per layer (weights only). A healthy run
keeps it around 1e-3 per step; far below, the layer is not learning; far
above, it is thrashing.

The deltas come from the same recursion as ``fnn.core.backprop.backward``,

    delta_L = dL/dz_L,    delta_{l-1} = f'_{l-1}(z_{l-1}) * (delta_l @ W_l^T),

and the gradient from ``dL/dW_l = a_{l-1}^T delta_l``, ``dL/db_l = sum_batch delta_l``.
A vanishing gradient shows as ``grad_norm`` (and ``delta_norm``) falling by
orders of magnitude from the last layer to the first; saturation of sigmoid
or tanh units is the usual cause (each saturated layer multiplies the delta by
``f' < 0.01``).

``fnn.fit(..., diagnostics=True)`` calls ``record`` on a fixed probe batch (the
first ``PROBE`` training examples) after every epoch and keeps the results in
``history.diagnostics``: a dict of per-epoch lists of per-layer values, keys
``KEYS``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import protocol, validation

__all__ = [
    "KEYS",
    "PROBE",
    "SATURATION",
    "append",
    "dead_fraction",
    "deltas",
    "layer_stats",
    "probe_batch",
    "record",
    "saturation",
    "summary",
    "to_csv",
    "update_ratio",
]

Array = jax.Array

# Bounds past which a unit counts as saturated: its slope f'(z) is below ~0.01.
SATURATION = {"sigmoid": (0.01, 0.99), "tanh": (-0.99, 0.99)}
PROBE = 256  # examples in the probe batch of fit(..., diagnostics=True)
KEYS = ("grad_norm", "delta_norm", "saturation", "dead_relu", "update_ratio")
_CHAIN = protocol.Network()  # update_ratio without a net: the groups of a list of layers


def deltas(net, params, cache, y: Array) -> list[Array]:
    """``[delta_1, ..., delta_L]``, ``delta_l = dL/dz_l``, by the network's own delta recursion."""
    return net.backward(params, cache, protocol.output_delta(net, cache, y))[1]


def saturation(name: str, a: Array) -> Array:
    """Fraction of the entries of ``a`` (one layer's outputs) past ``SATURATION[name]``; NaN if none."""
    if name not in SATURATION:
        return jnp.array(jnp.nan, a.dtype)
    lo, hi = SATURATION[name]
    return jnp.mean((a < lo) | (a > hi))


def dead_fraction(name: str, a: Array) -> Array:
    """Fraction of relu units that output 0 on every example of the batch; NaN for other activations."""
    if name != "relu":
        return jnp.array(jnp.nan, a.dtype)
    return jnp.mean(jnp.all(a <= 0, axis=0))


@functools.partial(jax.jit, static_argnums=0)
def _layer_stats(net, params, x, y) -> dict:
    cache = net.forward(params, x)
    grads, ds = net.backward(params, cache, protocol.output_delta(net, cache, y))
    units = net.units(cache)
    return {
        "grad_norm": protocol.group_norms(net, grads),
        "delta_norm": jnp.stack([jnp.linalg.norm(d) for d in ds]),
        "saturation": jnp.stack([saturation(name, a) for name, a in units]),
        "dead_relu": jnp.stack([dead_fraction(name, a) for name, a in units]),
    }


def layer_stats(net, params: list[dict], x, y) -> dict[str, np.ndarray]:
    """Per-layer ``grad_norm``, ``delta_norm``, ``saturation``, ``dead_relu`` on ``(x, y)``
    (arrays of length L)."""
    x, y = validation.prepare(net, params, x, y)
    return {k: np.asarray(v, np.float64) for k, v in _layer_stats(net, params, x, y).items()}


@functools.partial(jax.jit, static_argnums=0)
def _update_ratios(net, before, after):
    def ratio(b, a):
        change = jax.tree_util.tree_map(jnp.subtract, protocol.weights(a), protocol.weights(b))
        return protocol.norm(change) / protocol.norm(protocol.weights(b))

    return jnp.stack([ratio(b, a) for (_, b), (_, a) in zip(net.groups(before), net.groups(after))])


def update_ratio(before, after, net=None) -> np.ndarray:
    """``||W_after - W_before|| / ||W_before||`` per layer (group of ``net``; default: a list of layers)."""
    return np.asarray(_update_ratios(net or _CHAIN, before, after), np.float64)


def probe_batch(x, y, size: int = PROBE):
    """The fixed probe batch: the first ``size`` examples, as host arrays."""
    return np.asarray(x[:size]), np.asarray(y[:size])


def record(net, before: list[dict], after: list[dict], x, y) -> dict[str, list[float]]:
    """One epoch's diagnostics: ``layer_stats`` at ``after`` on ``(x, y)``, and the update ratio."""
    stats = {k: v for k, v in _layer_stats(net, after, x, y).items()}
    stats["update_ratio"] = _update_ratios(net, before, after)
    return {k: [float(v) for v in np.asarray(stats[k], np.float64)] for k in KEYS}


def append(store: dict, rec: dict) -> None:
    """Append one epoch's ``record`` to ``history.diagnostics``."""
    for k in KEYS:
        store.setdefault(k, []).append(rec[k])


def to_csv(history, path) -> None:
    """``epoch, <key>_<layer>...``: one row per epoch of ``history.diagnostics``."""
    d = history.diagnostics
    if not d:
        raise ValueError("the history holds no diagnostics: train with fit(..., diagnostics=True)")
    n_layers = len(d["grad_norm"][0])
    header = ["epoch"] + [f"{k}_{l + 1}" for k in KEYS for l in range(n_layers)]
    lines = [",".join(header)]
    for i, epoch in enumerate(history.epoch[-len(d["grad_norm"]) :]):
        cells = [str(epoch)] + ["" if math.isnan(v) else repr(v) for k in KEYS for v in d[k][i]]
        lines.append(",".join(cells))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def summary(stats: dict) -> dict:
    """Headline numbers of one ``layer_stats``: the first/last layer gradient-norm ratio and the extremes."""
    g = np.asarray(stats["grad_norm"], np.float64)
    return {
        "first_over_last": float(g[0] / g[-1]) if g[-1] > 0 else math.nan,
        "max_over_min": float(g.max() / g.min()) if g.min() > 0 else math.inf,
        "max_saturation": float(np.nanmax(stats["saturation"]))
        if np.isfinite(stats["saturation"]).any()
        else math.nan,
        "max_dead_relu": float(np.nanmax(stats["dead_relu"]))
        if np.isfinite(stats["dead_relu"]).any()
        else math.nan,
    }
