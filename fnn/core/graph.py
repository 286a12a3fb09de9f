"""``Graph`` and ``Dense``: feed-forward networks of arbitrary connectivity, as data.

    net = fnn.Graph(n_in=64, nodes=[
        fnn.Dense("h1", 128, "relu", inputs=("x",)),
        fnn.Dense("h2", 128, "relu", inputs=("h1", "x"), residual="h1", dropout=0.2),
        fnn.Dense("out", 10, "softmax", inputs=("h2", "h1")),
    ], loss="cross_entropy")
    params = fnn.init(key, net)
    # params: {"h1": {"W": {"x": (64, 128)}, "b": (128,)}, "h2": {"W": {"h1": ..., "x": ...}, ...}, ...}

The input node is ``"x"`` (``n_in`` wide). Each node names only ``"x"`` or
earlier nodes as its inputs; the last node is the output, whose activation is
the output activation and on which the loss is taken. Node ``j`` computes

    z_j = sum over i in inputs_j of a_i @ W_j[i] + b_j
    a_j = f_j(z_j) * m_j / (1 - p_j) + a_r

where ``a_r`` is the output of the node named by ``residual`` (same width;
hidden nodes only) and ``m_j`` a Bernoulli keep-mask of dropout ``p_j``
(hidden nodes only), drawn only when a key is given. The forward pass is
``fnn.core.forward``'s and the backward pass, the adjoint graph, ``fnn.backprop``'s;
an ``fnn.MLP`` is the graph whose nodes each take the one before
(``MLP.graph``), trained by the same two functions.

A ``Graph`` holds names and sizes only, never arrays: it is frozen and hashable,
a static argument of ``jax.jit``, and implements the network protocol
(``fnn.protocol``), so it goes everywhere an ``MLP`` goes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fnn.core import activations, losses, validation
from fnn.core.backprop import graph_adjoint, graph_backward, input_gradient
from fnn.core.forward import INPUT, graph_forward, output
from fnn.core.initializers import draw_layers
from fnn.core.protocol import Network
from fnn.core.rop import graph_tangent_backward, graph_tangent_forward


@dataclasses.dataclass(frozen=True)
class Dense:
    """One node: ``width`` units of ``activation`` fed by the nodes named in ``inputs``."""

    name: str
    width: int
    activation: str = "tanh"
    inputs: tuple[str, ...] = (INPUT,)
    residual: str | None = None
    dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or self.name == INPUT:
            raise ValueError(
                f"a node's name must be a non-empty string other than {INPUT!r}, got {self.name!r}"
            )
        object.__setattr__(
            self, "width", validation.check_positive_int(f"node {self.name!r}: width", self.width)
        )
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        if not inputs:
            raise ValueError(f"node {self.name!r} has an empty input list")
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"node {self.name!r} names an input twice: {inputs}")
        activations.get(self.activation)
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"node {self.name!r}: dropout must lie in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "dropout", float(self.dropout))


@dataclasses.dataclass(frozen=True)
class Graph(Network):
    """A feed-forward network of ``Dense`` nodes over the input ``"x"`` (see the module docstring).

    Raises ``ValueError`` at construction for unknown or later input names,
    duplicate names, a residual of another width or on the output node,
    dropout outside [0, 1) or on the output node, an empty input list, a
    hidden node that no later node reads, or an output activation and loss
    that do not go together.
    """

    n_in: int
    nodes: tuple[Dense, ...]
    loss: str = "mse"

    def __post_init__(self):
        object.__setattr__(self, "n_in", validation.check_positive_int("n_in", self.n_in))
        nodes = tuple(self.nodes) if isinstance(self.nodes, Sequence) else ()
        if not nodes or not all(isinstance(n, Dense) for n in nodes):
            raise ValueError("nodes must be a non-empty sequence of fnn.Dense")
        widths = {INPUT: self.n_in}
        for j, node in enumerate(nodes):
            _check_node(node, widths, last=j == len(nodes) - 1)
            widths[node.name] = node.width
        read = {i for n in nodes for i in (*n.inputs, n.residual)}
        for node in nodes[:-1]:
            if node.name not in read:
                raise ValueError(f"node {node.name!r} feeds no later node: the output does not depend on it")
        losses.check_pair(nodes[-1].activation, self.loss)
        object.__setattr__(self, "nodes", nodes)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def chain(cls, sizes, activation="tanh", output="identity", loss="mse", dropout=0.0) -> Graph:
        """The chain ``sizes[0] -> ... -> sizes[-1]``: node ``l`` takes node ``l - 1`` (an ``MLP``)."""
        hidden = _per_layer(activation, len(sizes) - 2, "activation")
        drops = _per_layer(dropout, len(sizes) - 2, "dropout")
        names = [f"layer{l + 1}" for l in range(len(sizes) - 1)]
        nodes = [
            Dense(
                names[l],
                sizes[l + 1],
                (*hidden, output)[l],
                inputs=((INPUT, *names)[l],),
                dropout=(*drops, 0.0)[l],
            )
            for l in range(len(sizes) - 1)
        ]
        return cls(sizes[0], tuple(nodes), loss)

    @classmethod
    def cascade(cls, sizes, activation="tanh", output="identity", loss="mse") -> Graph:
        """MATLAB's cascade-forward net: every layer takes ``x`` and every earlier layer."""
        hidden = _per_layer(activation, len(sizes) - 2, "activation")
        names = [f"layer{l + 1}" for l in range(len(sizes) - 1)]
        nodes = [
            Dense(names[l], sizes[l + 1], (*hidden, output)[l], inputs=(INPUT, *names[:l]))
            for l in range(len(sizes) - 1)
        ]
        return cls(sizes[0], tuple(nodes), loss)

    @classmethod
    def residual(cls, n_in, width, depth, n_out, activation="relu", output="identity", loss="mse") -> Graph:
        """``x -> h1``, then ``depth - 1`` blocks ``h_l = f(h_{l-1} W_l + b_l) + h_{l-1}``,
        then the output."""
        depth = validation.check_positive_int("depth", depth)
        nodes = [Dense("h1", width, activation, inputs=(INPUT,))]
        for l in range(2, depth + 1):
            nodes.append(Dense(f"h{l}", width, activation, inputs=(f"h{l - 1}",), residual=f"h{l - 1}"))
        nodes.append(Dense("out", n_out, output, inputs=(f"h{depth}",)))
        return cls(n_in, tuple(nodes), loss)

    # ------------------------------------------------------------------ the network protocol

    @property
    def output(self) -> str:
        return self.nodes[-1].activation

    @property
    def n_out(self) -> int:
        return self.nodes[-1].width

    @property
    def widths(self) -> dict[str, int]:
        return {INPUT: self.n_in, **{n.name: n.width for n in self.nodes}}

    @property
    def n_params(self) -> int:
        w = self.widths
        return sum((sum(w[i] for i in n.inputs) + 1) * n.width for n in self.nodes)

    @property
    def n_units(self) -> int:
        return self.n_in + 2 * sum(n.width for n in self.nodes)

    @property
    def stochastic(self) -> bool:
        """Whether any node has dropout (and so a key changes the forward pass)."""
        return any(n.dropout for n in self.nodes)

    @property
    def label(self) -> str:
        return f"n_in {self.n_in}"

    def init(self, key, *, scheme: str = "glorot_uniform", dtype=jnp.float32) -> dict:
        """Each node's ``W`` drawn as one ``(sum of input widths, width)`` matrix by ``scheme``,
        split by input (a chain's params are the ``MLP``'s of the same key)."""
        return _init(key, self, scheme, jnp.dtype(dtype))

    def forward(self, params, x, output_dtype=None, key=None):
        return graph_forward(self, params, x, output_dtype, key)

    def output_of(self, cache):
        out = cache[self.nodes[-1].name]
        return out.z, out.a

    def backward(self, params, cache, delta):
        return graph_backward(self, params, cache, delta)

    def per_example_backward(self, params, cache, delta):
        return graph_backward(self, params, cache, delta, per_example=True)[0]

    def input_gradient(self, params, deltas):
        return input_gradient(self, params, deltas)

    def units(self, cache):
        return [(n.activation, cache[n.name].a) for n in self.nodes]

    def tangent_forward(self, params, v, cache):
        return graph_tangent_forward(self, params, v, cache)

    def output_tangent_of(self, rcache):
        return rcache[self.nodes[-1].name].z

    def adjoint(self, params, cache, delta):
        return graph_adjoint(self, params, cache, delta)

    def tangent_backward(self, params, v, cache, rcache, deltas, upstream, rdelta):
        return graph_tangent_backward(self, params, v, cache, rcache, deltas, upstream, rdelta)

    def weight_inputs(self, cache):
        return {n.name: {"W": {i: output(cache, i) for i in n.inputs}} for n in self.nodes}

    def groups(self, tree):
        return [(n.name, tree[n.name]) for n in self.nodes]

    def describe(self) -> dict:
        return {
            "type": "Graph",
            "n_in": self.n_in,
            "loss": self.loss,
            "nodes": [{**dataclasses.asdict(n), "inputs": list(n.inputs)} for n in self.nodes],
        }

    @classmethod
    def from_description(cls, d: dict) -> Graph:
        """The inverse of ``describe`` (``fnn train --arch FILE.json`` reads this form, ``type`` optional)."""
        if not isinstance(d, dict) or "nodes" not in d:
            raise ValueError("a graph description is a JSON object with 'nodes' (and 'n_in', 'loss')")
        nodes = [Dense(**{**n, "inputs": tuple(n.get("inputs", (INPUT,)))}) for n in d["nodes"]]
        return cls(int(d["n_in"]), tuple(nodes), d.get("loss", "mse"))

    def step_flops(self, batch: int) -> int:
        """Model FLOPs: per matrix ``W_j[i]``, ``2 B n_i n_j`` forward, the same for ``dW``, and the same
        again for the delta sent to ``i`` unless ``i`` is ``x``."""
        w = self.widths
        return sum((6 if i != INPUT else 4) * batch * w[i] * n.width for n in self.nodes for i in n.inputs)


