"""The forward pass, and the two public functions built on it alone.

For layer ``l = 1..L`` with weights ``W_l`` of shape (n_{l-1}, n_l):

    a_0 = x
    z_l = a_{l-1} @ W_l + b_l          (batch, n_l)
    a_l = f_l(z_l)
    yhat = a_L

``forward`` keeps, per layer, exactly what the backward pass needs: the layer's
input ``a_{l-1}``, its pre-activation ``z_l`` and its output ``a_l``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax

from fnn import activations, dispatch
from fnn.protocol import loss_from_cache

if TYPE_CHECKING:
    from fnn.network import MLP

Array = jax.Array


class LayerCache(NamedTuple):
    """What layer ``l`` saves on the way forward."""

    a_in: Array  # a_{l-1}, (batch, n_{l-1})
    z: Array  # z_l, (batch, n_l)
    a: Array  # a_l = f_l(z_l), (batch, n_l)


def forward(net: MLP, params: list[dict], x: Array, output_dtype=None) -> list[LayerCache]:
    """Run the network on ``x`` (batch, n_0); return one ``LayerCache`` per layer.

    ``output_dtype`` (mixed precision, see ``fnn.precision``): the output
    layer's logits ``z_L`` are cast to it before the output activation, so that
    softmax and the loss run in float32 while the hidden layers run in bfloat16.
    """
    cache = []
    a = x
    last = net.n_layers - 1
    for l, (layer, name) in enumerate(zip(params, net.layer_activations)):
        z = a @ layer["W"] + layer["b"]
        if l == last and output_dtype is not None:
            z = z.astype(output_dtype)
        a_out = activations.get(name).fn(z)
        cache.append(LayerCache(a, z, a_out))
        a = a_out
    return cache


def predict_core(net, params, x) -> Array:
    """The network's output on inputs that have already passed validation (any ``fnn.protocol`` network)."""
    return net.output_of(net.forward(params, x))[1]


def loss_core(net, params, x, y) -> Array:
    """The batch-mean loss on inputs that have already passed validation."""
    return loss_from_cache(net, net.forward(params, x), y)


compiled_predict = jax.jit(predict_core, static_argnums=0)  # for inputs already checked and converted
compiled_loss = jax.jit(loss_core, static_argnums=0)


@dispatch.fast_path(predict_core)
def predict(net: MLP, params: list[dict], x) -> Array:
    """The network's output ``yhat = a_L``, shape (batch, n_out)."""
    return dispatch.call(predict_core, net, params, x)


@dispatch.fast_path(loss_core)
def loss(net: MLP, params: list[dict], x, y) -> Array:
    """The loss averaged over the batch, ``L = (1/B) sum_n l(yhat_n, y_n)``."""
    return dispatch.call(loss_core, net, params, x, y)
