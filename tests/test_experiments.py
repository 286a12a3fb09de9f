"""fnn.experiments and the scripts on it: the 1986 problems' data, sweeps, survey, and tiny script runs."""

import os
import runpy
import sys

import numpy as np
import pytest

from fnn import experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_problem_data():
    x, y = experiments.symmetry_problem(6)
    assert x.shape == (64, 6) and y.sum() == 8  # 2^3 symmetric vectors
    assert np.all(y[:, 0] == np.all(x == x[:, ::-1], axis=1))
    x, y = experiments.encoder_problem(8)
    np.testing.assert_array_equal(x, np.eye(8))
    assert experiments.early_stopping_epoch([3, 2, 2.5, 2.4, 2.6], patience=3) == 5
    assert experiments.early_stopping_epoch([3, 2, 1], patience=2) == 3


def test_xor_is_solved_in_hundreds_of_sweeps():
    r = experiments.run_classic(experiments.classic_problems()[0], seeds=4, max_sweeps=3000)
    assert r["failures"] <= 1 and 100 < r["median"] < 3000


def _run_script(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(os.path.join(ROOT, "scripts", name), run_name="__main__")
    assert done.value.code == 0


def test_scripts_write_their_outputs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    _run_script("vanishing_gradients.py", ["--quick", "--depth", "4", "--width", "8", "--out", str(tmp_path)],
                monkeypatch)
    table = (tmp_path / "vanishing_gradients.md").read_text()
    assert table.count("\n") == 2 + 15 and "glorot_uniform | tanh" in table
    _run_script("classic_experiments.py", ["--seeds", "2", "--max-sweeps", "200", "--out", str(tmp_path)], monkeypatch)
    assert "symmetry 6-2-1" in (tmp_path / "classic_experiments.md").read_text()
    _run_script("overfitting.py", ["--epochs", "3", "--patience", "1", "--out", str(tmp_path)], monkeypatch)
    for f in ("vanishing_gradients.png", "vanishing_gradients.csv", "classic_experiments.png", "overfitting.png"):
        assert (tmp_path / f).stat().st_size > 0, f
