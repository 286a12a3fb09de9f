"""``History``: the per-epoch records of a training run, as lists, JSON and CSV."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass
class History:
    """Per-epoch records of a run (one entry per completed epoch in each list)."""

    epoch: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)  # mean of the epoch's minibatch losses
    train_accuracy: list = dataclasses.field(default_factory=list)  # on the epoch's minibatches (classifiers)
    val_loss: list = dataclasses.field(default_factory=list)  # at the end of the epoch
    val_accuracy: list = dataclasses.field(default_factory=list)
    learning_rate: list = dataclasses.field(default_factory=list)  # at the end of the epoch (NaN: none)
    mu: list = dataclasses.field(default_factory=list)  # Levenberg-Marquardt's mu (NaN otherwise)
    # Bayesian regularisation (optimizer "br"): the effective number of parameters and
    # the precisions of the prior and of the noise at the end of the epoch (NaN otherwise)
    gamma: list = dataclasses.field(default_factory=list)
    alpha: list = dataclasses.field(default_factory=list)
    beta: list = dataclasses.field(default_factory=list)
    # second-order methods: Hessian-free's and K-FAC's damping lambda, HF's reduction ratio rho and CG
    # iterations, K-FAC's momentum, in the last step of the epoch (NaN otherwise)
    damping: list = dataclasses.field(default_factory=list)
    rho: list = dataclasses.field(default_factory=list)
    cg_iterations: list = dataclasses.field(default_factory=list)
    momentum: list = dataclasses.field(default_factory=list)
    grad_norm: list = dataclasses.field(default_factory=list)  # per layer: mean over steps of ||(dW, db)||
    epoch_time_s: list = dataclasses.field(default_factory=list)  # since the previous epoch ended (first: + compile)
    wall_time_s: list = dataclasses.field(default_factory=list)  # cumulative
    samples_per_s: list = dataclasses.field(default_factory=list)  # training examples per second of the epoch
    tflops: list = dataclasses.field(default_factory=list)  # achieved TFLOP/s (fnn.scale.throughput.step_flops)
    best_epoch: int | None = None  # epoch of the lowest validation loss
    stop_reason: str = ""
    diverged: bool = False
    # fit(..., diagnostics=True): per-epoch lists of per-layer values, keys fnn.diagnostics.KEYS
    diagnostics: dict = dataclasses.field(default_factory=dict)
    # the optimizer's state after the last epoch, for fit(..., opt_state=) to continue from (not in to_dict)
    opt_state: Any = dataclasses.field(default=None, repr=False, compare=False)

    COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "mu",
               "gamma", "alpha", "beta", "damping", "rho", "cg_iterations", "momentum",
               "epoch_time_s", "wall_time_s", "samples_per_s", "tflops")

    def __len__(self):
        return len(self.epoch)

    def to_dict(self) -> dict:
        """The records as plain lists and numbers (JSON-serialisable; without ``opt_state``)."""
        d = dataclasses.asdict(dataclasses.replace(self, opt_state=None))
        del d["opt_state"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The inverse of ``to_dict``. A column of ``COLUMNS`` that ``d`` lacks,
        or holds fewer entries of (a checkpoint written before the column was
        recorded), is filled with ``None`` at the front, so that the columns
        stay aligned by epoch (``to_csv`` writes empty cells)."""
        h = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        for name in cls.COLUMNS:
            values = getattr(h, name)
            if len(values) < len(h.epoch):
                setattr(h, name, [None] * (len(h.epoch) - len(values)) + values)
        return h

    def append(self, record: dict) -> None:
        """Add one epoch's record (a dict with a value for each of ``COLUMNS`` and ``grad_norm``)."""
        for k in (*self.COLUMNS, "grad_norm"):
            getattr(self, k).append(record[k])

    def drop_last(self) -> None:
        """Remove the last epoch's record (an epoch undone, see ``fnn.callbacks.TerminateOnNaN``)."""
        for k in (*self.COLUMNS, "grad_norm"):
            del getattr(self, k)[-1:]

    def csv_header(self, n_groups: int) -> str:
        return ",".join([*self.COLUMNS, *(f"grad_norm_{l + 1}" for l in range(n_groups))])

    def csv_row(self, i: int) -> str:
        row = [getattr(self, c)[i] for c in self.COLUMNS] + list(self.grad_norm[i])
        return ",".join(_csv_cell(v) for v in row)

    def to_csv(self, path) -> None:
        lines = [self.csv_header(len(self.grad_norm[0]) if self.grad_norm else 0)]
        lines += [self.csv_row(i) for i in range(len(self))]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def _csv_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)
