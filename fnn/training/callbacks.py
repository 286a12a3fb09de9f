"""Callbacks: what ``fnn.fit`` does after each epoch, one concern per class.

``fit`` runs the compiled epochs and hands each finished one to its callbacks,
in order (Keras's ``Callback`` in spirit)::

    class Callback:
        def on_fit_start(self, run): ...   # before the first epoch (after a resume)
        def on_epoch_end(self, run): ...   # after each epoch; returning True stops the run
        def on_fit_end(self, run): ...     # once, when the run stops, is interrupted or fails

``run`` is the ``fnn.Run`` in progress: ``run.epoch`` (1-based, the epoch
just completed), ``run.params``, ``run.opt_state``, ``run.history``,
``run.record`` (that epoch's dict, a row of the history), ``run.net``,
``run.stop_reason``, and ``run.stop(reason)``, which sets the reason unless an
earlier callback set one, and returns True (``reason``: a sentence, which
stops the run with kind ``StopKind.CALLBACK``, or an ``fnn.Stop``).
Every callback sees every epoch; the first reason given is the run's. A
callback that stops the run without a reason stops it "by callback".
Callbacks read the run; what they may change is
said where they do (``TerminateOnNaN`` undoes an epoch, ``EarlyStopping`` sets
the params ``fit`` returns).

A callback that keeps state across a resume names it ``state_key`` and gives
``state()`` (JSON) and ``load_state(d)``; ``Checkpoint`` stores it.

Things optax already does stay in optax: a learning rate that drops when the
loss stops falling is ``optax.contrib.reduce_on_plateau`` chained after the
optimizer (``fit`` passes each step's loss as ``value``).
"""

from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np

from fnn.core import validation
from fnn.scale import distributed, throughput
from fnn.training import checkpoint, chunk, diagnostics
from fnn.training.history import Stop, StopKind

__all__ = [
    "Callback",
    "CSVLogger",
    "Checkpoint",
    "Diagnostics",
    "DivergenceWarning",
    "EarlyStopping",
    "Lambda",
    "LevenbergMarquardtStop",
    "MethodStop",
    "ProgressBar",
    "StopAt",
    "TerminateOnNaN",
    "postfix",
]


class Callback:
    """The base class: every hook does nothing."""

    state_key: str | None = None  # the name under which Checkpoint stores state(), if any

    def params_needed(self, epoch: int) -> int | None:
        """In how many epochs after ``epoch`` this callback next reads ``run.params``, ``run.opt_state`` or
        ``run.previous`` (1: after every epoch; ``None``: never).

        ``fit`` runs many epochs in one compiled program when nothing needs
        the host between them (``fnn.training.chunk``), and never past an
        epoch a callback needs the params of. Inside such a chunk ``run.params``
        is a ``Deferred`` marker (``run.params_known`` is False): ``fit`` fills
        in what a callback kept of it (``run.best_params = run.params``) or
        stopped at, once the chunk is read. The default, 1, keeps one epoch
        per program: a callback that reads only ``run.record``, ``run.epoch``
        and ``run.history`` returns ``None``.
        """
        return 1

    def device_rule(self, run):
        """``(rule, state)``: this callback's stopping decision as the compiled chunk makes it on the
        device (``fnn.training.chunk``), so that a chunk ends where the run will stop; ``None``: none."""
        return None

    def on_fit_start(self, run) -> None:
        pass

    def on_epoch_end(self, run) -> bool | None:
        pass

    def on_fit_end(self, run) -> None:
        pass


