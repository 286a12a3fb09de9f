"""The size grids: which networks and batches a benchmark run measures.

A ``Case`` is one network and one batch size. Grids are lists of cases grouped
in sweeps, each varying one thing so its effect on time can be read off:

  * ``width``: hidden width ``w`` of ``(w, w, w, 1)`` at a fixed batch, so
    ``P = 2 w^2 + 3 w + 1`` runs over several decades. Slopes are fitted here.
  * ``depth``: number of hidden layers at a fixed width and batch.
  * ``batch``: batch size at a fixed network; large batches make the matmuls
    big enough to compare with the device's matmul peak.
  * ``single_unit``: the seeds' 1-1-1 sigmoid network, the one case where the
    closed-form analytical gradient exists.
  * ``trained``: the networks people train: MNIST-like 784 inputs, relu or
    gelu hidden layers, 10 softmax outputs with cross-entropy on integer labels.
  * ``iso_work``: widths with ``batch * P`` held about constant, so one forward
    pass costs about the same at every size; time then grows with ``P`` only
    through the number of passes a method needs (the smoke test's sweep).
  * ``residual`` and ``cascade`` (the ``graphs`` grid): ``fnn.Graph`` networks,
    ``Graph.residual`` (relu blocks ``h_l = f(h_{l-1} W + b) + h_{l-1}``, 10
    softmax outputs, cross-entropy on integer labels) and ``Graph.cascade``
    (MATLAB's cascade-forward net, every tanh layer reading ``x`` and all
    earlier layers, identity outputs and mse). A graph's sizes in a case name
    are the input's and its nodes' widths in order.
"""

from __future__ import annotations

import dataclasses

from fnn.check.analytical import SINGLE_UNIT
from fnn.core.graph import Graph
from fnn.core.mlp import MLP
from fnn.core.protocol import Network

ACTIVATION = "tanh"


@dataclasses.dataclass(frozen=True)
class Case:
    sweep: str
    net: Network  # an MLP or a Graph
    batch: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """The input's width, then each layer's (a graph's nodes in order)."""
        if isinstance(self.net, Graph):
            return (self.net.n_in, *(node.width for node in self.net.nodes))
        return self.net.sizes

    @property
    def name(self) -> str:
        return f"{self.sweep}:{'-'.join(map(str, self.sizes))}@{self.batch}"

    @property
    def n_params(self) -> int:
        return self.net.n_params

    @property
    def depth(self) -> int:
        """Hidden layers."""
        return len(self.sizes) - 2

    @property
    def width(self) -> int:
        return max(self.sizes[1:-1], default=self.sizes[0])


def mlp(width: int, hidden: int = 2, n_out: int = 1) -> MLP:
    """``width`` inputs, ``hidden`` tanh layers of ``width`` units, ``n_out`` linear outputs, mse."""
    return MLP((width,) * (hidden + 1) + (n_out,), activation=ACTIVATION)


def single_unit(batch: int) -> list[Case]:
    return [Case("single_unit", SINGLE_UNIT, batch)]


def width_sweep(widths, batch: int) -> list[Case]:
    return [Case("width", mlp(w), batch) for w in widths]


def depth_sweep(hidden_layers, width: int, batch: int) -> list[Case]:
    return [Case("depth", mlp(width, hidden=h), batch) for h in hidden_layers]


def batch_sweep(batches, width: int) -> list[Case]:
    return [Case("batch", mlp(width), b) for b in batches]


def classifier(hidden: tuple[int, ...], activation: str, n_in: int = 784, n_out: int = 10) -> MLP:
    """``n_in`` inputs, the ``hidden`` layers, ``n_out`` softmax outputs with cross-entropy."""
    return MLP((n_in, *hidden, n_out), activation=activation, output="softmax", loss="cross_entropy")


def trained_sweep(nets) -> list[Case]:
    """``nets``: ``(hidden widths, activation, batch)`` of MNIST-like classifiers."""
    return [Case("trained", classifier(hidden, act), batch) for hidden, act, batch in nets]


def iso_work_sweep(widths, work: int) -> list[Case]:
    """Cases whose ``batch * P`` is about ``work``: one forward pass costs about the same in each."""
    return [Case("iso_work", mlp(w), max(1, round(work / mlp(w).n_params))) for w in widths]


def residual_sweep(
    depths, width: int, batches, n_in: int = 64, n_out: int = 10, activation: str = "relu"
) -> list[Case]:
    """``Graph.residual`` classifiers of ``depths`` nodes of ``width`` units (relu unless told),
    at each batch."""
    return [
        Case("residual", Graph.residual(n_in, width, d, n_out, activation, "softmax", "cross_entropy"), b)
        for d in depths
        for b in batches
    ]


def cascade_sweep(nets, batches, output: str = "identity", loss: str = "mse") -> list[Case]:
    """``Graph.cascade`` nets of the given sizes (tanh layers; identity outputs and mse unless told),
    at each batch."""
    return [
        Case("cascade", Graph.cascade(sizes, ACTIVATION, output, loss), b) for sizes in nets for b in batches
    ]


def grid(name: str) -> list[Case]:
    """The named grid: ``tiny`` (tests, seconds), ``quick`` (< 2 min on 2 CPU cores),
    ``full`` (CPU, P up to about 2e6), ``gpu`` (P up to about 1.3e8), ``graphs``
    (residual and cascade ``fnn.Graph`` nets, P up to about 1.1e6) and
    ``graphs_tiny`` (its smoke test's)."""
    if name == "tiny":
        return iso_work_sweep((4, 8, 16, 32), work=2**15)
    if name == "graphs_tiny":
        return residual_sweep((3,), width=8, batches=(16,), n_in=6, n_out=3) + cascade_sweep(
            [(6, 8, 8, 2)], (16,)
        )
    if name == "graphs":
        return residual_sweep((4, 8, 16), width=256, batches=(64, 256)) + cascade_sweep(
            [(64, 128, 128, 128, 10), (64, *(256,) * 6, 10)], batches=(64, 256)
        )
    if name == "quick":
        return (
            single_unit(64)
            + width_sweep((2, 8, 32, 64, 128, 256), batch=128)
            + depth_sweep((1, 4), width=128, batch=128)
            + batch_sweep((512,), width=256)
            + trained_sweep([((128,), "relu", 64), ((256, 256), "gelu", 128)])
        )
    if name == "full":
        return (
            single_unit(64)
            + width_sweep((2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), batch=128)
            + depth_sweep((1, 4, 8, 16), width=256, batch=128)
            + batch_sweep((1, 16, 512, 2048), width=1024)
            + trained_sweep(
                [
                    ((128,), "relu", 64),
                    ((256, 256), "relu", 128),
                    ((512, 512), "gelu", 256),
                    ((1024, 1024), "relu", 512),
                ]
            )
        )
    if name == "gpu":
        return (
            single_unit(64)
            + width_sweep((2, 8, 32, 128, 512, 1024, 2048, 4096, 8192), batch=1024)
            + depth_sweep((1, 4, 16, 32), width=2048, batch=1024)
            + batch_sweep((64, 1024, 8192), width=8192)
            + trained_sweep(
                [((128,), "relu", 64), ((1024, 1024), "gelu", 1024), ((4096, 4096, 4096), "relu", 4096)]
            )
        )
    raise ValueError(f"unknown grid {name!r}; expected one of {list(GRIDS)}")


GRIDS = ("tiny", "quick", "full", "gpu", "graphs", "graphs_tiny")
GRAPH_GRIDS = ("graphs", "graphs_tiny")
