"""fnn.fit: the seeds' classic problems, stopping rules, determinism, resume, faults."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.training import checkpoint, loop


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    centers = np.array([[2, 0], [-1, 2], [-1, -2]], np.float32)
    x = centers[y] + 0.7 * rng.normal(size=(n, 2)).astype(np.float32)
    return x, y


CLF = fnn.MLP((2, 16, 3), activation="tanh", output="softmax", loss="cross_entropy")


def test_levenberg_marquardt_fits_sine():
    ds = fnn.datasets.load("sine")
    net = fnn.MLP((1, 10, 1), activation="tanh")
    params, h = fnn.fit(
        net,
        fnn.init(jax.random.key(0), net),
        (ds.x, ds.y),
        optimizer="levenberg_marquardt",
        epochs=100,
        key=jax.random.key(0),
    )
    final = float(fnn.loss(net, params, ds.x, ds.y))
    assert len(h) <= 100
    assert final <= 1e-5, final
    assert not math.isnan(h.mu[-1])


@pytest.mark.exact
def test_xor_with_momentum():
    ds = fnn.datasets.load("xor")
    net = fnn.MLP((2, 2, 1), activation="sigmoid", output="sigmoid")
    params, h = fnn.fit(
        net,
        fnn.init(jax.random.key(0), net),
        (ds.x, ds.y),
        optimizer="momentum",
        learning_rate=0.5,
        epochs=2000,
        key=jax.random.key(0),
    )
    yhat = np.asarray(fnn.predict(net, params, ds.x)).ravel()
    np.testing.assert_array_equal(yhat > 0.5, ds.y.ravel() > 0.5)
    assert h.train_loss[-1] < 0.01


def test_history_holds_the_documented_records():
    x, y = _blobs()
    params, h = fnn.fit(
        CLF,
        fnn.init(jax.random.key(0), CLF),
        (x[:90], y[:90]),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=4,
        batch_size=32,
        key=jax.random.key(0),
        validation=(x[90:], y[90:]),
    )
    assert h.epoch == [1, 2, 3, 4]
    for name in (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "epoch_time_s",
        "wall_time_s",
    ):
        values = getattr(h, name)
        assert len(values) == 4 and all(np.isfinite(values)), name
    assert h.learning_rate == pytest.approx([1e-2] * 4)
    assert all(len(g) == CLF.n_layers and min(g) > 0 for g in h.grad_norm)
    assert h.train_loss[-1] < h.train_loss[0]
    assert 0 <= h.val_accuracy[-1] <= 1
    assert h.wall_time_s == sorted(h.wall_time_s)
    assert h.stop_reason == "completed 4 epochs"


def test_history_csv_has_every_column_and_reads_older_records(tmp_path):
    x, y = _blobs()
    _, h = fnn.fit(
        CLF,
        fnn.init(jax.random.key(0), CLF),
        (x, y),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=3,
        batch_size=32,
        key=jax.random.key(0),
    )
    h.to_csv(tmp_path / "h.csv")
    header, *rows = (tmp_path / "h.csv").read_text().splitlines()
    assert header.split(",") == [*fnn.History.COLUMNS, *fnn.History.TIMES, "grad_norm_1", "grad_norm_2"]
    speed = [float(r.split(",")[header.split(",").index("samples_per_s")]) for r in rows]
    assert speed == pytest.approx(h.samples_per_s) and min(speed) > 0
    # a history saved before samples_per_s and tflops were recorded (one epoch), continued by one more epoch
    old = {k: v for k, v in h.to_dict().items() if k not in ("samples_per_s", "tflops")}
    old.update({k: v[:1] for k, v in old.items() if isinstance(v, list)})
    resumed = fnn.History.from_dict(old)
    assert resumed.samples_per_s == [None] and resumed.tflops == [None]
    # the next epoch, recorded as fit records it
    resumed.append(
        loop._record(
            2,
            {"train_loss": h.train_loss[1], "grad_norm": h.grad_norm[1]},
            0.1,
            0.2,
            {"samples_per_s": 5.0, "tflops": 1.0},
        )
    )
    resumed.to_csv(tmp_path / "r.csv")
    first, second = [r.split(",") for r in (tmp_path / "r.csv").read_text().splitlines()[1:]]
    col = header.split(",").index("samples_per_s")
    assert first[col] == "" and second[col] == "5.0"


@pytest.mark.exact
def test_deterministic_for_a_key_and_different_for_another():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    run = lambda k: fnn.fit(
        CLF, p0, (x, y), optimizer="sgd", learning_rate=0.1, epochs=3, batch_size=25, key=jax.random.key(k)
    )[0]
    a, b, c = run(1), run(1), run(2)
    for la, lb, _lc in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(c)
    ):
        np.testing.assert_array_equal(la, lb)
    assert any(
        not np.array_equal(la, lc)
        for la, lc in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(c))
    )


def test_goal_and_min_grad_stop_training():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    _, h = fnn.fit(
        CLF,
        p0,
        (x, y),
        optimizer="adam",
        learning_rate=1e-2,
        epochs=200,
        batch_size=40,
        key=jax.random.key(0),
        goal=0.3,
    )
    assert h.train_loss[-1] <= 0.3 and len(h) < 200 and h.stop_reason.startswith("reached the goal")
    _, h = fnn.fit(CLF, p0, (x, y), optimizer="gd", epochs=50, key=jax.random.key(0), min_grad=1e3)
    assert len(h) == 1 and "min_grad" in h.stop_reason


def test_early_stopping_restores_the_best_params():
    x, y = _blobs(200)
    rng = np.random.default_rng(1)
    y_noisy = np.where(rng.random(200) < 0.4, rng.integers(0, 3, 200), y).astype(np.int32)  # overfit bait
    net = fnn.MLP((2, 64, 64, 3), activation="relu", output="softmax", loss="cross_entropy")
    p0 = fnn.init(jax.random.key(0), net)
    seen = []
    params, h = fnn.fit(
        net,
        p0,
        (x[:100], y_noisy[:100]),
        optimizer="adam",
        learning_rate=3e-2,
        epochs=300,
        batch_size=100,
        key=jax.random.key(0),
        validation=(x[100:], y[100:]),
        patience=5,
        callback=lambda rec: seen.append(rec["val_loss"]) and None,
    )
    assert h.stop_reason.startswith("early stopping") and len(h) < 300
    best = int(np.argmin(h.val_loss)) + 1
    assert h.best_epoch == best == len(h) - 5
    assert float(fnn.loss(net, params, x[100:], y[100:])) == pytest.approx(h.val_loss[best - 1], rel=1e-5)
    assert seen == h.val_loss


def test_patience_needs_validation():
    x, y = _blobs()
    with pytest.raises(ValueError, match="needs validation"):
        fnn.fit(CLF, fnn.init(jax.random.key(0), CLF), (x, y), epochs=2, key=jax.random.key(0), patience=3)


def test_non_finite_data_is_rejected():
    x, y = _blobs()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="train_x contains NaN or inf"):
        fnn.fit(CLF, fnn.init(jax.random.key(0), CLF), (x, y), epochs=2, key=jax.random.key(0))


@pytest.mark.exact
def test_divergence_stops_and_keeps_the_last_good_params_and_checkpoint(tmp_path):
    x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
    y = 1e3 * x
    net = fnn.MLP((1, 8, 1), activation="relu")
    p0 = fnn.init(jax.random.key(0), net)
    path = tmp_path / "ckpt.npz"
    with pytest.warns(RuntimeWarning, match="non-finite"):
        params, h = fnn.fit(
            net,
            p0,
            (x, y),
            optimizer="gd",
            learning_rate=5.0,
            epochs=100,
            key=jax.random.key(0),
            checkpoint=path,
        )
    assert h.diverged and "non-finite" in h.stop_reason and len(h) < 100
    assert all(np.isfinite(np.asarray(l)).all() for l in jax.tree_util.tree_leaves(params))
    saved = checkpoint.load(path)
    assert saved.meta["epoch"] == len(h)
    restored = checkpoint.restore_tree(saved, "params", p0)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.exact
@pytest.mark.parametrize("optimizer", ["adam", "adaptive_momentum"])
def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path, optimizer):
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    kw = dict(
        optimizer=optimizer,
        batch_size=32 if optimizer == "adam" else None,
        key=jax.random.key(3),
        validation=(x[:20], y[:20]),
    )
    full, h_full = fnn.fit(CLF, p0, (x, y), epochs=6, **kw)
    path = tmp_path / "ckpt.npz"
    fnn.fit(CLF, p0, (x, y), epochs=3, checkpoint=path, **kw)
    assert checkpoint.load(path).meta["epoch"] == 3
    other = fnn.init(jax.random.key(9), CLF)  # a template only: the checkpoint's params are used
    resumed, h_res = fnn.fit(CLF, other, (x, y), epochs=6, checkpoint=path, resume=True, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert h_res.epoch == h_full.epoch
    assert h_res.train_loss == h_full.train_loss and h_res.val_loss == h_full.val_loss


@pytest.mark.exact
def test_opt_state_continues_a_run_across_calls():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    # full batch: no shuffle
    kw = dict(optimizer="adam", learning_rate=1e-2, batch_size=len(x), key=jax.random.key(0))
    whole, h_whole = fnn.fit(CLF, p0, (x, y), epochs=4, **kw)
    half, h1 = fnn.fit(CLF, p0, (x, y), epochs=2, **kw)
    adam = h1.opt_state.inner_state[0]
    assert int(adam.count) == 2 and adam.mu.shape == (CLF.n_params,)  # one flat vector of all parameters
    continued, h2 = fnn.fit(CLF, half, (x, y), epochs=2, opt_state=h1.opt_state, **kw)
    restarted, _ = fnn.fit(CLF, half, (x, y), epochs=2, **kw)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (whole, continued, restarted))):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)  # a fresh state restarts Adam's bias correction
    assert h2.train_loss == h_whole.train_loss[2:]
    assert "opt_state" not in h2.to_dict()
    with pytest.raises(ValueError, match="opt_state does not match"):
        fnn.fit(
            CLF,
            half,
            (x, y),
            epochs=1,
            optimizer="momentum",
            batch_size=len(x),
            key=jax.random.key(0),
            opt_state=h1.opt_state,
        )
    wider = fnn.MLP((CLF.sizes[0], CLF.sizes[1] + 1, *CLF.sizes[2:]), output=CLF.output, loss=CLF.loss)
    with pytest.raises(
        ValueError, match=r"opt_state\.inner_state\[0\]\.mu is float32\[\d+\], this run expects"
    ):
        fnn.fit(wider, fnn.init(jax.random.key(0), wider), (x, y), epochs=1, opt_state=h1.opt_state, **kw)


def test_resume_rejects_another_network(tmp_path):
    x, y = _blobs()
    path = tmp_path / "ckpt.npz"
    fnn.fit(CLF, fnn.init(jax.random.key(0), CLF), (x, y), epochs=1, key=jax.random.key(0), checkpoint=path)
    other = fnn.MLP((2, 8, 3), output="softmax", loss="cross_entropy")
    with pytest.raises(ValueError, match="written for network"):
        fnn.fit(
            other,
            fnn.init(jax.random.key(0), other),
            (x, y),
            epochs=2,
            key=jax.random.key(0),
            checkpoint=path,
            resume=True,
        )


@pytest.mark.exact
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    kw = dict(optimizer="adam", batch_size=30, key=jax.random.key(5))
    full, _ = fnn.fit(CLF, p0, (x, y), epochs=5, **kw)
    path = tmp_path / "ckpt.npz"

    def interrupt(rec):
        if rec["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(fnn.Interrupted) as info:
        fnn.fit(CLF, p0, (x, y), epochs=5, checkpoint=path, checkpoint_every=100, callback=interrupt, **kw)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.epoch == 2 and checkpoint.load(path).meta["epoch"] == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    resumed, h = fnn.fit(CLF, p0, (x, y), epochs=5, checkpoint=path, resume=True, **kw)
    assert len(h) == 5
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    x, y = _blobs()
    p0 = fnn.init(jax.random.key(0), CLF)
    with pytest.raises(TypeError, match="key"):
        fnn.fit(CLF, p0, (x, y), epochs=1, key=None)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        fnn.fit(CLF, p0, (x, y), epochs=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fnn.fit(CLF, p0, (x, y), epochs=1, batch_size=-3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="x must have shape"):
        fnn.fit(CLF, p0, (x[:, :1], y), epochs=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown optimizer"):
        fnn.fit(CLF, p0, (x, y), optimizer="nope", epochs=1, key=jax.random.key(0))


def test_evaluate_is_the_loss_and_the_accuracy_of_one_forward_pass():
    """``fnn.evaluate``: ``fnn.loss`` and the share of argmax predictions equal to the labels, from one
    compiled program; labels or one-hot rows alike; no accuracy for regression; bad input is a
    ValueError."""
    with jax.enable_x64():
        net = fnn.MLP((5, 7, 3), activation="tanh", output="softmax", loss="cross_entropy")
        params = fnn.init(jax.random.key(0), net, dtype=jnp.float64)
        x = np.random.default_rng(0).normal(size=(40, 5))
        labels = np.random.default_rng(1).integers(0, 3, size=40)
        got = fnn.evaluate(net, params, x, labels)
        assert got["loss"] == pytest.approx(float(fnn.loss(net, params, x, labels)), rel=1e-13)
        predicted = np.argmax(np.asarray(fnn.predict(net, params, x)), axis=1)
        assert got["accuracy"] == np.mean(predicted == labels) and 0 < got["accuracy"] < 1
        assert fnn.evaluate(net, params, x, np.eye(3)[labels]) == got
        reg = fnn.MLP((5, 4, 2))
        rp = fnn.init(jax.random.key(1), reg, dtype=jnp.float64)
        y = np.random.default_rng(2).normal(size=(40, 2))
        assert fnn.evaluate(reg, rp, x, y) == {
            "loss": pytest.approx(float(fnn.loss(reg, rp, x, y)), rel=1e-13)
        }
        with pytest.raises(ValueError, match="x must have shape"):
            fnn.evaluate(net, params, x[:, :4], labels)