class Lambda(Callback):
    """``fn(record)`` after each epoch; returning ``True`` stops the run (``fit(callback=fn)``)."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {type(fn).__name__}")
        self.fn = fn

    def params_needed(self, epoch):
        return None  # it is given the record

    def on_epoch_end(self, run):
        return self.fn(run.record) is True


class DivergenceWarning(RuntimeWarning):
    """The training loss or the params became NaN/inf (``TerminateOnNaN``), so the run stopped."""


class TerminateOnNaN(Callback):
    """Stop when the epoch's loss or params are NaN/inf, keeping the params of the last finite epoch.

    The epoch is undone (``run.undo_epoch()``): params, optimizer state and
    history are those of the epoch before, ``history.diverged`` is set and a
    ``RuntimeWarning`` names the epoch. The callbacks after this one never see
    the undone epoch, so ``fit`` puts it first. The compiled chunk of epochs ends
    at a non-finite epoch and keeps the state before it (``fnn.training.chunk``).
    """

    def params_needed(self, epoch):
        return None

    def on_epoch_end(self, run):
        if bool(run.stats["finite"]):
            return None
        loss = run.record["train_loss"]
        run.undo_epoch()
        run.history.diverged = True
        reason = (
            f"the training loss became non-finite ({loss}) in epoch {run.epoch + 1}; "
            f"kept the params of epoch {run.epoch}"
        )
        warnings.warn(reason, DivergenceWarning, stacklevel=4)
        return run.stop(Stop(StopKind.DIVERGED, reason))


class StopAt(Callback):
    """Stop when the epoch's train loss is ``<= goal`` or its gradient norm ``<= min_grad``.

    The gradient norm is ``sqrt(sum over layers of grad_norm_l^2)``, each
    ``grad_norm_l`` the epoch's mean over steps (MATLAB's ``goal`` and ``min_grad``).
    """

    def __init__(self, goal: float | None = None, min_grad: float | None = None):
        self.goal, self.min_grad = goal, min_grad

    def params_needed(self, epoch):
        return None

    def device_rule(self, run):
        return chunk.Goal(self.goal, self.min_grad), ()

    def on_epoch_end(self, run):
        loss = run.record["train_loss"]
        if self.goal is not None and loss <= self.goal:
            return run.stop(Stop(StopKind.GOAL, f"reached the goal: train loss {loss:.3g} <= {self.goal:g}"))
        grad_norm = float(np.sqrt(np.sum(np.square(run.stats["grad_norm"]))))
        if self.min_grad is not None and grad_norm <= self.min_grad:
            return run.stop(Stop(StopKind.MIN_GRAD, f"gradient norm fell to <= min_grad {self.min_grad:g}"))
        return None


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs whose validation loss is not below the best by more than ``min_delta``.

    Sets ``history.best_epoch``. With ``restore_best``, ``fit`` returns the
    params of the best epoch. ``patience=None`` tracks the best epoch without
    stopping (what ``fit`` does whenever it has validation data).
    """

    state_key = "best"

    def __init__(self, patience: int | None, min_delta: float = 0.0, restore_best: bool = True):
        validation.check_positive_int("patience", patience, allow_none=True)
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.patience, self.min_delta, self.restore_best = patience, float(min_delta), bool(restore_best)
        self.load_state(None)

    def on_fit_start(self, run):
        if run.validation is None:
            raise ValueError("EarlyStopping (patience) needs validation data: fit(..., validation=(x, y))")
        if not self.restore_best:  # a resumed checkpoint's best params are not what this run returns
            run.best_params = None

    def params_needed(self, epoch):
        return None  # the best epoch's params: the chunk keeps them (chunk.Patience)

    def device_rule(self, run):
        if run.validation is None:
            return None
        return chunk.Patience(self.patience, self.min_delta, self.restore_best), chunk.Patience.state(
            self.best_loss, self.bad
        )

    def on_epoch_end(self, run):
        loss = run.record["val_loss"]
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad = loss, run.epoch, 0
            if self.restore_best:
                run.best_params = run.params
        else:
            self.bad += 1
        run.history.best_epoch = self.best_epoch
        if self.patience is not None and self.bad >= self.patience:
            return run.stop(
                Stop(
                    StopKind.EARLY_STOPPING,
                    f"early stopping: no validation improvement for "
                    f"{self.patience} epochs (best epoch {self.best_epoch})",
                )
            )
        return None

    def state(self) -> dict:
        return {
            "loss": None if math.isinf(self.best_loss) else self.best_loss,
            "epoch": self.best_epoch,
            "bad": self.bad,
        }

    def load_state(self, d: dict | None) -> None:
        d = d or {}
        self.best_loss = math.inf if d.get("loss") is None else d["loss"]
        self.best_epoch, self.bad = d.get("epoch"), d.get("bad", 0)


