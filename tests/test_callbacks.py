"""``fnn.callbacks`` and the loop that drives them.

Every claim is checked within this run, never against bits computed on
another machine (XLA's CPU code changes with the instruction set): each stop
ends the run where its rule says on the run's own history, the keywords
equal the callbacks they stand for bit for bit, and a resumed run equals the
uninterrupted one (``tests/test_train.py``). ``.ci/run`` runs the tests marked
``exact`` a second time under ``XLA_FLAGS=--xla_cpu_max_isa=AVX2``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import warnings

import jax
import numpy as np
import optax
import pytest

import fnn
from fnn.training import checkpoint


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(0.0, 0.8, (n, 4))).astype(np.float32)
    return x, y


def sine(n=40):
    x = np.linspace(-1.0, 1.0, n, dtype=np.float32)[:, None]
    return x, np.sin(np.pi * x).astype(np.float32)


CLF = fnn.MLP((4, 8, 3), activation="tanh", output="softmax", loss="cross_entropy")
REG = fnn.MLP((1, 5, 1), activation="tanh", output="identity", loss="mse")
X, Y = blobs()
XS, YS = sine()
P0 = fnn.init(jax.random.key(1), CLF)
P_REG = fnn.init(jax.random.key(2), REG)
KW = dict(optimizer="adam", learning_rate=3e-2, batch_size=25, key=jax.random.key(3))
COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "grad_norm")


def _same_params(a, b):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def _same_history(a, b):
    for c in COLUMNS:  # NaN where a column does not apply, equal to NaN here
        np.testing.assert_array_equal(
            np.asarray(getattr(a, c), float), np.asarray(getattr(b, c), float), err_msg=c
        )
    assert a.reports.keys() == b.reports.keys()
    for c in a.reports:  # the method's own columns (Levenberg-Marquardt's mu, ...)
        np.testing.assert_array_equal(
            np.asarray(a.reports[c], float), np.asarray(b.reports[c], float), err_msg=c
        )
    assert (a.stop_reason, a.best_epoch, a.diverged) == (b.stop_reason, b.best_epoch, b.diverged)
    assert a.diagnostics.keys() == b.diagnostics.keys()
    for k in a.diagnostics:
        np.testing.assert_array_equal(a.diagnostics[k], b.diagnostics[k], err_msg=k)


def _first(flags) -> int:
    """The 1-based epoch of the first true flag."""
    return int(np.argmax(np.asarray(flags))) + 1


@pytest.mark.exact
def test_each_stop_ends_the_run_where_its_rule_says():
    """The runs that the old loop's reference file held, each stop checked against the run's own history."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # early stopping: patience epochs after the best, the best epoch's params restored
        params, h = fnn.fit(
            CLF,
            P0,
            (X[:90], Y[:90]),
            optimizer="adam",
            learning_rate=5e-2,
            epochs=60,
            batch_size=16,
            key=jax.random.key(3),
            validation=(X[90:], Y[90:]),
            patience=5,
            min_delta=1e-3,
        )
        assert h.stop_reason.startswith("early stopping") and len(h) == h.best_epoch + 5 < 60
        best_so_far = np.minimum.accumulate(h.val_loss)
        assert h.val_loss[h.best_epoch - 1] == best_so_far[-1]
        at_best, _ = fnn.fit(
            CLF,
            P0,
            (X[:90], Y[:90]),
            optimizer="adam",
            learning_rate=5e-2,
            epochs=h.best_epoch,
            batch_size=16,
            key=jax.random.key(3),
        )
        _same_params(params, at_best)
        # goal, by Levenberg-Marquardt: the first epoch whose loss reaches it
        _, h = fnn.fit(
            REG, P_REG, (XS, YS), optimizer="levenberg_marquardt", epochs=50, key=jax.random.key(3), goal=2e-3
        )
        assert h.stop_reason.startswith("reached the goal") and len(h) == _first(
            np.asarray(h.train_loss) <= 2e-3
        )
        # min_grad: the first epoch whose gradient norm, sqrt(sum over layers of grad_norm_l^2), falls to it
        _, h = fnn.fit(
            CLF,
            P0,
            (X, Y),
            optimizer="gd",
            learning_rate=0.5,
            epochs=400,
            key=jax.random.key(3),
            min_grad=0.05,
        )
        norm = np.sqrt(np.sum(np.asarray(h.grad_norm) ** 2, axis=1))
        assert "min_grad" in h.stop_reason and len(h) == _first(norm <= 0.05) < 400
        # a user's callback, with diagnostics on: stopped after the epoch it names
        _, h = fnn.fit(
            CLF,
            P0,
            (X, Y),
            optimizer="sgd",
            learning_rate=0.1,
            epochs=30,
            batch_size=32,
            key=jax.random.key(3),
            diagnostics=True,
            callback=lambda rec: rec["epoch"] >= 7,
            validation=(X[:30], Y[:30]),
        )
        assert len(h) == 7 and all(len(v) == 7 for v in h.diagnostics.values())
        # divergence: the params of the last finite epoch, those of the run stopped there
        params, h = fnn.fit(
            REG, P_REG, (XS, 50 * YS), optimizer="gd", learning_rate=5.0, epochs=50, key=jax.random.key(3)
        )
        assert h.diverged and np.isfinite(h.train_loss).all() and len(h) < 50
        last_finite, _ = fnn.fit(
            REG, P_REG, (XS, 50 * YS), optimizer="gd", learning_rate=5.0, epochs=len(h), key=jax.random.key(3)
        )
        _same_params(params, last_finite)


