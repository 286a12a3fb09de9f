"""PyTorch eager autograd on the same network, parameters and data: the peer.

Any ``fnn.Graph`` runs, built from its description (each node's inputs,
residual and activation, the output activation and loss); an ``MLP`` runs as
its chain graph, one ``addmm`` and activation per layer.

Forward and backward are one training step's gradient, ``loss.backward()``
with ``.grad`` cleared first, in eager mode (no ``torch.compile``), as a
typical PyTorch user runs it. The peer gets its best shot: each case runs on
whichever of 1 thread or all the process's cores is faster there (OpenMP
threads on a busy machine can lose more at a barrier than they gain), and
idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``,
unless set already), so they do not steal cores from the method timed next.

``hvp_step`` is the peer of ``fnn.hvp`` (``benchmarks.curvature``): the
Hessian-vector product as ``torch.func`` writes it, forward over reverse.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from benchmarks.machine import cpu_cores
from fnn.core.graph import INPUT, Graph
from fnn.core.mlp import MLP
from fnn.core.protocol import Network
from fnn.scale.timing import wall_time


class Unsupported(Exception):
    """The peer cannot run this case; the message says why, for the results' note."""


def _torch():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch starts OpenMP
    try:
        import torch
    except ImportError as err:
        raise Unsupported("torch is not installed (pip install torch); PyTorch peer skipped") from err
    return torch


def _activation(torch, name: str):
    F = torch.nn.functional
    table = {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "identity": lambda z: z,
        "gelu": F.gelu,
        "softplus": F.softplus,
        "elu": F.elu,
        "leaky_relu": F.leaky_relu,
    }  # fnn's forms
    if name not in table:
        raise Unsupported(f"no PyTorch peer for activation {name!r}")
    return table[name]


def _tensor(torch, a, dtype, device):
    # via float32: numpy has no bfloat16 torch understands
    return torch.from_numpy(np.array(a, dtype=np.float32)).to(device=device, dtype=dtype)


def _loss(torch, net: Network):
    """``loss(last layer's output, targets)`` as fnn defines it, averaged over the batch."""
    if net.loss == "mse":
        return lambda a, y: 0.5 * ((a - y) ** 2).sum(dim=1).mean()
    if net.loss == "cross_entropy":  # from the logits, on integer labels, as PyTorch users write it
        return torch.nn.functional.cross_entropy
    raise Unsupported(f"no PyTorch peer for loss {net.loss!r}")


def as_graph(net: Network, params) -> tuple[Graph, dict]:
    """``(graph, its params)``: an ``MLP`` as its chain graph, a ``Graph`` as it is."""
    if isinstance(net, Graph):
        return net, params
    if isinstance(net, MLP):
        return net.graph, net.as_graph_params(params)
    raise Unsupported(f"no PyTorch peer for a {type(net).__name__}")


def graph_output(graph: Graph, leaves: dict, acts: list, x):
    """The graph's forward pass in torch: per node ``act(b + sum_i a_i @ W[i]) (+ a_residual)``.

    No dropout: the benchmark passes no key, and without one fnn runs none either."""
    out = {INPUT: x}
    for node, act in zip(graph.nodes, acts):
        W, b = leaves[node.name]
        z = b
        for i in node.inputs:
            z = z.addmm(out[i], W[i])  # torch.addmm(z, a_i, W[i]); b broadcasts over the batch
        a = act(z)
        out[node.name] = a if node.residual is None else a + out[node.residual]
    return a


class _Setup(NamedTuple):
    """What every PyTorch peer of one case shares: the graph, its params, the loss and the data on
    the device."""

    torch: Any
    graph: Graph
    params: dict  # the graph's params, as fnn holds them
    loss: Callable  # loss(output node's value, targets)
    acts: list  # each node's activation in torch
    x: Any
    y: Any
    device: str
    dtype: Any
    sync: Callable[[], None]  # waits for the device (CUDA); nothing on the CPU


