"""benchmarks/gpu.py, every GPU check in one script: its dry run (the same code at tiny sizes on the
CPU), the budget that skips or stops checks, a failing check that does not stop the run, and the
one-line error without a GPU."""

import json
import math
import os
import subprocess
import sys

import pytest
from helpers import BENCHMARKS, load_script

from benchmarks import gpu_checks, gpu_suite

SCRIPT = BENCHMARKS / "gpu.py"


def _script():
    return load_script("gpu")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    rc = _script().main(["--dry-run", "--out", str(out)])
    return rc, out, json.loads((out / "summary.json").read_text())


def test_dry_run_runs_every_check_on_the_cpu(dry_run):
    rc, out, summary = dry_run
    assert rc == 0
    assert summary["machine"]["device"] == "cpu" and summary["device_slug"] == "gpu_cpu"
    assert summary["dry_run"] and summary["complete"] and summary["budget_s"] == gpu_suite.BUDGET_S
    assert summary["jax_version"] and summary["machine"]["cores"] >= 1
    assert [r["name"] for r in summary["checks"]] == list(gpu_suite.NAMES)
    for record in summary["checks"]:
        assert record["status"] == "ok", record
        assert record["seconds"] > 0 and record["result"]["headline"]
    table = (out / "summary.md").read_text()
    assert all(f"| {name} | ok |" in table for name in gpu_suite.NAMES)


def test_dry_run_writes_each_checks_own_files(dry_run):
    _, out, summary = dry_run
    by_name = {r["name"]: r["result"] for r in summary["checks"]}
    assert by_name["gradients_default"]["matmul_precision"] == "default"
    assert by_name["gradients_highest"]["matmul_precision"] == "highest"
    for name in ("gradients_default", "gradients_highest", "graphs"):
        assert by_name[name]["cases_done"] == by_name[name]["cases"] > 0
        for file in ("results.csv", "results.json", "summary.md", "backprop_vs_autodiff.png"):
            assert (out / name / file).exists(), (name, file)
        assert not (out / name / "results.partial.json").exists()  # the whole run was written
    assert {"results.json", "summary.md", "calls.png"} <= {p.name for p in (out / "calls").iterdir()}
    # on the CPU, as tests/test_train.py
    assert by_name["lm_fp32"]["final_loss"] <= by_name["lm_fp32"]["goal"]
    assert by_name["lm_large"]["loss_end"] < by_name["lm_large"]["loss_start"]
    assert (out / "lm_large" / "history.csv").exists()
    steps = by_name["second_order"]
    assert steps["cases_done"] == steps["cases"] == 1 and steps["complete"]
    (costs,) = steps["steps_in_gradients"].values()
    assert list(costs) == list(gpu_checks.SECOND_ORDER) and all(
        math.isfinite(v) and v > 0 for v in costs.values()
    )
    assert {"steps.json", "steps.md", "steps.png"} <= {p.name for p in (out / "second_order").iterdir()}
    assert "hessian_free" in (out / "second_order" / "steps.md").read_text()
    runs = by_name["mfu"]["runs"]
    assert list(runs) == ["bf16", "tf32", "fp32"] and all(
        r["mfu"] > 0 and r["tflops"] > 0 for r in runs.values()
    )


def test_no_budget_skips_every_check(tmp_path, capsys):
    assert _script().main(["--dry-run", "--budget", "0", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["status"], r["reason"]) for r in summary["checks"]] == [("skipped", "budget")] * len(
        gpu_suite.NAMES
    )
    assert "skipped | 0.0 |" in capsys.readouterr().out  # the table printed at the end


def test_a_spent_budget_stops_a_grid_between_cases_and_skips_the_later_checks(tmp_path):
    # an estimate that always fits: it starts with no budget
    first = gpu_suite.CHECKS[0]._replace(tiny_s=-math.inf)
    summary = gpu_suite.run_all(
        gpu_suite.device(dry_run=True), tmp_path, 0, True, (first, *gpu_suite.CHECKS[1:]), echo=lambda s: None
    )
    stopped, *later = summary["checks"]
    assert stopped["status"] == "partial" and stopped["reason"] == "budget"
    assert stopped["result"]["cases_done"] == 1 < stopped["result"]["cases"]
    assert (tmp_path / first.name / "results.csv").exists()
    assert [(r["status"], r["reason"]) for r in later] == [("skipped", "budget")] * len(later)
    assert all("left" in r["detail"] for r in later)


def test_a_failing_check_keeps_its_traceback_and_the_next_one_runs(tmp_path):
    def fails(ctx):
        raise ValueError("out of device memory, say")

    checks = (
        gpu_suite.Check("fails", fails, 0, 0, "raises"),
        gpu_suite.Check("works", lambda ctx: {"headline": "fine"}, 0, 0, "returns"),
    )
    summary = gpu_suite.run_all(
        gpu_suite.device(dry_run=True), tmp_path, 60, True, checks, echo=lambda s: None
    )
    failed, worked = summary["checks"]
    assert failed["status"] == "error" and failed["error"] == "ValueError: out of device memory, say"
    assert "Traceback" in failed["traceback"] and "in fails" in failed["traceback"]
    assert worked["status"] == "ok" and worked["result"]["headline"] == "fine"
    assert (
        json.loads((tmp_path / "summary.json").read_text())["checks"][0]["traceback"] == failed["traceback"]
    )
    assert "| fails | error |" in (tmp_path / "summary.md").read_text()


def test_without_a_gpu_it_stops_with_one_line_and_suggests_the_dry_run(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # no GPU, whatever the machine has
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no GPU is visible") and "--dry-run" in lines[0], (
        done.stderr
    )
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not any(tmp_path.iterdir())
