"""``History``: the per-epoch records of a training run, as lists, JSON and CSV; ``Stop``: why it ended.

A history has the columns every run records (``COLUMNS``, and ``grad_norm``
per layer) and, in ``reports``, the quantities the run's method reports from
its state each epoch, by the names its ``fnn.optimizers.Method`` record gives
them (Levenberg-Marquardt's ``mu``, Hessian-free's ``damping``, ...). Both
read as attributes: ``history.train_loss``, ``history.mu``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import enum
import math
from typing import Any


class StopKind(enum.Enum):
    """Why a run ended: what code decides on (``Stop.kind``), where the message is for people."""

    COMPLETED = "completed"  # all its epochs
    GOAL = "goal"  # the train loss reached ``goal``
    MIN_GRAD = "min_grad"  # the gradient norm fell to ``min_grad``
    EARLY_STOPPING = "early_stopping"  # no validation improvement for ``patience`` epochs
    METHOD = "method"  # the method's own stopping rule (``Method.stop``)
    CALLBACK = "callback"  # a callback stopped it
    DIVERGED = "diverged"  # the loss or the params became NaN/inf
    INTERRUPTED = "interrupted"  # Ctrl-C


@dataclasses.dataclass(frozen=True)
class Stop:
    """A stop reason: its ``kind`` and a sentence for people (``str(stop)``)."""

    kind: StopKind
    message: str

    def __str__(self) -> str:
        return self.message

    @property
    def converged(self) -> bool:
        """Whether a stopping rule ended the run (rather than the epoch budget, a divergence or Ctrl-C)."""
        return self.kind not in (StopKind.COMPLETED, StopKind.DIVERGED, StopKind.INTERRUPTED)


@dataclasses.dataclass
class History:
    """Per-epoch records of a run (one entry per completed epoch in each list)."""

    epoch: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)  # mean of the epoch's minibatch losses
    train_accuracy: list = dataclasses.field(default_factory=list)  # on the epoch's minibatches (classifiers)
    val_loss: list = dataclasses.field(default_factory=list)  # at the end of the epoch
    val_accuracy: list = dataclasses.field(default_factory=list)
    learning_rate: list = dataclasses.field(default_factory=list)  # at the end of the epoch (NaN: none)
    grad_norm: list = dataclasses.field(default_factory=list)  # per layer: mean over steps of ||(dW, db)||
    # since the previous epoch ended (first: + compile)
    epoch_time_s: list = dataclasses.field(default_factory=list)
    wall_time_s: list = dataclasses.field(default_factory=list)  # cumulative
    samples_per_s: list = dataclasses.field(default_factory=list)  # training examples per second of the epoch
    # achieved TFLOP/s (fnn.scale.throughput.step_flops)
    tflops: list = dataclasses.field(default_factory=list)
    # what the method reports each epoch (Method.report), a column per name, in the order first reported
    reports: dict = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None  # epoch of the lowest validation loss
    stop: Stop | None = None  # why the run ended (None while it runs)
    diverged: bool = False
    # fit(..., diagnostics=True): per-epoch lists of per-layer values, keys fnn.diagnostics.KEYS
    diagnostics: dict = dataclasses.field(default_factory=dict)
    # the optimizer's state after the last epoch, for fit(..., opt_state=) to continue from (not in to_dict)
    opt_state: Any = dataclasses.field(default=None, repr=False, compare=False)

    COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")
    TIMES = ("epoch_time_s", "wall_time_s", "samples_per_s", "tflops")
    GENERIC = (*COLUMNS, *TIMES, "grad_norm")  # every run's

    def __getattr__(self, name: str):
        # a reported quantity reads as a column: history.mu is history.reports["mu"]
        if name.startswith("_") or name == "reports":
            raise AttributeError(name)
        try:
            return self.reports[name]
        except KeyError:
            raise AttributeError(f"History has no column {name!r}; reported: {list(self.reports)}") from None

    def __len__(self):
        return len(self.epoch)

    @property
    def stop_reason(self) -> str:
        """The stop reason's message (``""`` while the run goes on)."""
        return "" if self.stop is None else self.stop.message

    @property
    def columns(self) -> tuple[str, ...]:
        """Every per-epoch column but ``grad_norm``: the generic ones, the reports, the times."""
        return (*self.COLUMNS, *self.reports, *self.TIMES)

    def to_dict(self) -> dict:
        """The records as plain lists and numbers (JSON-serialisable; without ``opt_state``)."""
        d = {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("opt_state", "stop")
        }
        d["stop_reason"] = self.stop_reason
        d["stop_kind"] = None if self.stop is None else self.stop.kind.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """The inverse of ``to_dict``, for histories written before this one too.

        A record written before methods reported their own quantities holds them
        as top-level lists beside the generic columns, every method's, NaN where
        the run's method did not adapt that quantity: each such list becomes a
        report, unless it is NaN throughout (another method's). A column that ``d``
        lacks, or holds fewer entries of (written before it was recorded), is
        filled with ``None`` at the front, so that the columns stay aligned by
        epoch (``to_csv`` writes empty cells)."""
        if not isinstance(d, dict):
            raise ValueError(f"a history must be a JSON object, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        names = fields - {"reports", "stop", "opt_state"}
        h = cls(**{k: d[k] for k in names if k in d})
        reports = d.get("reports") or {}
        if not isinstance(reports, dict) or not all(isinstance(v, list) for v in reports.values()):
            raise ValueError("a history's reports must be a JSON object of per-epoch lists")
        reports = dict(reports)
        for name, values in d.items():  # the layout of before method reports
            if name not in fields and isinstance(values, list) and not _all_missing(values):
                reports.setdefault(name, values)
        h.reports = reports
        kind = d.get("stop_kind")
        if kind is not None and kind not in {k.value for k in StopKind}:
            raise ValueError(
                f"a history's stop_kind must be one of {[k.value for k in StopKind]}, got {kind!r}"
            )
        if d.get("stop_reason"):
            h.stop = Stop(StopKind(kind) if kind else StopKind.COMPLETED, str(d["stop_reason"]))
        for name in cls.GENERIC:
            setattr(h, name, _aligned(getattr(h, name), len(h.epoch)))
        h.reports = {name: _aligned(values, len(h.epoch)) for name, values in h.reports.items()}
        return h

    @classmethod
    def from_csv(cls, path) -> History:
        """A history read back from a ``history.csv`` (``to_csv``, ``fnn.callbacks.CSVLogger``), old or new:
        every column that is neither generic nor ``grad_norm_<layer>`` is a report.
        Empty cells are ``None``."""
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return cls()
        header = list(rows[0])
        if "epoch" not in header or "train_loss" not in header:
            raise ValueError(f"{path}: not a history.csv (no epoch and train_loss columns), got {header}")
        cell = lambda v: None if v in ("", None) else float(v)
        try:
            columns = {name: [cell(r[name]) for r in rows] for name in header}
        except (TypeError, ValueError) as err:  # a cell that is no number, or a row short of cells
            raise ValueError(f"{path}: not a history.csv: {err}") from None
        norms = [c for c in header if c.startswith("grad_norm_")]
        generic = {*cls.COLUMNS, *cls.TIMES, *norms}
        h = cls(**{name: columns.get(name, [None] * len(rows)) for name in (*cls.COLUMNS, *cls.TIMES)})
        h.epoch = [int(e) for e in h.epoch]
        h.grad_norm = [list(values) for values in zip(*(columns[c] for c in norms))] or [[] for _ in rows]
        h.reports = {c: v for c, v in columns.items() if c not in generic and not _all_missing(v)}
        return h

    def expect(self, names) -> None:
        """Give each reported quantity in ``names`` its column from the start
        (``None`` for the epochs before), so that a CSV header written before the first epoch
        already names it."""
        for name in names:
            if name in self.GENERIC:
                raise ValueError(f"a method cannot report {name!r}: it is one of every run's columns")
            self.reports.setdefault(name, [None] * len(self.epoch))

    def append(self, record: dict) -> None:
        """Add one epoch's record: a value for each of ``COLUMNS``, ``TIMES`` and ``grad_norm``; every other
        entry is a report (one first reported now gets ``None`` for the epochs before)."""
        for k in self.GENERIC:
            getattr(self, k).append(record[k])
        if len(record) > len(self.GENERIC):  # reports
            self.expect(name for name in record if name not in self.GENERIC)
        for name, values in self.reports.items():
            values.append(record.get(name))

    def drop_last(self) -> None:
        """Remove the last epoch's record (an epoch undone, see ``fnn.callbacks.TerminateOnNaN``)."""
        for k in self.GENERIC:
            del getattr(self, k)[-1:]
        for values in self.reports.values():
            del values[-1:]

    def csv_header(self, n_groups: int) -> str:
        return ",".join([*self.columns, *(f"grad_norm_{l + 1}" for l in range(n_groups))])

    def csv_row(self, i: int) -> str:
        row = [getattr(self, c)[i] for c in self.columns] + list(self.grad_norm[i])
        return ",".join(_csv_cell(v) for v in row)

    def to_csv(self, path) -> None:
        lines = [self.csv_header(len(self.grad_norm[0]) if self.grad_norm else 0)]
        lines += [self.csv_row(i) for i in range(len(self))]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _all_missing(values) -> bool:
    return all(_missing(v) for v in values)


def _aligned(values: list, n: int) -> list:
    """``values`` padded with ``None`` at the front to ``n`` entries
    (a column recorded from a later epoch on)."""
    values = list(values)
    return [None] * (n - len(values)) + values if len(values) < n else values


def _csv_cell(v) -> str:
    if _missing(v):
        return ""
    return repr(v) if isinstance(v, float) else str(v)
