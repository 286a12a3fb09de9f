"""The count of correct predictions, per epoch (jnp, traceable); which losses have one is the loss's own
``fnn.core.losses.classifies``."""

from __future__ import annotations

import jax.numpy as jnp

from fnn.core import losses


def correct(net, yhat, y):
    """Number of correct predictions in a batch, or ``None`` for a loss that does not classify.

    Labels (``cross_entropy``): argmax of the output against argmax of the
    one-hot target. Binary (``bce``): ``yhat > 0.5`` against ``y > 0.5``.
    """
    kind = losses.kind(net.loss)
    if kind is losses.Kind.LABELS:
        return jnp.sum(jnp.argmax(yhat, axis=-1) == jnp.argmax(y, axis=-1))
    if kind is losses.Kind.BINARY:
        return jnp.sum(jnp.all((yhat > 0.5) == (y > 0.5), axis=-1))
    return None


def has_accuracy(net) -> bool:
    return losses.classifies(net.loss)
