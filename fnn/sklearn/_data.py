"""Rows of a training set, dense or scipy-sparse, moved to the device in fixed-size blocks.

A dense set goes to the device once per fit and an epoch gathers its
minibatches there (``dense_epoch``). A sparse one stays on the host: each
minibatch, and each chunk of a full-batch pass, is densified on its own, so
memory grows with the batch, never with the data set. Blocks are padded with
rows of weight 0 to a fixed size: one compiled program per size.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from fnn.scale import traced_cache
from fnn.sklearn import _objective

CHUNK = 2048  # rows per block of a full-batch pass or a prediction


def precision(dtype):
    """The context in which fnn computes in ``dtype``: float64 turns on JAX's x64 mode for its duration."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def block_size(n: int) -> int:
    """The padded size of a block of ``n <= CHUNK`` rows: the next power of two, at least 16."""
    return min(CHUNK, max(16, 1 << max(n - 1, 0).bit_length()))


def dense_rows(X, rows) -> np.ndarray:
    """``X[rows]`` as a dense array (a sparse matrix is densified here, one block at a time)."""
    part = X[rows]
    return part.toarray() if sp.issparse(part) else np.asarray(part)


def padded(block: np.ndarray, size: int) -> np.ndarray:
    """``block`` with zero rows appended up to ``size`` rows."""
    out = np.zeros((size, *block.shape[1:]), block.dtype)
    out[: len(block)] = block
    return out


def full_batch(net, theta, X, y, w, alpha, dtype):
    """The objective at packed parameters ``theta`` on the whole set: ``(data term, penalty, packed
    dJ/dtheta)`` (``_objective.packed_penalised``). One program when the set is dense (and on the
    device); chunk by chunk when it is sparse."""
    if not sp.issparse(X):
        return _objective.packed_objective(net, theta, X, y, w, alpha)
    size = block_size(min(X.shape[0], CHUNK))
    loss_sum, grad_sum = 0.0, 0.0
    for start in range(0, X.shape[0], size):
        rows = slice(start, start + size)
        blocks = (
            padded(dense_rows(X, rows).astype(dtype, copy=False), size),
            padded(y[rows], size),
            padded(w[rows], size),
        )
        part_loss, part_grads = _objective.packed_sums(net, theta, *blocks)
        loss_sum, grad_sum = loss_sum + part_loss, grad_sum + part_grads
    return _objective.packed_penalised(net, theta, loss_sum, grad_sum, jnp.asarray(w.sum(), dtype), alpha)


def predict(net, params, X, dtype) -> np.ndarray:
    """The network's outputs for every row of ``X`` (dense or sparse), in padded blocks."""
    n = X.shape[0]
    size = block_size(min(n, CHUNK))
    out = []
    for start in range(0, n, size):
        block = dense_rows(X, slice(start, start + size)).astype(dtype, copy=False)
        yhat = traced_cache.call(_objective.predict, (net,), repr(net), params, padded(block, size))
        out.append(np.asarray(yhat)[: len(block)])
    return np.concatenate(out) if out else np.zeros((0, net.n_out), dtype)