def _setup(net: Network, params, x, y, device_kind: str, dtype_name: str) -> _Setup:
    torch = _torch()
    graph, params = as_graph(net, params)
    loss_fn = _loss(torch, graph)
    if device_kind == "gpu" and not torch.cuda.is_available():
        raise Unsupported("torch has no CUDA device here; PyTorch peer skipped")
    device = "cuda" if device_kind == "gpu" else "cpu"
    dtype = getattr(torch, dtype_name)
    names = [n.activation for n in graph.nodes[:-1]] + [
        "identity" if graph.loss == "cross_entropy" else graph.output
    ]
    acts = [_activation(torch, name) for name in names]
    xt = _tensor(torch, x, dtype, device)
    yt = (
        torch.from_numpy(np.asarray(y, np.int64)).to(device)
        if graph.loss == "cross_entropy"
        else _tensor(torch, y, dtype, device)
    )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return _Setup(torch, graph, params, loss_fn, acts, xt, yt, device, dtype, sync)


def _leaves(s: _Setup, graph_params: dict, requires_grad: bool = False) -> dict:
    """``{node: ({input: W}, b)}`` as torch tensors on the case's device and dtype."""

    def leaf(a):
        t = _tensor(s.torch, a, s.dtype, s.device)
        return t.requires_grad_() if requires_grad else t

    return {n: ({i: leaf(w) for i, w in p["W"].items()}, leaf(p["b"])) for n, p in graph_params.items()}


def peer(net: Network, params, x, y, device_kind: str = "cpu", dtype_name: str = "float32"):
    """``(step, leaves)``: a zero-argument call computing the loss and its gradient in PyTorch
    (``leaves[node] = ({input: W}, b)`` hold ``.grad`` after it), or ``Unsupported``.

    ``y``: real targets for ``mse``; integer labels for ``cross_entropy`` (the
    output node then stays logits, and ``F.cross_entropy`` takes its softmax).
    """
    s = _setup(net, params, x, y, device_kind, dtype_name)
    leaves = _leaves(s, s.params, requires_grad=True)
    tensors = [t for W, b in leaves.values() for t in (*W.values(), b)]

    def step():
        for t in tensors:
            t.grad = None
        loss = s.loss(graph_output(s.graph, leaves, s.acts, s.x), s.y)
        loss.backward()
        s.sync()
        return loss

    return step, leaves


def gradient_step(net: Network, params, x, y, device_kind: str = "cpu", dtype_name: str = "float32"):
    """``peer``'s step alone: what the benchmark times."""
    return peer(net, params, x, y, device_kind, dtype_name)[0]


def hvp_step(net: Network, params, v, x, y, device_kind: str = "cpu", dtype_name: str = "float32"):
    """A zero-argument call returning ``(grads, H v)`` in PyTorch, forward over reverse as
    ``torch.func`` writes a Hessian-vector product:
    ``torch.func.jvp(torch.func.grad(loss), (w,), (v,))``, or ``Unsupported``.

    ``v``: a direction shaped as ``params``. Both results are trees ``{node: ({input: W}, b)}``
    (``as_arrays`` turns them into fnn's graph layout)."""
    s = _setup(net, params, x, y, device_kind, dtype_name)
    w, t = _leaves(s, s.params), _leaves(s, as_graph(net, v)[1])
    grad = s.torch.func.grad(lambda leaves: s.loss(graph_output(s.graph, leaves, s.acts, s.x), s.y))

    def step():
        out = s.torch.func.jvp(grad, (w,), (t,))
        s.sync()
        return out

    return step


def as_arrays(tree: dict) -> dict:
    """A torch tree ``{node: ({input: W}, b)}`` as fnn's graph params ``{node: {"W": {input: W}, "b": b}}``
    of float64 NumPy arrays."""
    host = lambda t: t.detach().cpu().double().numpy()
    return {n: {"W": {i: host(w) for i, w in W.items()}, "b": host(b)} for n, (W, b) in tree.items()}


def fastest_threads(step, calls: int = 7, margin: float = 0.9) -> int:
    """Set and return the intra-op thread count under which ``step`` runs faster:
    all cores if, timed alternately with one thread, their median is below
    ``margin`` times one thread's (threads that barely win on a quiet moment
    lose badly at a barrier when the machine gets busy)."""
    torch = _torch()
    many = cpu_cores()
    if many == 1:
        torch.set_num_threads(1)
        return 1
    times = {1: [], many: []}
    for _ in range(calls):
        for n in times:
            torch.set_num_threads(n)
            step()  # the pool resizes on the first call after a change
            times[n].append(wall_time(step))
    best = many if statistics.median(times[many]) < margin * statistics.median(times[1]) else 1
    torch.set_num_threads(best)
    return best
