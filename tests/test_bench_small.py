"""The small-networks benchmark (``benchmarks/bench_small.py``, ``benchmarks/small.py``): the contenders
compute what ``fnn.fit`` computes, and a run writes what it should. No timing is judged.

Like with like: after a few epochs fnn.fit and the plain JAX + optax program end at the same float32
params (to 1e-5 of each array's largest entry), and PyTorch too (1e-4: other kernels), on the
full-batch workloads. (The widest gap, 7e-6 on simplechains, is Adam's: ``optax.adam(1e-3)`` takes
its moments' ``1 - b2`` in double precision and its bias correction ``1 - b2**t`` from float32 ``b2``,
so its first steps are ``lr * (1 - 6e-6)``; fnn's ``inject_hyperparams(optax.adam)`` keeps both in
float32, and PyTorch both in double, and their steps are ``lr``.) On digits (minibatches) the check
is after one epoch, its trajectory being chaotic (a one-ulp change of one initial weight moves the
params by 5e-3 in 10 epochs). PyTorch's Rprop is the textbook
one, while optax's ``scale_by_rprop`` (fnn's ``rprop``) applies each step one step late (its first
update is zero; optax pull request #1725): the PyTorch Rprop rows do the same work per step along
another path, checked here against a plain-JAX Rprop without the lag.
"""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import load_script

import fnn
from benchmarks import small

HAS_TORCH = importlib.util.find_spec("torch") is not None  # PyTorch is a benchmark extra, not a dependency
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install '.[torch]')")

FULL_BATCH = ("simplechains", "curve_gd", "curve_rprop")


@pytest.fixture(scope="module")
def data():
    return {name: small.make_data(wl) for name, wl in small.WORKLOADS.items()}


def _distance(a, b) -> float:
    """The largest difference of two params' arrays, relative to each array's largest entry."""
    return max(
        float(np.max(np.abs(x[k] - y[k])) / max(np.max(np.abs(y[k])), 1e-30)) for x, y in zip(a, b) for k in x
    )


def _moved(data, params) -> float:
    """How far ``params`` are from the initial ones: the largest change of one entry."""
    return max(float(np.max(np.abs(p[k] - q[k]))) for p, q in zip(params, small.params_of(data)) for k in p)


def test_the_workloads_are_what_they_say(data):
    from fnn.cli import train as cli

    digits, preset = small.WORKLOADS["digits"], cli.CLASSIFICATION
    assert digits.sizes == (64, *preset["hidden"], 10)
    assert (digits.activation, digits.output, digits.loss, digits.optimizer) == (
        preset["activation"],
        preset["output"],
        preset["loss"],
        preset["optimizer"],
    )
    assert (digits.batch_size, digits.epochs) == (preset["batch_size"], preset["epochs"])
    assert {k: cli.GENERAL[k] for k in ("test_size", "val_size", "seed", "scale")} == dict(
        test_size=0.25, val_size=0.1, seed=0, scale="standard"
    )  # what make_data passes to fnn.data.prepare
    assert data["digits"]["x"].shape == (1212, 64) and data["digits"]["y"].dtype == np.int32
    for wl in small.WORKLOADS.values():  # each optimizer at fnn's default learning rate
        if wl.learning_rate is not None:
            assert wl.learning_rate == fnn.optimizers.spec(wl.optimizer).default_lr
        assert wl.sizes[0] == data[wl.name]["x"].shape[1] and data[wl.name]["x"].dtype == np.float32
    x, y = data["simplechains"]["x"], data["simplechains"]["y"]
    assert x.shape == y.shape == (10_000, 4)
    m = x[0].astype(np.float64).reshape(2, 2).T  # column by column
    np.testing.assert_allclose(y[0], (np.eye(2) + m + m @ m / 2 + m @ m @ m / 6).T.ravel(), atol=0.5)
    eigen = np.linalg.eig(m)  # exp(m) = V exp(D) V^-1
    exact = (eigen.eigenvectors @ np.diag(np.exp(eigen.eigenvalues)) @ np.linalg.inv(eigen.eigenvectors)).real
    np.testing.assert_allclose(y[0], exact.T.ravel(), rtol=1e-5, atol=1e-6)
    curve = data["curve_gd"]
    assert curve["x"].shape == (200, 1) and curve["x"].min() == 0 and np.isclose(curve["x"].max(), 2 * np.pi)
    np.testing.assert_allclose(curve["y"], np.sin(curve["x"]), atol=1e-6)