class MethodStop(Callback):
    """Stop when the run's method's own rule says so (``fnn.optimizers.Method.stop``, a function of the
    epoch's reports): Levenberg-Marquardt's ``mu`` passing ``mu_max``, say. ``fit`` adds it for every method
    that has a rule."""

    def params_needed(self, epoch):
        return None

    def device_rule(self, run):
        halt = getattr(run.method, "halt", None)
        return None if halt is None else (chunk.MethodRule(halt), ())

    def on_epoch_end(self, run):
        rule = run.method.stop if run.method is not None else None
        reports = {name: run.record[name] for name in run.history.reports if name in run.record}
        message = rule(reports) if rule is not None else None
        return run.stop(Stop(StopKind.METHOD, f"{run.method.name}: {message}")) if message else None


class LevenbergMarquardtStop(MethodStop):
    """Deprecated: ``MethodStop``, which ``fit`` adds for every method with a stopping rule
    (this one included)."""

    def __init__(self):
        warnings.warn(
            "LevenbergMarquardtStop is deprecated: fit applies each method's own stopping rule "
            "(fnn.callbacks.MethodStop)",
            DeprecationWarning,
            stacklevel=2,
        )


class Checkpoint(Callback):
    """Write the run to ``path`` (``fnn.training.checkpoint``: atomic, no pickle),
    from which ``fit(resume=True)`` continues.

    Written every ``every`` epochs or, when that is ``None``, whenever
    ``every_s`` seconds have passed since the last write (writing every epoch
    of a fast run would cost more than the training), and always when the run
    ends: stopped, diverged (the last finite epoch), interrupted (Ctrl-C) or
    failed. Holds the params, optimizer state, key, epoch, history, the best
    params, the state of every callback with a ``state_key``, the network's
    ``describe()``, the optimizer's name and ``run.config``.
    """

    def __init__(self, path, every: int | None = None, every_s: float = 30.0):
        validation.check_positive_int("checkpoint_every", every, allow_none=True)
        every_s = validation.check_positive_number("every_s", every_s, finite=False)
        self.path, self.every, self.every_s = os.fspath(path), every, every_s
        self._saved_epoch, self._saved_time = None, time.monotonic()

    def on_fit_start(self, run):
        self._saved_epoch, self._saved_time = run.epoch, time.monotonic()

    def params_needed(self, epoch):
        # every: the epochs it saves at end a chunk; every_s: it saves at the end of the chunk it falls due in
        return None if self.every is None else self.every - epoch % self.every

    def on_epoch_end(self, run):
        if not run.params_known:
            return
        if self.every is not None and run.epoch % self.every == 0:
            self.save(run)
        elif self.every is None and time.monotonic() - self._saved_time >= self.every_s:
            self.save(run)

    def on_fit_end(self, run):
        if self._saved_epoch != run.epoch:
            self.save(run)

    def save(self, run) -> None:
        self._saved_epoch, self._saved_time = run.epoch, time.monotonic()
        if not distributed.is_writer():  # one process writes
            return
        trees = {
            "params": run.params,
            "opt_state": run.opt_state,
            "best_params": run.resolve(run.best_params),
        }
        meta = {
            "net": run.net.describe(),
            "optimizer": run.optimizer,
            "config": run.config,
            "epoch": run.epoch,
            "history": run.history.to_dict(),
        }
        meta.update({cb.state_key: cb.state() for cb in run.callbacks if cb.state_key})
        checkpoint.save(self.path, trees=distributed.to_local(trees), key=run.key, meta=meta)

    def restore(self, run) -> bool:
        """Continue ``run`` from the checkpoint, if there is one; whether there was."""
        if not os.path.exists(self.path):
            return False
        saved = checkpoint.load(self.path)
        _check_same_run(saved.meta, run)
        run.params = checkpoint.restore_tree(saved, "params", run.params)
        run.opt_state = checkpoint.restore_tree(saved, "opt_state", run.opt_state)
        if "best_params" in saved.arrays:
            run.best_params = checkpoint.restore_tree(saved, "best_params", run.params)
        run.history = type(run.history).from_dict(saved.meta["history"])
        run.history.stop = None
        run.key = saved.key if saved.key is not None else run.key
        run.epoch = run.start = int(saved.meta["epoch"])
        for cb in run.callbacks:
            if cb.state_key in saved.meta:
                cb.load_state(saved.meta[cb.state_key])
        return True


