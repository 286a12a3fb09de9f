"""Many epochs per compiled program (``fnn.training.chunk``): the same bits as one epoch per program.

``fit(chunk_epochs=1)`` is the one-program-per-epoch path (``make_epoch``);
``chunk_epochs=k`` runs ``k`` epochs per program, and ``None`` as many as take
about a quarter of a second. Every comparison here is of exact bits within
one run: params, optimizer state and every recorded value, for every method,
with validation, dropout and several devices, for runs stopped by each rule
and for runs resumed at each epoch.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

import fnn
from fnn.training import chunk, loop

REG = fnn.MLP((3, 8, 2), activation="tanh", output="identity", loss="mse")
CLF = fnn.MLP((2, 8, 3), activation="tanh", output="softmax", loss="cross_entropy")
DROPOUT = fnn.MLP((2, 8, 8, 3), activation="relu", output="softmax", loss="cross_entropy", dropout=0.3)


def _regression(n=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]) + 0.1 * x[:, 1], x[:, 2] * x[:, 0]], axis=1).astype(np.float32)
    return x, y


def _blobs(n=90):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 2)) + np.stack([np.cos(2.1 * y), np.sin(2.1 * y)], 1) * 2).astype(np.float32)
    return x, y.astype(np.int32)


# The suite compiles with XLA's quick options (its backend optimisation off, tests/conftest.py). They round
# a few operations of an epoch differently inside the chunk's loop than in the epoch's own program: a few
# float32 ulps after some epochs (up to 1e-4 relative where Hessian-free's inner CG amplifies them), and
# in float64 a difference of rounding (the last test). XLA's default compile, the one
# users run, gives the same bits: .ci/run runs these tests again with it (FNN_TEST_XLA_DEFAULTS=1) on three
# instruction sets, where every comparison below is exact. The epochs and stops are equal either way.
QUICK = "--xla_backend_optimization_level=0" in os.environ.get("XLA_FLAGS", "")


def _equal(u, v, what=""):
    u, v = np.asarray(u, float), np.asarray(v, float)
    if QUICK:
        np.testing.assert_allclose(u, v, rtol=1e-3, atol=1e-4 * max(1.0, np.nanmax(np.abs(u), initial=0)))
    else:
        np.testing.assert_array_equal(u, v, what)


def _same(a, b):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        _equal(u, v)


def _same_history(h1, h2):
    assert h1.epoch == h2.epoch
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "grad_norm"):
        _equal(getattr(h1, name), getattr(h2, name), name)
    assert h1.reports.keys() == h2.reports.keys()
    for name in h1.reports:
        _equal(h1.reports[name], h2.reports[name], name)
    assert h1.stop == h2.stop and h1.best_epoch == h2.best_epoch and h1.diverged == h2.diverged


def _fits(net, data, chunkings=(1, 3, None), **kw):
    kw.setdefault("key", jax.random.key(2))
    p0 = fnn.init(jax.random.key(0), net)
    return [fnn.fit(net, p0, data, chunk_epochs=c, **kw) for c in chunkings]


@pytest.mark.exact
@pytest.mark.parametrize("optimizer", fnn.optimizers.NAMES)
def test_every_method_gives_the_same_bits_whatever_the_chunks(optimizer):
    x, y = _regression()
    runs = _fits(REG, (x, y), optimizer=optimizer, epochs=7, validation=(x[:20], y[:20]))
    (p1, h1), *others = runs
    for p, h in others:
        _same(p1, p)
        _same(h1.opt_state, h.opt_state)
        _same_history(h1, h)


@pytest.mark.exact
def test_minibatches_validation_and_dropout_give_the_same_bits():
    x, y = _blobs()
    for net in (CLF, DROPOUT):
        (p1, h1), *others = _fits(net, (x, y), optimizer="adam", batch_size=16, epochs=9, validation=(x, y))
        for p, h in others:
            _same(p1, p)
            _same_history(h1, h)
    # the host-fed path (each epoch's minibatches gathered on the host) runs one epoch per program
    (p1, h1), (p2, h2) = _fits(DROPOUT, (x, y), chunkings=(1, None), batch_size=16, epochs=5, feed="host")
    _same(p1, p2)
    _same_history(h1, h2)


@pytest.mark.exact
@pytest.mark.parametrize(
    "stop",
    [
        dict(goal=0.5),
        dict(min_grad=0.6),
        dict(patience=2, validation=True),
        dict(patience=3, min_delta=1e-3, validation=True),
        dict(callback=lambda r: r["epoch"] == 6),
    ],
    ids=["goal", "min_grad", "patience", "min_delta", "callback"],
)
def test_a_run_stops_at_the_same_epoch_whatever_the_chunks(stop):
    x, y = _blobs()
    kw = dict(stop)
    if kw.pop("validation", False):
        kw["validation"] = (x[:40], (y[:40] + 1) % 3)  # wrong labels: the validation loss soon rises
    runs = _fits(CLF, (x, y), chunkings=(1, 4, 64, None), optimizer="adam", batch_size=16, epochs=60, **kw)
    (p1, h1), *others = runs
    assert h1.stop.kind is not fnn.StopKind.COMPLETED, h1.stop_reason  # the rule did stop the run
    for p, h in others:
        _same(p1, p)
        _same_history(h1, h)


@pytest.mark.exact
def test_a_method_stop_and_divergence_end_at_the_same_epoch():
    x, y = _regression()
    # a method's own rule, decided on the device (halt) or by the host alone (stop only: the chunk that went
    # past the epoch is run again to it)
    count = lambda state: {"steps": fnn.optimizers.find_state(state, optax.ScaleByAdamState).count}
    for halt in (lambda r: r["steps"] >= 6, None):
        method = fnn.optimizers.Method(
            "adam_six",
            lambda lr, **_: optax.adam(1e-2),
            full_batch=True,
            report=count,
            halt=halt,
            stop=lambda r: "six steps" if r["steps"] >= 6 else None,
        )
        runs = _fits(REG, (x, y), optimizer=method, epochs=40)
        assert runs[0][1].stop.kind is fnn.StopKind.METHOD and len(runs[0][1]) == 6
        for p, h in runs[1:]:
            _same(runs[0][0], p)
            _same_history(runs[0][1], h)
    # a learning rate that diverges: the params of the last finite epoch, whatever the chunks
    with pytest.warns(fnn.callbacks.DivergenceWarning):
        runs = _fits(REG, (x * 1e3, y * 1e3), optimizer="gd", learning_rate=10.0, epochs=40)
    assert runs[0][1].diverged
    for p, h in runs[1:]:
        _same(runs[0][0], p)
        _same_history(runs[0][1], h)
        assert np.all(np.isfinite(jax.flatten_util.ravel_pytree(p)[0]))


@pytest.mark.exact
def test_restore_best_returns_the_best_epochs_params_whatever_the_chunks():
    x, y = _blobs()
    yv = y[:40].copy()
    yv[:24] = (yv[:24] + 1) % 3  # most labels wrong: the validation loss falls, then rises
    kw = dict(optimizer="adam", batch_size=16, epochs=30, validation=(x[:40], yv), restore_best=True)
    runs = _fits(CLF, (x, y), chunkings=(1, 5, None), **kw)
    best = runs[0][1].best_epoch
    assert best is not None and best % 5 and best < 30  # inside a chunk: the chunk's kept params
    for p, h in runs[1:]:
        _same(runs[0][0], p)
        assert h.best_epoch == best


@pytest.mark.exact
def test_a_resumed_run_equals_the_whole_run_wherever_the_chunks_fall(tmp_path):
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), DROPOUT)
    kw = dict(optimizer="adam", batch_size=16, key=jax.random.key(4), validation=(x, y))
    whole, h_whole = fnn.fit(DROPOUT, p0, (x, y), epochs=9, chunk_epochs=1, **kw)
    for stop_at in range(1, 9):
        path = tmp_path / f"ck{stop_at}.npz"
        fnn.fit(DROPOUT, p0, (x, y), epochs=stop_at, checkpoint=path, chunk_epochs=None, **kw)
        resumed, h = fnn.fit(
            DROPOUT, p0, (x, y), epochs=9, checkpoint=path, resume=True, chunk_epochs=4, **kw
        )
        _same(whole, resumed)
        _same_history(h_whole, h)


class _Seen(fnn.callbacks.Callback):
    """Records what a callback is shown each epoch."""

    def __init__(self, needs):
        self.needs, self.epochs, self.known = needs, [], []

    def params_needed(self, epoch):
        return self.needs

    def on_epoch_end(self, run):
        self.epochs.append(run.epoch)
        self.known.append(run.params_known)


def test_every_callback_sees_every_epoch_in_order_and_params_where_it_asks():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    lazy, every, logged = _Seen(None), _Seen(1), []
    fnn.fit(
        CLF,
        p0,
        (x, y),
        epochs=12,
        batch_size=16,
        key=jax.random.key(0),
        chunk_epochs=5,
        callbacks=[lazy],
        callback=lambda r: logged.append(r["epoch"]),
    )
    assert lazy.epochs == logged == list(range(1, 13))
    assert lazy.known == [e in (5, 10, 12) for e in range(1, 13)]  # known at each chunk's end only
    fnn.fit(
        CLF, p0, (x, y), epochs=6, batch_size=16, key=jax.random.key(0), chunk_epochs=5, callbacks=[every]
    )
    assert every.epochs == list(range(1, 7)) and all(every.known)  # a callback that needs them: every epoch


def test_checkpoint_every_ends_a_chunk_where_it_saves(tmp_path):
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    saved = []
    ck = fnn.callbacks.Checkpoint(tmp_path / "ck.npz", every=3)
    original = ck.save
    ck.save = lambda run: (saved.append((run.epoch, run.params_known)), original(run))
    fnn.fit(CLF, p0, (x, y), epochs=10, batch_size=16, key=jax.random.key(0), chunk_epochs=8, callbacks=[ck])
    assert saved == [(3, True), (6, True), (9, True), (10, True)]


def test_the_chunks_grow_to_about_a_quarter_second_and_fit_the_order_budget():
    assert loop._capacity(10_000, 0) == loop.MAX_CHUNK  # full batch: no orders
    assert loop._capacity(5, 40) == 8  # a power of two up to the run's epochs
    assert loop._capacity(10_000, 1000 * 64 * 4) == 64  # 1000 x 64 int32 orders: 16 MiB / 256 KB = 65
    # a float32 loss is <= below(b) exactly when it is <= b in float64, as the host compares
    assert float(chunk.below(0.1)) <= 0.1 < float(np.nextafter(chunk.below(0.1), np.float32(1)))
    assert chunk.below(2.0) == 2.0


def test_chunk_epochs_is_checked():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises((TypeError, ValueError), match="chunk_epochs"):
            fnn.fit(CLF, p0, (x, y), epochs=2, key=jax.random.key(0), chunk_epochs=bad)


def test_batch_size_none_is_the_whole_set_and_auto_the_methods_own():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    seen = {}
    for batch in (None, "auto"):
        fnn.fit(
            CLF,
            p0,
            (x, y),
            optimizer="adam",
            epochs=1,
            key=jax.random.key(0),
            batch_size=batch,
            callback=lambda r, b=batch: seen.setdefault(b, r["samples_per_s"]),
        )
    _, h_none = fnn.fit(CLF, p0, (x, y), optimizer="adam", epochs=2, key=jax.random.key(0), batch_size=None)
    _, h_all = fnn.fit(CLF, p0, (x, y), optimizer="adam", epochs=2, key=jax.random.key(0), batch_size=90)
    _, h_auto = fnn.fit(CLF, p0, (x, y), optimizer="adam", epochs=2, key=jax.random.key(0))
    _, h_32 = fnn.fit(CLF, p0, (x, y), optimizer="adam", epochs=2, key=jax.random.key(0), batch_size=32)
    assert h_none.train_loss == h_all.train_loss
    assert h_auto.train_loss == h_32.train_loss != h_none.train_loss


FOUR_DEVICES = textwrap.dedent("""
    import json
    import jax, numpy as np
    import fnn
    assert len(jax.devices()) == 4
    net = fnn.MLP((4, 16, 3), activation="tanh", output="softmax", loss="cross_entropy", dropout=0.2)
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (160, 4)); y = jax.random.randint(k[1], (160,), 0, 3)
    p0 = fnn.init(k[2], net)
    out = {}
    for c in (1, 3, None):
        p, h = fnn.fit(net, p0, (x, y), epochs=7, batch_size=40, key=jax.random.key(1), devices=4,
                       validation=(x, y), chunk_epochs=c)
        out[str(c)] = {"loss": h.train_loss, "val": h.val_loss, "W": np.asarray(p[0]["W"]).ravel().tolist()}
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.exact
def test_four_devices_give_the_same_bits_whatever_the_chunks():
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # XLA's default compile (not the suite's quick one): exact
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    done = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT", 1)[1])
    assert out["1"] == out["3"] == out["None"]


@pytest.mark.skipif(not QUICK, reason="XLA's default compile: the same bits (the tests above)")
@pytest.mark.parametrize(
    "net, optimizer, epochs, rtol",
    # Hessian-free multiplies a difference by about 100 an epoch (2e-16 after 2 epochs, 1e-11 after 5)
    [(DROPOUT, "adam", 7, 1e-12), (REG, "hessian_free", 2, 1e-14)],
    ids=["adam", "hf"],
)
def test_under_the_quick_compile_the_difference_is_rounding(net, optimizer, epochs, rtol):
    x, y = _blobs() if net is DROPOUT else _regression()
    with jax.enable_x64(True):
        p0 = fnn.init(jax.random.key(0), net, dtype=np.float64)
        data = (x.astype(np.float64), y if net is DROPOUT else y.astype(np.float64))
        runs = [
            fnn.fit(
                net,
                p0,
                data,
                chunk_epochs=c,
                optimizer=optimizer,
                epochs=epochs,
                key=jax.random.key(2),
                validation=data,
            )
            for c in (1, 3)
        ]
        for u, v in zip(*(jax.tree_util.tree_leaves(p) for p, _ in runs), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=rtol * np.abs(u).max())