@pytest.mark.parametrize("name", FULL_BATCH)
def test_full_batch_contenders_end_at_fnn_fits_params(data, name):
    wl = small.WORKLOADS[name]
    fitted = small.train(wl, "fnn", data[name], 5)
    assert _moved(data[name], fitted) > 1e-3  # they trained
    assert _distance(small.train(wl, "jax", data[name], 5), fitted) < 1e-5
    if (
        wl.optimizer != "rprop" and HAS_TORCH
    ):  # PyTorch's Rprop has no lag: test_torch_rprop_is_textbook_rprop
        assert _distance(small.train(wl, "torch", data[name], 5), fitted) < 1e-4


def test_digits_minibatches_and_params_match_fnn_fit(data):
    d, wl = data["digits"], small.WORKLOADS["digits"]
    n = d["x"].shape[0]
    words, indices = (getattr(fnn.training.loop, f, None) for f in ("key_words", "epoch_indices"))
    if words is None or indices is None:
        pytest.skip("fnn.fit no longer draws its minibatches with fnn.training.loop.epoch_indices")
    assert np.array_equal(d["key_words"], words(jax.random.key(small.KEY_SEED)))
    for e in (0, 1, 7):
        assert np.array_equal(small.epoch_order(d["key_words"], e, n, 64), indices(d["key_words"], e, n, 64))
    assert small.epoch_order(d["key_words"], 0, n, 64).shape == (19, 64)
    fitted = small.train(wl, "fnn", d, 1)
    assert _distance(small.train(wl, "jax", d, 1), fitted) < 1e-4
    if HAS_TORCH:
        assert _distance(small.train(wl, "torch", d, 1), fitted) < 1e-4


