"""``MLP``: a frozen, hashable description of a feed-forward network.

It holds names and sizes only, never arrays, so it can be a static argument
of ``jax.jit``: the same description traces once and compiles once. It
implements the network protocol (``fnn.protocol``) with the chain's forward
pass (``fnn.core.forward``) and delta recursion (``fnn.backprop``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax.numpy as jnp

from fnn.core import activations, losses
from fnn.core.graph import Graph
from fnn.core.initializers import draw
from fnn.core.protocol import Network


def _as_activation_tuple(activation, n_hidden: int) -> tuple[str, ...]:
    if isinstance(activation, str):
        return (activation,) * n_hidden
    if isinstance(activation, (tuple, list)):
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation has {len(activation)} names but the network has "
                f"{n_hidden} hidden layers; give one name, or one per hidden layer"
            )
        return tuple(activation)
    raise TypeError(f"activation must be a str or a tuple of str, got {type(activation).__name__}")


def _as_dropout_tuple(dropout, n_hidden: int) -> tuple[float, ...]:
    values = tuple(dropout) if isinstance(dropout, (tuple, list)) else (dropout,) * n_hidden
    if len(values) != n_hidden:
        raise ValueError(
            f"dropout has {len(values)} values but the network has {n_hidden} hidden layers; "
            f"give one, or one per hidden layer"
        )
    for p in values:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {p!r}")
    return tuple(float(p) for p in values)


def _as_sizes(sizes) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints such as (4, 8, 1), got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 entries (inputs, outputs), got {tuple(sizes)}")
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) and not hasattr(s, "__index__"):
            raise TypeError(f"sizes must contain ints, got {s!r} in {tuple(sizes)}")
        if int(s) <= 0:
            raise ValueError(f"sizes must be positive, got {tuple(sizes)}")
        out.append(int(s))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class MLP(Network):
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Args:
      sizes: layer widths, inputs first and outputs last, e.g. ``(64, 128, 10)``.
      activation: one name for every hidden layer, or a tuple with one name per
        hidden layer (see ``fnn.core.activations``).
      output: the output layer's activation; ``softmax`` is allowed only here.
      loss: one of ``mse``, ``mae``, ``huber``, ``bce`` (after ``sigmoid``),
        ``cross_entropy`` (after ``softmax``); see ``fnn.core.losses``.
      dropout: the dropout probability of every hidden layer, or one per
        hidden layer, in [0, 1); active only when a key is passed
        (``fnn.backprop(..., key=k)``; ``fnn.fit`` passes one each step).

    The chain is the ``fnn.Graph`` whose node ``l`` takes node ``l - 1``
    (``graph``); its forward and backward passes are the graph's.

    Raises ``ValueError``/``TypeError`` at construction for anything invalid.
    """

    sizes: tuple[int, ...]
    activation: tuple[str, ...] | str = "tanh"
    output: str = "identity"
    loss: str = "mse"
    dropout: float | tuple[float, ...] = 0.0

    def __post_init__(self):
        sizes = _as_sizes(self.sizes)
        hidden = _as_activation_tuple(self.activation, len(sizes) - 2)
        for name in hidden:
            if not activations.get(name).hidden_ok:
                raise ValueError(f"activation {name!r} may only be used as the output activation")
        activations.get(self.output)
        losses.check_pair(self.output, self.loss)
        dropout = _as_dropout_tuple(self.dropout, len(sizes) - 2)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activation", hidden)
        object.__setattr__(self, "dropout", dropout)

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return sum((n_in + 1) * n_out for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))

    # ------------------------------------------------------------------ the network protocol

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def n_units(self) -> int:
        return sum(self.sizes)

    @property
    def label(self) -> str:
        return f"sizes {self.sizes}"

    @functools.cached_property
    def graph(self):
        """The chain as an ``fnn.Graph``: nodes ``layer1 .. layerL``, node ``l`` reading node ``l - 1``."""
        return Graph.chain(self.sizes, self.activation, self.output, self.loss, self.dropout)

    @property
    def stochastic(self) -> bool:
        return any(self.dropout)

    def as_graph_params(self, params: list[dict]) -> dict:
        """The params of ``graph``: layer ``l``'s ``{"W", "b"}`` as node ``layer{l+1}``'s, no array copied."""
        nodes = self.graph.nodes
        return {n.name: {"W": {n.inputs[0]: p["W"]}, "b": p["b"]} for n, p in zip(nodes, params)}

    def from_graph_params(self, tree: dict) -> list[dict]:
        """The inverse of ``as_graph_params`` (for the graph's gradients)."""
        return [{"W": tree[n.name]["W"][n.inputs[0]], "b": tree[n.name]["b"]} for n in self.graph.nodes]

    def init(self, key, *, scheme: str = "glorot_uniform", dtype=jnp.float32) -> list[dict]:
        return draw(key, self.sizes, scheme, jnp.dtype(dtype))

    def forward(self, params, x, output_dtype=None, key=None):
        return self.graph.forward(self.as_graph_params(params), x, output_dtype, key)

    def output_of(self, cache):
        return self.graph.output_of(cache)

    def backward(self, params, cache, delta):
        grads, deltas = self.graph.backward(self.as_graph_params(params), cache, delta)
        return self.from_graph_params(grads), deltas

    def per_example_backward(self, params, cache, delta):
        return self.from_graph_params(
            self.graph.per_example_backward(self.as_graph_params(params), cache, delta)
        )

    def input_gradient(self, params, deltas):
        return self.graph.input_gradient(self.as_graph_params(params), deltas)

    def units(self, cache):
        return self.graph.units(cache)

    def tangent_forward(self, params, v, cache):
        return self.graph.tangent_forward(self.as_graph_params(params), self.as_graph_params(v), cache)

    def output_tangent_of(self, rcache):
        return self.graph.output_tangent_of(rcache)

    def adjoint(self, params, cache, delta):
        grads, deltas, upstream = self.graph.adjoint(self.as_graph_params(params), cache, delta)
        return self.from_graph_params(grads), deltas, upstream

    def tangent_backward(self, params, v, cache, rcache, deltas, upstream, rdelta):
        return self.from_graph_params(
            self.graph.tangent_backward(
                self.as_graph_params(params), self.as_graph_params(v), cache, rcache, deltas, upstream, rdelta
            )
        )

    def weight_inputs(self, cache):
        inputs = self.graph.weight_inputs(cache)
        return [{"W": inputs[n.name]["W"][n.inputs[0]]} for n in self.graph.nodes]

    def describe(self) -> dict:
        d = {
            "sizes": list(self.sizes),
            "activation": list(self.activation),
            "output": self.output,
            "loss": self.loss,
        }
        return {**d, "dropout": list(self.dropout)} if self.stochastic else d

    def step_flops(self, batch: int) -> int:
        """Model FLOPs of a training step, ``6 B sum_l n_{l-1} n_l - 2 B n_0 n_1`` (the graph's count for a
        chain: no delta is sent to ``x``; see ``fnn.scale.throughput``)."""
        return self.graph.step_flops(batch)

    def check_params(self, params):
        """The params' dtype, after checking they match the chain layer by layer."""
        if not isinstance(params, (list, tuple)):
            raise TypeError(
                f"params must be a list of {{'W', 'b'}} dicts (see fnn.init), got {type(params).__name__}"
            )
        if len(params) != self.n_layers:
            raise ValueError(
                f"params has {len(params)} layers but net has {self.n_layers} (sizes {self.sizes})"
            )
        dtype = None
        for i, (layer, n_in, n_out) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:])):
            if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
                raise ValueError(f"params[{i}] must be a dict with keys 'W' and 'b', got {layer!r:.80}")
            for leaf, shape in (("W", (n_in, n_out)), ("b", (n_out,))):
                got = getattr(layer[leaf], "shape", None)
                if got is None or tuple(got) != shape:
                    raise ValueError(
                        f"params[{i}][{leaf!r}] must have shape {shape} for sizes {self.sizes}, got {got}"
                    )
                if not jnp.issubdtype(layer[leaf].dtype, jnp.floating):
                    raise TypeError(f"params[{i}][{leaf!r}] must be floating point, got {layer[leaf].dtype}")
                if dtype is None:
                    dtype = layer[leaf].dtype
                elif layer[leaf].dtype != dtype:
                    raise TypeError(
                        f"params must share one dtype; params[{i}][{leaf!r}] is {layer[leaf].dtype}, "
                        f"not {dtype}"
                    )
        return dtype
