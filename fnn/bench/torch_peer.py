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
"""

from __future__ import annotations

import os
import statistics

import numpy as np

from fnn.core.graph import INPUT, Graph
from fnn.core.mlp import MLP
from fnn.core.protocol import Network
from fnn.scale.machine import cpu_cores
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
    table = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda z: z,
             "gelu": F.gelu, "softplus": F.softplus, "elu": F.elu, "leaky_relu": F.leaky_relu}  # fnn's forms
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


def peer(net: Network, params, x, y, device_kind: str = "cpu", dtype_name: str = "float32"):
    """``(step, leaves)``: a zero-argument call computing the loss and its gradient in PyTorch
    (``leaves[node] = ({input: W}, b)`` hold ``.grad`` after it), or ``Unsupported``.

    ``y``: real targets for ``mse``; integer labels for ``cross_entropy`` (the
    output node then stays logits, and ``F.cross_entropy`` takes its softmax).
    """
    torch = _torch()
    graph, params = as_graph(net, params)
    loss_fn = _loss(torch, graph)
    if device_kind == "gpu" and not torch.cuda.is_available():
        raise Unsupported("torch has no CUDA device here; PyTorch peer skipped")
    device = "cuda" if device_kind == "gpu" else "cpu"
    dtype = getattr(torch, dtype_name)
    leaf = lambda a: _tensor(torch, a, dtype, device).requires_grad_()
    leaves = {n: ({i: leaf(w) for i, w in p["W"].items()}, leaf(p["b"])) for n, p in params.items()}
    tensors = [t for W, b in leaves.values() for t in (*W.values(), b)]
    names = [n.activation for n in graph.nodes[:-1]] + ["identity" if graph.loss == "cross_entropy" else graph.output]
    acts = [_activation(torch, name) for name in names]
    xt = _tensor(torch, x, dtype, device)
    yt = (torch.from_numpy(np.asarray(y, np.int64)).to(device) if graph.loss == "cross_entropy"
          else _tensor(torch, y, dtype, device))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        for t in tensors:
            t.grad = None
        loss = loss_fn(graph_output(graph, leaves, acts, xt), yt)
        loss.backward()
        sync()
        return loss

    return step, leaves


def gradient_step(net: Network, params, x, y, device_kind: str = "cpu", dtype_name: str = "float32"):
    """``peer``'s step alone: what the benchmark times."""
    return peer(net, params, x, y, device_kind, dtype_name)[0]


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