def _textbook_rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step=1e-6, max_step=50.0):
    """Rprop as torch.optim.Rprop does it: the step of this gradient's sign, none where the sign flipped."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params), jax.tree.map(
            lambda p: jnp.full_like(p, learning_rate), params
        )

    def update(grads, state, params=None):
        prev, sizes = state
        sign = jax.tree.map(lambda g, q: jnp.sign(g * q), grads, prev)
        sizes = jax.tree.map(
            lambda s, z: jnp.clip(
                z * jnp.where(s > 0, eta_plus, jnp.where(s < 0, eta_minus, 1.0)), min_step, max_step
            ),
            sign,
            sizes,
        )
        grads = jax.tree.map(lambda s, g: jnp.where(s < 0, 0.0, g), sign, grads)
        return jax.tree.map(lambda g, z: -z * jnp.sign(g), grads, sizes), (grads, sizes)

    return optax.GradientTransformation(init, update)


@needs_torch
def test_torch_rprop_is_textbook_rprop(data):
    wl, d = small.WORKLOADS["curve_rprop"], data["curve_rprop"]
    x, y, tx = jnp.asarray(d["x"]), jnp.asarray(d["y"]), _textbook_rprop(wl.learning_rate)

    def loss(p):
        a = jnp.tanh(x @ p[0]["W"] + p[0]["b"])
        return 0.5 * jnp.mean(jnp.sum((a @ p[1]["W"] + p[1]["b"] - y) ** 2, axis=-1))

    params = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in small.params_of(d)]
    state = tx.init(params)
    for _ in range(5):
        updates, state = tx.update(jax.grad(loss)(params), state)
        params = optax.apply_updates(params, updates)
    torch_params = small.train(wl, "torch", d, 5)
    assert _distance(torch_params, small.as_numpy(params)) < 1e-4
    # and optax's rprop (fnn's): its first update is zero, the lag the PyTorch row does not have
    assert _distance(small.train(wl, "fnn", d, 1), small.params_of(d)) == 0


def _check_results(results, workloads, contenders):
    assert list(results["workloads"]) == list(workloads) and results["complete"]
    assert {"machine", "versions", "command", "seed", "peaks", "rounds"} <= set(results)
    peaks = results["peaks"]
    assert peaks["matmul_flops_per_s"] > 0 and peaks["matmul"]["n"] == 1024
    for act in ("tanh", "relu"):
        assert peaks[act]["best_per_s"] >= peaks[act]["stream"]["best_per_s"] > 0
    for name, entry in results["workloads"].items():
        wl = small.WORKLOADS[name]
        assert entry["limit"]["us_per_epoch"] > 0
        lim = entry["limit"]
        assert lim["activations"] == lim["steps_per_epoch"] * lim["batch"] * sum(wl.hidden)
        for c in contenders:
            row = entry["contenders"][c]
            if c in dict(wl.missing):
                assert row["status"] == "n/a" and row["reason"]
                continue
            assert row["status"] == "measured", row.get("reason")
            assert len(row["samples"]) == results["rounds"] == len(row["us_samples"])
            assert row["us_min"] <= row["us_per_epoch"] <= row["us_max"]
            assert row["fraction_of_limit"] > 0
            for s in row["samples"]:
                assert s["epochs_run"] <= entry["epochs"] and s["seconds"] > 0
                assert s["modules"]["torch"] if c.startswith("torch") else s["modules"]["jax"]
        for order in entry["orders"]:
            assert sorted(order) == sorted(c for c in contenders if c not in dict(wl.missing))
        if "jax" in contenders and "jax" not in dict(wl.missing):
            assert entry["fnn_over"]["jax"] > 0
            assert entry["contenders"]["fnn"]["ratios"]["vs_jax"]["runs"]


def test_quick_run_in_process_writes_the_files(tmp_path):
    """Every workload, in this process (no fresh processes), 2 epochs, one round."""
    contenders = ("fnn", "jax", "torch") if HAS_TORCH else ("fnn", "jax")
    lines = []
    results = small.run(
        contenders=contenders,
        rounds=1,
        seed=3,
        epochs=2,
        fresh=False,
        progress=lines.append,
        command=["test"],
    )
    _check_results(results, list(small.WORKLOADS), contenders)
    assert len(lines) == len(small.WORKLOADS) and all("round 1/1" in line for line in lines)
    assert results["workloads"]["simplechains"]["limit"]["activations"] == 480_000
    assert results["workloads"]["digits"]["limit"]["steps_per_epoch"] == 19
    assert "estimated_default_run_s" in results
    paths = small.save(results, tmp_path)
    assert [p.name for p in paths] == ["small.json", "small.md", "small.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    saved = json.loads(paths[0].read_text())
    assert saved["seed"] == 3 and saved["command"] == ["test"]
    table = paths[1].read_text()
    for name in small.WORKLOADS:
        assert f"| {name} | fnn.fit |" in table
    assert "| curve_lm | plain JAX + optax | n/a |" in table
    (tmp_path / "small.md").unlink()
    (tmp_path / "small.png").unlink()
    assert load_script("bench_small").main(["--plot-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "small.md").read_text() == table and (tmp_path / "small.png").exists()


@needs_torch
def test_fresh_processes_keep_jax_and_torch_apart(tmp_path):
    """The script's path: one fresh process per measurement, a JAX child without torch, a PyTorch one
    without jax."""
    argv = ["--workloads", "curve_gd", "--contenders", "fnn,torch", "--epochs", "2", "--rounds", "1"]
    assert load_script("bench_small").main([*argv, "--seed", "5", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "small.json").read_text())
    _check_results(results, ["curve_gd"], ("fnn", "torch"))
    rows = results["workloads"]["curve_gd"]["contenders"]
    assert rows["fnn"]["samples"][0]["modules"] == {"jax": True, "torch": False}
    assert rows["torch"]["samples"][0]["modules"] == {"jax": False, "torch": True}
    assert rows["torch"]["samples"][0]["threads"]["torch"] >= 1
    assert rows["fnn"]["samples"][0]["pid"] != rows["torch"]["samples"][0]["pid"]
    assert results["fresh_processes"] and results["seed"] == 5


@pytest.mark.slow
@needs_torch
def test_torch_compile_agrees_and_runs_in_a_fresh_process(data, tmp_path):
    wl = small.WORKLOADS["curve_gd"]
    fitted = small.train(wl, "fnn", data["curve_gd"], 5)
    assert _distance(small.train(wl, "torch_compile", data["curve_gd"], 5), fitted) < 1e-4
    argv = ["--workloads", "curve_gd", "--contenders", "torch_compile", "--epochs", "2", "--rounds", "1"]
    assert load_script("bench_small").main([*argv, "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "small.json").read_text())["workloads"]["curve_gd"]["contenders"][
        "torch_compile"
    ]
    assert row["status"] == "measured", row.get("reason")