def _check_node(node: Dense, widths: dict, last: bool) -> None:
    name = node.name
    if name in widths:
        raise ValueError(f"duplicate node name {name!r}")
    for i in node.inputs:
        if i not in widths:
            raise ValueError(f"node {name!r} takes {i!r}, which is not 'x' or an earlier node")
    if node.residual is not None:
        if last:
            raise ValueError(f"the output node {name!r} cannot have a residual")
        if node.residual not in widths:
            raise ValueError(f"node {name!r}: residual {node.residual!r} is not 'x' or an earlier node")
        if widths[node.residual] != node.width:
            raise ValueError(
                f"node {name!r} ({node.width} wide) cannot add residual {node.residual!r} "
                f"({widths[node.residual]} wide): the widths must agree"
            )
    if last and node.dropout:
        raise ValueError(f"the output node {name!r} cannot have dropout")
    if not last and not activations.get(node.activation).hidden_ok:
        raise ValueError(f"activation {node.activation!r} may only be used as the output activation")


def _per_layer(value, n: int, what: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(
                f"{what} has {len(value)} entries but the network has {n} hidden layers; "
                f"give one, or one per hidden layer"
            )
        return tuple(value)
    return (value,) * n


def _split(layer: dict, node: Dense, widths: dict) -> dict:
    """``{"W": (fan_in, width), "b"}`` -> ``{"W": {input: its rows}, "b"}``, the inputs' rows in order."""
    edges = [0, *itertools.accumulate(widths[i] for i in node.inputs)]
    return {
        "W": {i: layer["W"][lo:hi] for i, lo, hi in zip(node.inputs, edges[:-1], edges[1:])},
        "b": layer["b"],
    }


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init(key, net: Graph, scheme: str, dtype) -> dict:
    w = net.widths
    shapes = tuple((sum(w[i] for i in n.inputs), n.width) for n in net.nodes)
    return {
        n.name: _split(layer, n, w) for n, layer in zip(net.nodes, draw_layers(key, shapes, scheme, dtype))
    }
