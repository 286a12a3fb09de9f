"""Metrics on network outputs: accuracy, confusion matrix, R^2 (jnp, traceable)."""

from __future__ import annotations

import jax.numpy as jnp


def correct(net, yhat, y):
    """Number of correct predictions in a batch, or ``None`` for regression.

    Classification (``cross_entropy``): argmax of the output against argmax of
    the one-hot target. Binary (``bce``): ``yhat > 0.5`` against ``y > 0.5``.
    """
    if net.loss == "cross_entropy":
        return jnp.sum(jnp.argmax(yhat, axis=-1) == jnp.argmax(y, axis=-1))
    if net.loss == "bce":
        return jnp.sum(jnp.all((yhat > 0.5) == (y > 0.5), axis=-1))
    return None


def has_accuracy(net) -> bool:
    return net.loss in ("cross_entropy", "bce")


def accuracy(net, yhat, y):
    c = correct(net, yhat, y)
    return None if c is None else c / yhat.shape[0]


def confusion_matrix(labels, predicted, n_classes: int):
    """``m[i, j]`` = examples of class ``i`` predicted as ``j``."""
    return jnp.zeros((n_classes, n_classes), jnp.int32).at[labels, predicted].add(1)


def r2(yhat, y):
    """Coefficient of determination, averaged over outputs."""
    ss_res = jnp.sum((y - yhat) ** 2, axis=0)
    ss_tot = jnp.sum((y - y.mean(axis=0)) ** 2, axis=0)
    return jnp.mean(1 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1))
