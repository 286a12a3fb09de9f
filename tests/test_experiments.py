"""The experiments in scripts/ and the scripts on them: the 1986 problems' data, sweeps, survey,
and tiny script runs."""

import json
import os
import runpy
import sys

import jax
import numpy as np
import pytest

import fnn
from scripts import classic, common, depth, overfit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_problem_data():
    x, y = classic.symmetry_problem(6)
    assert x.shape == (64, 6) and y.sum() == 8  # 2^3 symmetric vectors
    assert np.all(y[:, 0] == np.all(x == x[:, ::-1], axis=1))
    x, y = classic.encoder_problem(8)
    np.testing.assert_array_equal(x, np.eye(8))
    assert overfit.early_stopping_epoch([3, 2, 2.5, 2.4, 2.6], patience=3) == 5
    assert overfit.early_stopping_epoch([3, 2, 1], patience=2) == 3


def test_xor_is_solved_in_hundreds_of_sweeps():
    r = classic.run_classic(classic.classic_problems()[0], seeds=4, max_sweeps=3000)
    assert r["failures"] <= 1 and 100 < r["median"] < 3000


def _run_script(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(os.path.join(ROOT, "scripts", name), run_name="__main__")
    assert done.value.code == 0


def test_scripts_write_their_outputs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _run_script(
        "vanishing_gradients.py",
        ["--quick", "--depth", "4", "--width", "8", "--out", str(tmp_path)],
        monkeypatch,
    )
    table = (tmp_path / "vanishing_gradients.md").read_text()
    assert table.count("\n") == 2 + 15 and "glorot_uniform | tanh" in table
    _run_script(
        "classic_experiments.py", ["--seeds", "2", "--max-sweeps", "200", "--out", str(tmp_path)], monkeypatch
    )
    assert "symmetry 6-2-1" in (tmp_path / "classic_experiments.md").read_text()
    _run_script("overfitting.py", ["--epochs", "3", "--patience", "1", "--out", str(tmp_path)], monkeypatch)
    runs = json.loads((tmp_path / "overfitting.json").read_text())["runs"]
    assert [r["dropout"] for r in runs] == [0.0, 0.5] and all(r["epochs"] == 3 for r in runs)
    _run_script(
        "residual_depth.py",
        [
            "--depths",
            "2",
            "--activations",
            "tanh",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--width",
            "8",
            "--out",
            str(tmp_path),
        ],
        monkeypatch,
    )
    result = json.loads((tmp_path / "residual_depth.json").read_text())
    assert result["command"].startswith("python ") and result["machine"]["cores"] >= 1
    assert [(r["kind"], r["depth"]) for r in result["runs"]] == [("plain", 2), ("residual", 2)]
    for f in (
        "vanishing_gradients.png",
        "vanishing_gradients.csv",
        "classic_experiments.png",
        "overfitting.png",
        "overfitting_dropout.png",
        "overfitting.csv",
        "residual_depth.png",
        "residual_depth.csv",
        "residual_depth.md",
    ):
        assert (tmp_path / f).stat().st_size > 0, f


def _digits_splits():
    from fnn.data import datasets
    from fnn.data import preparation as data

    pytest.importorskip("sklearn")
    return data.prepare(datasets.load("digits"), test_size=0.25, val_size=0.1, seed=0, scale="standard")


def test_depth_nets_share_shapes_and_init():
    import jax

    plain, res = (depth.depth_net(k, "tanh", 3, width=8) for k in depth.KINDS)
    assert plain.n_params == res.n_params and len(plain.nodes) == len(res.nodes) == 4
    assert [n.residual for n in res.nodes] == [None, "h1", "h2", None]
    p, r = (fnn.init(jax.random.key(0), net) for net in (plain, res))
    np.testing.assert_array_equal(p["layer2"]["W"]["layer1"], r["h2"]["W"]["h1"])
    with pytest.raises(ValueError, match="unknown kind"):
        depth.depth_net("dense", "tanh", 3)


def test_residual_connections_keep_a_deep_sigmoid_gradient():
    import jax

    x, y = common.digits_batch(64)
    ratio = {}
    for kind in depth.KINDS:
        net = depth.depth_net(kind, "sigmoid", 16, width=16)
        ratio[kind] = depth.hidden_gradient_ratio(net, fnn.init(jax.random.key(0), net), x, y)
    assert ratio["plain"]["grad_ratio"] < 1e-6  # slope <= 1/4 per layer: 15 layers vanish
    assert ratio["residual"]["grad_ratio"] > 1e-2  # the identity paths carry it
    assert ratio["residual"]["grad_ratio"] > 1e4 * ratio["plain"]["grad_ratio"]


def test_residual_depth_rows_summary_table_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    budget = depth.Budget(epochs=1, batch_size=256)
    rows = depth.residual_depth(
        _digits_splits(), activations=("relu",), depths=(2,), width=8, seeds=2, budget=budget
    )
    assert [(r["kind"], r["seed"]) for r in rows] == [
        ("plain", 0),
        ("plain", 1),
        ("residual", 0),
        ("residual", 1),
    ]
    assert all(0 <= r["test_accuracy"] <= 1 and r["grad_ratio"] > 0 for r in rows)
    summary = depth.depth_summary(rows)
    assert [(s["kind"], s["seeds"]) for s in summary] == [("plain", 2), ("residual", 2)]
    for s, rs in zip(summary, (rows[:2], rows[2:])):
        accs = [r["test_accuracy"] for r in rs]
        assert s["test_accuracy_min"] == min(accs) and s["test_accuracy_max"] == max(accs)
        assert s["test_accuracy_mean"] == pytest.approx(np.mean(accs))
        assert s["grad_ratio_mean"] == pytest.approx(np.sqrt(rs[0]["grad_ratio"] * rs[1]["grad_ratio"]))
    table = depth.depth_table(summary)
    assert table.splitlines()[2].startswith("| relu | 2 | ") and table.count("\n") == 3
    depth.plot_depth(summary, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 0


def test_underflowed_ratio_is_named_in_the_table():
    rows = [
        {
            "activation": "sigmoid",
            "depth": 64,
            "kind": kind,
            "seed": seed,
            "test_accuracy": 0.1,
            "train_loss": 2.3,
            "grad_ratio": ratio,
        }
        for kind, seed, ratio in [("plain", 0, 0.0), ("plain", 1, 1e-30), ("residual", 0, 0.05)]
    ]
    table = depth.depth_table(depth.depth_summary(rows))
    assert "| sigmoid | 64 | 0.100 (0.100-0.100) | 0.100 | 2.3 | 2.3 | 0 (underflow) | 5.0e-02 |" in table


def test_dropout_changes_the_validation_curve(tmp_path):
    pytest.importorskip("sklearn")
    results = overfit.dropout_comparison(0.5, n_train=50, n_val=100, epochs=4, patience=2, hidden=(32,))
    assert [r["dropout"] for r in results] == [0.0, 0.5]
    plain, drop = (r["history"] for r in results)
    assert len(plain.val_loss) == len(drop.val_loss) == 4
    assert not np.allclose(plain.val_loss, drop.val_loss)
    best = [overfit.best_validation(r) for r in results]
    for b, h in zip(best, (plain, drop)):
        assert b["best_val_loss"] == min(h.val_loss) and h.val_loss[b["best_epoch"] - 1] == b["best_val_loss"]
    rows = overfit.curves_rows(results)
    assert len(rows) == 4 and rows[0]["val_loss_dropout0"] == plain.val_loss[0]
    assert rows[-1]["val_loss_dropout0.5"] == drop.val_loss[-1]
    common.write_csv(rows, tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("epoch,train_loss_dropout0,")


def test_training_functions_and_bayesian_regularisation_scripts(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _run_script(
        "training_functions.py",
        [
            "--trials",
            "2",
            "--problems",
            "SIN",
            "--methods",
            "LM",
            "SCG",
            "--max-epochs",
            "300",
            "--no-progress",
            "--out",
            str(tmp_path),
        ],
        monkeypatch,
    )
    result = json.loads((tmp_path / "training_functions.json").read_text())
    assert len(result["rows"]) == 2 * 2 and result["machine"]["cores"] >= 1
    assert {s["method"] for s in result["summary"]} == {"LM", "SCG"}
    assert [s["ratio"] for s in result["summary"]][0] == 1.0  # the fastest method's mean time over itself
    lm_sin = [r for r in result["rows"] if r["problem"] == "SIN" and r["method"] == "LM"]
    # LM reaches mse 0.002 on SIN in a few epochs
    assert all(r["reached"] and r["epochs"] < 300 for r in lm_sin)
    table = (tmp_path / "training_functions.md").read_text()
    assert (
        "**SIN**: 1-5-1" in table
        and "goal mse 0.002 (fnn loss 0.001)" in table
        and "| LM | `levenberg_marquardt` |" in table
    )
    # An oversized 1-20-1 on 41 noisy samples: LM fits the noise, br's prior does not; br's error
    # against the noise-free sine is below LM's for each of three seeds, its training error above
    _run_script(
        "bayesian_regularisation.py", ["--seeds", "3", "--epochs", "150", "--out", str(tmp_path)], monkeypatch
    )
    result = json.loads((tmp_path / "bayesian_regularisation.json").read_text())
    assert result["br_better"] == 3
    for run in result["runs"]:
        assert run["test_mse_br"] < run["test_mse_levenberg_marquardt"], run
        assert run["train_mse_levenberg_marquardt"] < run["train_mse_br"], run
        assert run["n_params"] == 61 > run["n_examples"] == 41 and run["br_gamma"] < 61
    for f in ("training_functions.png", "bayesian_regularisation.png"):
        assert (tmp_path / f).stat().st_size > 0, f


def test_deep_autoencoder_networks_errors_costs_and_one_run():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from scripts import autoencoder

    net = autoencoder.autoencoder(autoencoder.MNIST_SIZES)
    assert net.sizes == (784, 1000, 500, 250, 30, 250, 500, 1000, 784)
    assert net.activation == ("sigmoid", "sigmoid", "sigmoid", "identity", "sigmoid", "sigmoid", "sigmoid")
    assert (net.output, net.loss) == ("sigmoid", "bce")
    x = np.random.default_rng(0).uniform(size=(5, 16)).astype(np.float32)
    small = autoencoder.autoencoder((16, 4))
    params = fnn.init(jax.random.key(0), small)
    expected = np.mean(np.sum((np.asarray(fnn.predict(small, params, x)) - x) ** 2, axis=1))
    assert autoencoder.reconstruction_error(small, params, x) == pytest.approx(expected, rel=1e-6)
    hf = autoencoder.Method("HF", "hessian_free", None, cost="hessian_free")
    costs = {"gauss_newton_product": 1.5, "loss": 0.25}
    assert autoencoder.step_cost(hf, costs, 1.0, {"cg_iterations": 9}) == pytest.approx(2 + 10 * 1.5 + 0.5)
    assert autoencoder.step_cost(autoencoder.Method("Adam", "adam", 128), costs, 0.25, {}) == 0.25
    rows = autoencoder.run_method(autoencoder.quick_problem(), hf, 0, costs, budget_s=60, max_epochs=3)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["train"] < rows[0]["train"]
    assert rows[0]["gradients"] > 2 + 1.5  # a curvature pass, the gradient and at least one product


@pytest.mark.slow
def test_deep_autoencoder_script(tmp_path, monkeypatch):
    """``pytest -m slow -k deep_autoencoder_script``: the script's quick run (about 40 s on two cores)."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _run_script("deep_autoencoder.py", ["--quick", "--inits", "1", "--out", str(tmp_path)], monkeypatch)
    result = json.loads((tmp_path / "deep_autoencoder.json").read_text())
    assert result["problem"] == "digits-quick" and result["costs"]["gauss_newton_product"] > 0
    labels = [s["method"] for s in result["summary"]]
    assert labels[:3] == ["Hessian-free", "K-FAC", "SCG (Gauss-Newton)"] and len(labels) == 6
    for label, runs in result["curves"].items():
        rows = runs[0]
        assert rows and all(np.isfinite(r["train"]) for r in rows), label
        assert all(
            b["gradients"] > a["gradients"] and b["wall_s"] > a["wall_s"] for a, b in zip(rows, rows[1:])
        )
    assert (tmp_path / "deep_autoencoder.png").stat().st_size > 0
    assert (tmp_path / "deep_autoencoder.md").read_text().count("\n") == 2 + 6


def test_deep_autoencoder_reads_mnist_with_the_papers_architecture(tmp_path):
    from fnn.data import datasets
    from scripts import autoencoder

    rng = np.random.default_rng(0)
    for stem, n in (("train", 6), ("t10k", 4)):
        datasets.write_idx(
            tmp_path / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        datasets.write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    problem = autoencoder.mnist_problem(tmp_path)
    assert problem.x.shape == (6, 784) and problem.x_test.shape == (4, 784)
    assert 0 <= problem.x.min() and problem.x.max() <= 1
    assert problem.net.sizes == (784, 1000, 500, 250, 30, 250, 500, 1000, 784)