def _check_same_run(meta: dict, run) -> None:
    saved, now = meta.get("net", {}), run.net.describe()
    if saved != now:
        raise ValueError(f"the checkpoint was written for network {saved}, not {now}")
    if meta.get("optimizer") != run.optimizer:
        raise ValueError(
            f"the checkpoint was written with optimizer {meta.get('optimizer')!r}, not {run.optimizer!r}"
        )


class ProgressBar(Callback):
    """A tqdm bar over the epochs, with the loss, validation loss and accuracy, samples/s, TFLOP/s and MFU."""

    def on_fit_start(self, run):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is an optional extra
            self.bar = None
            return
        self.bar = tqdm(
            total=run.epochs, initial=run.epoch, unit="epoch", desc="training", dynamic_ncols=True, leave=True
        )

    def params_needed(self, epoch):
        return None

    def on_epoch_end(self, run):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(postfix(run.record, run.peak_tflops), refresh=False)

    def on_fit_end(self, run):
        if getattr(self, "bar", None) is not None:
            self.bar.close()


def postfix(record: dict, peak_tflops: float | None = None) -> dict:
    """The progress bar's fields for one epoch's record."""
    out = {"loss": f"{record['train_loss']:.4g}"}
    if not math.isnan(record["val_loss"]):
        out["val_loss"] = f"{record['val_loss']:.4g}"
    if not math.isnan(record["val_accuracy"]):
        out["val_acc"] = f"{record['val_accuracy']:.3f}"
    if record.get("samples_per_s"):
        out["samples/s"] = f"{record['samples_per_s']:.3g}"
        out["TFLOP/s"] = f"{record['tflops']:.3g}"
    mfu = throughput.mfu(record.get("tflops"), peak_tflops)  # None unless a known peak and <= 100%
    if mfu is not None:
        out["MFU"] = f"{100 * mfu:.1f}%"
    return out


class Diagnostics(Callback):
    """Per-layer gradient and delta norms, saturation, dead relus and update ratios after each epoch.

    Measured on a fixed probe batch, the first ``fnn.diagnostics.PROBE``
    training examples, and kept in ``history.diagnostics`` (``fnn.diagnostics``).
    """

    def on_fit_start(self, run):
        self.probe = diagnostics.probe_batch(*run.train)

    def on_epoch_end(self, run):
        before = run.previous[0]
        diagnostics.append(
            run.history.diagnostics, diagnostics.record(run.net, before, run.params, *self.probe)
        )


class CSVLogger(Callback):
    """``path``: one header line and one row per epoch, the columns of ``History.to_csv``, written as it goes.

    A resumed run rewrites the file with the epochs it resumes from, then appends.
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def on_fit_start(self, run):
        if not distributed.is_writer():
            return
        history = run.history
        lines = [history.csv_header(len(run.net.groups(run.params)))]
        lines += [history.csv_row(i) for i in range(len(history))]
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def params_needed(self, epoch):
        return None

    def on_epoch_end(self, run):
        if distributed.is_writer():
            with open(self.path, "a") as f:
                f.write(run.history.csv_row(len(run.history) - 1) + "\n")
