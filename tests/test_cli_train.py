"""``fnn train``: a run writes its files; resume reproduces; bad input is one line on stderr."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fnn import checkpoint, cli, train


def _run(capsys, *argv):
    try:
        code = cli.main(["train", *argv])
    except SystemExit as exit:  # argparse's own errors (e.g. a non-number for --lr)
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(capsys, *argv, match):
    code, out, err = _run(capsys, *argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fnn train: error:") and match in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,match", [
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--optimizer", "adamax"], "unknown optimizer 'adamax'"),
    (["--dataset", "iris", "--sizes", "5,8,3"], "--sizes starts with 5 inputs but the data has 4 features"),
    (["--dataset", "iris", "--sizes", "4,8,10"], "--sizes ends with 10 outputs but the data has 3 classes"),
    (["--lr", "-0.01"], "--lr must be a positive number"),
    (["--dataset", "iris", "--optimizer", "levenberg_marquardt", "--loss", "cross_entropy"],
     "levenberg_marquardt needs --loss mse"),
    (["--dataset", "iris", "--optimizer", "levenberg_marquardt"], "levenberg_marquardt needs --loss mse"),
    (["--csv", "/nonexistent/data.csv", "--target", "y"], "CSV file not found"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--lr", "abc"], "invalid float value"),
    (["--sizes", "64,x,10"], "--sizes must be comma-separated integers"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, match):
    _one_line_error(capsys, *argv, "--out", str(tmp_path), match=match)


def test_bad_csv(capsys, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    _one_line_error(capsys, "--csv", str(p), "--target", "y", "--out", str(tmp_path),
                    match="column 'b': non-numeric value 'oops'")
    _one_line_error(capsys, "--csv", str(p), "--target", "label", "--out", str(tmp_path), match="no column 'label'")
    _one_line_error(capsys, "--out", str(tmp_path), "--resume", match="no checkpoint")


def test_a_run_writes_metrics_history_plot_and_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "--dataset", "iris", "--epochs", "5", "--batch-size", "16", "--out", str(out),
                             "--quiet")
    assert code == 0, err
    assert "test accuracy" in stdout
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "history.csv", "loss_curve.png", "metrics.json"]
    m = json.loads((out / "metrics.json").read_text())
    for k in ("test_accuracy", "test_loss", "train_loss", "epochs", "wall_time_s", "samples_per_s"):
        assert m[k] is not None, k
    assert m["epochs"] == 5 and m["sizes"] == [4, 128, 128, 3]
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_accuracy,val_loss") and len(rows) == 6
    assert "samples_per_s,tflops" in rows[0]
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_resume_ends_where_an_uninterrupted_run_ends(capsys, tmp_path):
    common = ["--dataset", "wine", "--batch-size", "32", "--quiet"]
    assert _run(capsys, *common, "--epochs", "6", "--out", str(tmp_path / "a"))[0] == 0
    assert _run(capsys, *common, "--epochs", "3", "--out", str(tmp_path / "b"))[0] == 0
    code, stdout, err = _run(capsys, "--out", str(tmp_path / "b"), "--resume", "--epochs", "6", "--quiet")
    assert code == 0, err
    a = checkpoint.load(tmp_path / "a" / "checkpoint.npz")
    b = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    assert a.meta["epoch"] == b.meta["epoch"] == 6
    for x, y in zip(a.arrays["params"], b.arrays["params"]):
        np.testing.assert_array_equal(x, y)
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["epochs"] == 6


def test_ctrl_c_saves_and_exits_130(capsys, tmp_path, monkeypatch):
    real_fit = train.fit

    def fit_then_interrupt(*args, **kwargs):
        def interrupt(rec):
            if rec["epoch"] == 2:
                raise KeyboardInterrupt
        return real_fit(*args, **dict(kwargs, callback=interrupt))

    monkeypatch.setattr(train, "fit", fit_then_interrupt)
    code, _, err = _run(capsys, "--dataset", "iris", "--epochs", "5", "--out", str(tmp_path), "--quiet")
    assert code == 130
    assert len(err.strip().splitlines()) == 1 and "interrupted after epoch 2" in err and "--resume" in err
    assert checkpoint.load(tmp_path / "checkpoint.npz").meta["epoch"] == 2


def test_divergence_is_reported_and_the_checkpoint_kept(capsys, tmp_path):
    p = tmp_path / "d.csv"
    xs = np.linspace(-1, 1, 40)
    p.write_text("x,y\n" + "".join(f"{x},{1e4 * x}\n" for x in xs))
    code, _, err = _run(capsys, "--csv", str(p), "--target", "y", "--optimizer", "gd", "--lr", "50",
                        "--activation", "relu", "--epochs", "50", "--out", str(tmp_path / "r"), "--quiet")
    assert code == 1
    assert "non-finite" in err and "last good checkpoint" in err
    assert os.path.exists(tmp_path / "r" / "checkpoint.npz")


def test_console_entry_point_as_module():
    r = subprocess.run([sys.executable, "-m", "fnn", "train", "--dataset", "nope"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown dataset 'nope'" in r.stderr