@pytest.mark.exact
def test_the_keywords_are_the_callbacks_they_stand_for(tmp_path):
    val = (X[90:], Y[90:])
    kw = dict(KW, validation=val)
    by_keywords = fnn.fit(
        CLF,
        P0,
        (X[:90], Y[:90]),
        epochs=40,
        goal=0.05,
        patience=4,
        min_delta=1e-3,
        diagnostics=True,
        checkpoint=tmp_path / "a.npz",
        checkpoint_every=3,
        **kw,
    )
    by_callbacks = fnn.fit(
        CLF,
        P0,
        (X[:90], Y[:90]),
        epochs=40,
        **kw,
        callbacks=[
            fnn.callbacks.StopAt(goal=0.05),
            fnn.callbacks.EarlyStopping(4, min_delta=1e-3),
            fnn.callbacks.Diagnostics(),
            fnn.callbacks.Checkpoint(tmp_path / "b.npz", every=3),
        ],
    )
    _same_params(by_keywords[0], by_callbacks[0])
    _same_history(by_keywords[1], by_callbacks[1])
    assert by_keywords[1].stop_reason.startswith("early stopping")
    a, b = checkpoint.load(tmp_path / "a.npz"), checkpoint.load(tmp_path / "b.npz")
    assert a.meta["epoch"] == b.meta["epoch"] == len(by_keywords[1]) and a.meta["best"] == b.meta["best"]


class Recorder(fnn.callbacks.Callback):
    """A user's callback: what it saw, and a stop of its own after ``stop_after`` epochs."""

    state_key = "recorder"

    def __init__(self, stop_after=None):
        self.stop_after, self.calls, self.seen = stop_after, [], []

    def on_fit_start(self, run):
        self.calls.append(("start", run.epoch))

    def on_epoch_end(self, run):
        assert run.record == {k: getattr(run.history, k)[-1] for k in run.record}
        assert run.history.epoch[-1] == run.epoch and run.net is CLF
        assert jax.tree_util.tree_structure(run.params) == jax.tree_util.tree_structure(P0)
        self.seen.append(run.epoch)
        if self.stop_after is not None and run.epoch >= self.stop_after:
            return run.stop(f"recorder stopped at {run.epoch}")
        return None

    def on_fit_end(self, run):
        self.calls.append(("end", run.epoch, run.stop_reason))

    def state(self):
        return {"seen": self.seen}

    def load_state(self, d):
        self.seen = list(d["seen"])


def test_a_users_callback_sees_every_epoch_and_stops_with_its_reason():
    rec = Recorder(stop_after=4)
    _, h = fnn.fit(CLF, P0, (X, Y), epochs=10, callbacks=[rec], **KW)
    assert rec.seen == [1, 2, 3, 4] and len(h) == 4
    assert rec.calls == [("start", 0), ("end", 4, "recorder stopped at 4")]
    assert h.stop_reason == "recorder stopped at 4"


def test_a_callback_that_returns_true_stops_the_run_by_callback():
    class Stop(fnn.callbacks.Callback):
        def on_epoch_end(self, run):
            return run.epoch == 2

    _, h = fnn.fit(CLF, P0, (X, Y), epochs=10, callbacks=Stop(), **KW)
    assert len(h) == 2 and h.stop_reason == "stopped by callback"


@pytest.mark.exact
def test_a_callbacks_state_is_checkpointed_and_restored(tmp_path):
    path = tmp_path / "run.npz"
    first = Recorder()
    fnn.fit(CLF, P0, (X, Y), epochs=3, callbacks=[first, fnn.callbacks.Checkpoint(path, every=1)], **KW)
    again = Recorder()
    whole, _ = fnn.fit(CLF, P0, (X, Y), epochs=6, **KW)
    resumed, h = fnn.fit(
        CLF, P0, (X, Y), epochs=6, resume=True, callbacks=[again, fnn.callbacks.Checkpoint(path)], **KW
    )
    assert again.seen == [1, 2, 3, 4, 5, 6] and again.calls[0] == ("start", 3)
    _same_params(whole, resumed)
    assert checkpoint.load(path).meta["recorder"] == {"seen": [1, 2, 3, 4, 5, 6]}


