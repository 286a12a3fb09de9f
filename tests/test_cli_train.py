"""``fnn train``: a run writes its files; resume reproduces; bad input is one line on stderr."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fnn import cli
from fnn.training import checkpoint, loop


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


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["--optimizer", "adamax"], "unknown optimizer 'adamax'"),
        (
            ["--dataset", "iris", "--sizes", "5,8,3"],
            "--sizes starts with 5 inputs but the data has 4 features",
        ),
        (
            ["--dataset", "iris", "--sizes", "4,8,10"],
            "--sizes ends with 10 outputs but the data has 3 classes",
        ),
        (["--lr", "-0.01"], "--lr must be a positive number"),
        (
            ["--dataset", "iris", "--optimizer", "levenberg_marquardt", "--loss", "cross_entropy"],
            "levenberg_marquardt needs --loss mse",
        ),
        (["--dataset", "iris", "--optimizer", "levenberg_marquardt"], "levenberg_marquardt needs --loss mse"),
        (["--dataset", "iris", "--optimizer", "br"], "br needs --loss mse"),
        (["--csv", "/nonexistent/data.csv", "--target", "y"], "CSV file not found"),
        (["--epochs", "0"], "--epochs must be a positive int, got 0"),
        (["--lr", "abc"], "invalid float value"),
        (["--sizes", "64,x,10"], "--sizes must be comma-separated integers"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, argv, match):
    _one_line_error(capsys, *argv, "--out", str(tmp_path), match=match)


def test_bad_csv(capsys, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    _one_line_error(
        capsys,
        "--csv",
        str(p),
        "--target",
        "y",
        "--out",
        str(tmp_path),
        match="column 'b': non-numeric value 'oops'",
    )
    _one_line_error(
        capsys, "--csv", str(p), "--target", "label", "--out", str(tmp_path), match="no column 'label'"
    )
    _one_line_error(capsys, "--out", str(tmp_path), "--resume", match="no checkpoint")


def test_a_run_writes_metrics_history_plot_and_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = _run(
        capsys, "--dataset", "iris", "--epochs", "5", "--batch-size", "16", "--out", str(out), "--quiet"
    )
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


def test_metrics_say_which_peak_and_how_it_was_measured(capsys, tmp_path, fake_peak):
    """metrics.json: the peak, its source (measured: the matmul's size and dtype, the machine identity it is
    cached under, when) and MFU never above 1; the peak measured once (faked: conftest.fake_peak)."""
    argv = ("--dataset", "iris", "--epochs", "4", "--batch-size", "16", "--quiet")
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "a"))
    assert code == 0, err
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["peak_tflops"] == 1000.0 and m["device_kind"] == "cpu"
    measured = m["peak_measurement"]
    source = m["peak_source"]
    assert source.startswith("measured: 1024x1024 float32 matmul on cpu (")
    assert f"cached in {fake_peak.path}" in source and measured["measured_at"] in source
    assert measured["key"] in source and f"xla_flags={os.environ.get('XLA_FLAGS', '')!r}" in source
    assert (measured["n"], measured["dtype"], measured["tflops"], measured["cache"]) == (
        1024,
        "float32",
        1000.0,
        fake_peak.path,
    )
    identity = measured["identity"]
    assert (identity["platform"], identity["cpu_count"], identity["dtype"]) == (
        "cpu",
        os.cpu_count(),
        "float32",
    )
    assert identity["xla_flags"] == os.environ.get("XLA_FLAGS", "")
    assert 0 < m["mfu"] <= 1 and m["mfu_note"] is None and m["tflops"] > 0
    assert m["mfu"] == pytest.approx(m["tflops"] / m["peak_tflops"])
    # a later process reads the peak from the file: measured once
    fake_peak.forget()
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "b"))
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["peak_source"] == source and again["peak_measurement"]["from_cache"]
    assert len(fake_peak.calls) == 1


def test_metrics_refuse_a_throughput_above_the_peak(capsys, tmp_path, fake_peak):
    """A peak every timing exceeds: no samples/s, TFLOP/s or MFU, and a note saying why."""
    fake_peak.tflops = 1e-15
    code, _, err = _run(capsys, "--dataset", "iris", "--epochs", "3", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert (m["mfu"], m["tflops"], m["samples_per_s"]) == (None, None, None)
    assert "of the peak" in m["mfu_note"] and m["peak_tflops"] == 1e-15


@pytest.mark.parametrize("optimizer", ["br"])  # the others are names on the same path
def test_matlabs_training_functions_from_the_command_line(capsys, tmp_path, optimizer):
    out = tmp_path / optimizer
    code, stdout, err = _run(
        capsys, "--dataset", "sine", "--optimizer", optimizer, "--epochs", "20", "--out", str(out), "--quiet"
    )
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["optimizer"] == optimizer and m["test_loss"] < 0.05
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    # the method's own columns
    reported = {"br": ["mu", "mu_max", "gamma", "alpha", "beta"]}.get(optimizer, [])
    assert header[6 : 6 + len(reported)] == reported and header[6 + len(reported)] == "epoch_time_s"


@pytest.mark.exact
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
    real_fit = loop.fit

    def fit_then_interrupt(*args, **kwargs):
        def interrupt(rec):
            if rec["epoch"] == 2:
                raise KeyboardInterrupt

        return real_fit(*args, **dict(kwargs, callback=interrupt))

    monkeypatch.setattr(loop, "fit", fit_then_interrupt)  # fnn train calls loop.fit
    code, _, err = _run(capsys, "--dataset", "iris", "--epochs", "5", "--out", str(tmp_path), "--quiet")
    assert code == 130
    assert len(err.strip().splitlines()) == 1 and "interrupted after epoch 2" in err and "--resume" in err
    assert checkpoint.load(tmp_path / "checkpoint.npz").meta["epoch"] == 2


def test_divergence_is_reported_and_the_checkpoint_kept(capsys, tmp_path):
    p = tmp_path / "d.csv"
    xs = np.linspace(-1, 1, 40)
    p.write_text("x,y\n" + "".join(f"{x},{1e4 * x}\n" for x in xs))
    code, _, err = _run(
        capsys,
        "--csv",
        str(p),
        "--target",
        "y",
        "--optimizer",
        "gd",
        "--lr",
        "50",
        "--activation",
        "relu",
        "--epochs",
        "50",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    )
    assert code == 1
    assert "non-finite" in err and "last good checkpoint" in err
    assert os.path.exists(tmp_path / "r" / "checkpoint.npz")


ARCH = {
    "nodes": [
        {"name": "h1", "width": 8, "activation": "tanh"},
        {
            "name": "h2",
            "width": 8,
            "activation": "relu",
            "inputs": ["h1", "x"],
            "residual": "h1",
            "dropout": 0.1,
        },
        {"name": "out", "width": 3, "activation": "softmax", "inputs": ["h2", "h1"]},
    ]
}
FAST = ["--dataset", "iris", "--epochs", "2", "--quiet"]


@pytest.mark.parametrize(
    "connect,line",
    [
        ("residual", "network residual 4,8,8,3 relu/relu/softmax cross_entropy dropout 0.2, adam"),
        ("cascade", "network cascade 4,8,8,3 relu/relu/softmax cross_entropy dropout 0.2, adam"),
    ],
)
def test_connect_trains_a_graph_and_reports_it(capsys, tmp_path, connect, line):
    code, stdout, err = _run(
        capsys, *FAST, "--sizes", "4,8,8,3", "--connect", connect, "--dropout", "0.2", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert line in stdout.splitlines()[0]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["connect"] == connect and m["sizes"] == [4, 8, 8, 3] and m["dropout"] == 0.2
    nodes = m["graph"]["nodes"]
    assert [n["dropout"] for n in nodes] == [0.2, 0.2, 0.0]
    if connect == "cascade":
        assert nodes[-1]["inputs"] == ["x", "layer1", "layer2"]
    else:
        assert nodes[1]["residual"] == "h1"
    assert checkpoint.load(tmp_path / "checkpoint.npz").meta["config"]["connect"] == connect


def test_arch_file_trains_and_resumes_without_the_file(capsys, tmp_path):
    arch = tmp_path / "net.json"
    arch.write_text(json.dumps(ARCH))
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, *FAST, "--arch", str(arch), "--out", str(out))
    assert code == 0, err
    assert (
        "network graph 4 -> h1(8 tanh) -> h2(8 relu from h1+x residual h1 dropout 0.1) -> "
        "out(3 softmax from h2+h1) cross_entropy, adam"
    ) in stdout.splitlines()[0]
    m = json.loads((out / "metrics.json").read_text())
    assert m["connect"] == "graph" and m["graph"]["n_in"] == 4 and m["graph"]["nodes"][1]["dropout"] == 0.1
    assert m["activation"] == ["tanh", "relu", "softmax"] and m["loss"] == "cross_entropy"
    arch.unlink()  # the checkpoint holds the description itself
    code, _, err = _run(capsys, "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert code == 0, err
    assert checkpoint.load(out / "checkpoint.npz").meta["epoch"] == 3
    assert json.loads((out / "metrics.json").read_text())["graph"] == m["graph"]


def test_dropout_on_the_chain(capsys, tmp_path):
    code, stdout, err = _run(capsys, *FAST, "--sizes", "4,8,3", "--dropout", "0.5", "--out", str(tmp_path))
    assert code == 0, err
    assert "network 4,8,3 relu/softmax cross_entropy dropout 0.5, adam" in stdout
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["dropout"] == 0.5 and "connect" not in m and "graph" not in m
    assert checkpoint.load(tmp_path / "checkpoint.npz").meta["net"]["dropout"] == [0.5]


@pytest.mark.parametrize(
    "arch,extra,match",
    [
        (None, [], "No such file or directory"),
        ('{"nodes": [', [], "is not JSON"),
        ("[1, 2]", [], 'must hold a JSON object with a non-empty list "nodes"'),
        (
            {"nodes": [{"name": "h", "width": 4, "size": 2}, ARCH["nodes"][-1]]},
            [],
            'node 0 must be an object with "name"',
        ),
        (
            {"nodes": [{"name": "h", "width": 4, "inputs": ["q"]}, ARCH["nodes"][-1]]},
            [],
            "--arch: node 'h' takes 'q', which is not 'x' or an earlier node",
        ),
        ({**ARCH, "n_in": 5}, [], "--arch starts with 5 inputs but the data has 4 features"),
        (
            {"nodes": [{"name": "out", "width": 4, "activation": "softmax"}]},
            [],
            "--arch ends with 4 outputs but the data has 3 classes",
        ),
        ({**ARCH, "loss": "mse"}, [], "iris is a classification dataset"),  # the file's loss, unless --loss
        (
            ARCH,
            ["--connect", "cascade"],
            "--arch describes the whole network, so it does not go with --connect",
        ),
        (ARCH, ["--dropout", "0.1"], "does not go with --dropout"),
    ],
)
def test_bad_arch_is_one_line(capsys, tmp_path, arch, extra, match):
    path = tmp_path / "net.json"
    if arch is not None:
        path.write_text(arch if isinstance(arch, str) else json.dumps(arch))
    _one_line_error(
        capsys, "--dataset", "iris", "--arch", str(path), *extra, "--out", str(tmp_path), match=match
    )
    assert _run(capsys, "--dataset", "iris", "--arch", str(path), *extra, "--out", str(tmp_path))[0] == 2


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["--connect", "residual", "--sizes", "4,8,16,3"],
            "--connect residual needs hidden layers of one width",
        ),
        (["--connect", "residual", "--sizes", "4,3"], "--connect residual needs hidden layers of one width"),
        (
            ["--connect", "cascade", "--sizes", "4,8,10"],
            "--sizes ends with 10 outputs but the data has 3 classes",
        ),
        (["--connect", "ring"], "invalid choice: 'ring'"),
        (["--dropout", "1"], "--dropout must lie in [0, 1), got 1.0"),
    ],
)
def test_bad_connect_or_dropout_is_one_line(capsys, tmp_path, argv, match):
    _one_line_error(capsys, "--dataset", "iris", *argv, "--out", str(tmp_path), match=match)
    assert _run(capsys, "--dataset", "iris", *argv, "--out", str(tmp_path))[0] == 2


def test_console_entry_point_as_module():
    r = subprocess.run(
        [sys.executable, "-m", "fnn", "train", "--dataset", "nope"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown dataset 'nope'" in r.stderr


def test_the_default_batch_is_the_datasets_or_the_optimizers_own_when_larger():
    """Without --batch-size: the dataset's preset for Adam, K-FAC's own 256 (it diverged on digits at
    the preset's 64), the whole set for a full-batch method or a preset of none (build asks only
    without --batch-size)."""
    from fnn.optimizers import default_batch

    assert default_batch("adam", 64) == 64 and default_batch("sgd", 64) == 64
    assert default_batch("kfac", 64) == 256 and default_batch("kfac", 512) == 512
    assert default_batch("lbfgs", 64) is None and default_batch("momentum", None) is None