def test_csv_logger_writes_a_header_and_a_row_per_epoch_also_across_a_resume(tmp_path):
    log, path = tmp_path / "log.csv", tmp_path / "run.npz"
    fnn.fit(
        CLF,
        P0,
        (X, Y),
        epochs=2,
        callbacks=[fnn.callbacks.CSVLogger(log), fnn.callbacks.Checkpoint(path)],
        **KW,
    )
    assert len(log.read_text().splitlines()) == 3
    _, h = fnn.fit(
        CLF,
        P0,
        (X, Y),
        epochs=5,
        resume=True,
        callbacks=[fnn.callbacks.CSVLogger(log), fnn.callbacks.Checkpoint(path)],
        **KW,
    )
    h.to_csv(tmp_path / "whole.csv")
    assert log.read_text() == (tmp_path / "whole.csv").read_text()
    header, *rows = log.read_text().splitlines()
    assert (
        header.startswith("epoch,train_loss,")
        and header.endswith("grad_norm_1,grad_norm_2")
        and len(rows) == 5
    )


def test_progress_bar_shows_the_epochs(capsys):
    fnn.fit(CLF, P0, (X, Y), epochs=3, callbacks=[fnn.callbacks.ProgressBar()], **KW)
    err = capsys.readouterr().err
    assert "training" in err and "3/3" in err and "loss=" in err


def test_terminate_on_nan_is_not_doubled_and_keeps_the_last_finite_epoch():
    xs, ys, p = XS, YS, P_REG
    with pytest.warns(RuntimeWarning, match=r"non-finite .* in epoch 16; kept the params of epoch 15"):
        params, h = fnn.fit(
            REG,
            p,
            (xs, 50 * ys),
            optimizer="gd",
            learning_rate=5.0,
            epochs=50,
            key=jax.random.key(3),
            callbacks=[fnn.callbacks.TerminateOnNaN()],
        )
    assert h.diverged and len(h) == 15
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(params))


def test_reduce_on_plateau_comes_from_optax():
    """No callback of fnn's for it: optax's transform, chained after the optimizer, sees each step's loss."""
    tx = optax.chain(
        optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=2, factor=0.5, accumulation_size=4)
    )
    _, h = fnn.fit(CLF, P0, (X, Y), optimizer=tx, epochs=30, batch_size=30, key=jax.random.key(0))
    scale = optax.tree_utils.tree_get(h.opt_state, "scale")
    assert float(scale) < 1.0 and h.train_loss[-1] < h.train_loss[0]


def test_giving_a_stop_both_ways_or_a_non_callback_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"give patience= or a EarlyStopping callback, not both"):
        fnn.fit(
            CLF,
            P0,
            (X, Y),
            epochs=2,
            validation=(X, Y),
            patience=2,
            callbacks=[fnn.callbacks.EarlyStopping(3)],
            **KW,
        )
    with pytest.raises(ValueError, match=r"give checkpoint= or a Checkpoint callback, not both"):
        fnn.fit(
            CLF,
            P0,
            (X, Y),
            epochs=2,
            checkpoint=tmp_path / "a.npz",
            callbacks=[fnn.callbacks.Checkpoint(tmp_path / "b.npz")],
            **KW,
        )
    with pytest.raises(TypeError, match=r"callbacks must be fnn.callbacks.Callback objects, got function"):
        fnn.fit(CLF, P0, (X, Y), epochs=2, callbacks=[lambda run: None], **KW)
    with pytest.raises(ValueError, match=r"EarlyStopping \(patience\) needs validation data"):
        fnn.fit(CLF, P0, (X, Y), epochs=2, callbacks=[fnn.callbacks.EarlyStopping(3)], **KW)
    with pytest.raises(ValueError, match=r"checkpoint_every must be a positive int, got 0"):
        fnn.callbacks.Checkpoint(tmp_path / "c.npz", every=0)
    with pytest.raises(ValueError, match=r"every_s must be a positive number"):
        fnn.callbacks.Checkpoint(tmp_path / "c.npz", every_s=0)
    with pytest.raises(ValueError, match=r"patience must be a positive int"):
        fnn.callbacks.EarlyStopping(0)
    with pytest.raises(ValueError, match=r"resume needs the checkpoint path"):
        fnn.fit(CLF, P0, (X, Y), epochs=2, resume=True, **KW)


def test_fit_reads_in_one_screen():
    """fit's body, docstring aside: check the arguments, build the run, loop, hand each epoch to the
    callbacks."""
    source = textwrap.dedent(inspect.getsource(fnn.fit))
    node = ast.parse(source).body[0]
    first = node.body[1] if isinstance(node.body[0], ast.Expr) else node.body[0]  # after the docstring
    lines = [line for line in source.splitlines()[first.lineno - 1 : node.end_lineno] if line.strip()]
    assert len(lines) <= 80, len(lines)
