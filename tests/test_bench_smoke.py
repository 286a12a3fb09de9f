"""Smoke tests of the benchmark scripts: bench_gradients.py on the tiny grid and the graphs_tiny
grid (seconds), and bench_training.py's figure.

The tiny grid holds ``batch * P`` about constant, so one forward pass costs
about the same at every size. Finite differences then cost in proportion to
their 2P passes (slope ~1 in log cost vs log P), while backprop's one forward
and one backward pass stay flat (slope ~0). The tests judge this on XLA's
FLOP count of the compiled programs, which does not depend on how busy the
machine is; the times are the benchmark's to show.
"""

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
from helpers import load_script

from benchmarks.analysis import fit_slope
from benchmarks.methods import sample_indices, sample_size
from benchmarks.runner import ALL_METHODS, GRAPH_METHODS, ROW_FIELDS


def _script(name="bench_gradients"):
    return load_script(name)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--grid", "tiny", "--methods", "backprop,jax_grad,fd_central", "--out", str(out), "--no-progress"]
    assert _script().main(argv) == 0
    with open(out / "results.csv", newline="") as f:
        return out, list(csv.DictReader(f))


def test_csv_schema(tiny_run):
    out, rows = tiny_run
    assert rows and list(rows[0]) == list(ROW_FIELDS)
    assert {r["method"] for r in rows} == {"forward", "backprop", "jax_grad", "fd_central"}
    assert {r["method"] for r in rows} <= set(ALL_METHODS)
    for r in rows:
        assert r["status"] in ("measured", "extrapolated")
        assert int(r["P"]) > 0 and 0 < int(r["evaluated"]) <= int(r["P"])
        t = [float(r[k]) for k in ("time_min_s", "time_median_s", "time_max_s")]
        assert 0 < t[0] <= t[1] <= t[2]
        assert float(r["compile_s"]) > 0 and float(r["flops"]) > 0 and float(r["temp_bytes"]) >= 0
        assert r["device"] == "cpu" and r["jax_version"]
    results = json.loads((out / "results.json").read_text())
    assert results["machine"]["cores"] >= 1 and results["matmul_peak"]["used"]["median_flops_per_s"] > 0
    assert results["matmul_precision"] == "highest" and results["complete"] and results["cases_done"] == 4
    assert {r["flops_source"] for r in rows if r["method"] in ("forward", "backprop", "jax_grad")} == {"xla"}
    for name in (
        "summary.md",
        "time_vs_params.png",
        "cost_in_forward_passes.png",
        "backprop_vs_autodiff.png",
        "flops_per_s.png",
    ):
        assert (out / name).stat().st_size > 0
    assert not (out / "results.partial.json").exists()  # kept during the run, removed once all is written
    assert "matmul precision highest" in (out / "summary.md").read_text()


def test_each_finished_case_is_handed_on_and_the_figures_follow_the_methods(tmp_path):
    """``on_case`` sees the rows after every case (what a stopped run keeps); a run of
    a subset of the methods draws only the figures that subset has data for."""
    import jax
    import jax.numpy as jnp

    from benchmarks import analysis, output, plots, runner

    seen, partial = [], tmp_path / "stopped"

    def on_case(p):
        seen.append((p["cases_done"], p["cases"], len(p["rows"]), p["complete"]))
        if p["cases_done"] == 3:  # what a run stopped during its last case leaves
            partial.mkdir()
            output.write_json(p, partial / output.PARTIAL)

    results = runner.run(
        "tiny", jax.devices("cpu")[0], jnp.float32, ("forward",), progress=False, on_case=on_case
    )
    assert seen == [(i, 4, i, False) for i in (1, 2, 3, 4)]
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    written = plots.plot_all(analysis.analyse(results), drawn)
    assert sorted(p.name for p in written) == ["cost_in_forward_passes.png", "time_vs_params.png"]
    assert sorted(p.name for p in drawn.iterdir()) == sorted(p.name for p in written)

    assert _script().main(["--plot-only", "--out", str(partial)]) == 0
    assert not (partial / output.PARTIAL).exists()
    assert "Stopped early: 3 of the grid's 4 cases were run." in (partial / "summary.md").read_text()
    assert len(json.loads((partial / "results.json").read_text())["rows"]) == 3


def test_flops_below_the_matmul_count_are_replaced_by_it():
    """XLA on GPU leaves cuBLAS calls out of its FLOP count; such a count is taken as incomplete."""
    from benchmarks import analysis
    from fnn.scale import throughput

    need = throughput.step_flops([4, 8, 1], 16)
    base = {
        "status": "measured",
        "sizes": "4-8-1",
        "batch": 16,
        "time_median_s": 1e-3,
        "peak_flops_per_s": 1e9,
    }
    rows = [
        {**base, "method": "backprop", "flops": need / 100, "flops_source": "xla"},
        {**base, "method": "jax_grad", "flops": 1.5 * need, "flops_source": "xla"},
        {**base, "method": "fd_central", "flops": 1.0, "flops_source": "xla"},
    ]
    bp, ad, fd = analysis.counted_flops(rows)
    assert (bp["flops"], bp["flops_source"], bp["flops_per_s"]) == (need, "analytic", need / 1e-3)
    assert bp["peak_fraction"] == pytest.approx(need / 1e-3 / 1e9)
    assert (ad["flops"], ad["flops_source"]) == (1.5 * need, "xla") and fd == rows[2]
    # --plot-only re-analyses saved rows: no change
    assert analysis.counted_flops([bp, ad, fd]) == [
        bp,
        ad,
        fd,
    ]


def test_backprop_flops_not_above_autodiff(tiny_run):
    _, rows = tiny_run
    flops = {(r["case"], r["method"]): float(r["flops"]) for r in rows}
    for case in {r["case"] for r in rows}:
        assert flops[case, "backprop"] <= flops[case, "jax_grad"]


def test_cost_finite_differences_linear_backprop_flat(tiny_run):
    """In XLA's FLOP count (deterministic, unlike times on a shared machine): central
    differences cost about 2P forward passes, backprop and jax.grad 1 to 3 at every P."""
    _, rows = tiny_run
    flops = {(r["case"], r["method"]): float(r["flops"]) for r in rows}
    params = {r["case"]: int(r["P"]) for r in rows}
    for case, p in params.items():
        passes = {m: flops[case, m] / flops[case, "forward"] for m in ("backprop", "jax_grad", "fd_central")}
        assert 1.5 < passes["backprop"] <= passes["jax_grad"] < 3.5, (case, passes)
        assert 0.95 < passes["fd_central"] / (2 * p) < 1.2, (case, passes)

    def slope(method):
        cases = sorted(params, key=params.get)
        return fit_slope([params[c] for c in cases], [flops[c, method] for c in cases])

    assert slope("fd_central") == pytest.approx(1.0, abs=0.1)
    for method in ("forward", "backprop", "jax_grad"):
        assert abs(slope(method)) < 0.1, method


def test_fit_slope_recovers_power_law():
    p = [10, 100, 1000, 10_000]
    assert fit_slope(p, [3e-6 * q**1.5 for q in p]) == pytest.approx(1.5)
    assert math.isnan(fit_slope([10], [1.0]))


def test_sample_is_whole_chunks_and_spread():
    assert sample_size(1000, unit_flops=1.0, budget_flops=1e6, chunk=64) == 1000
    assert sample_size(10**6, unit_flops=1e3, budget_flops=1e6, chunk=64) == 960
    assert sample_size(10**6, unit_flops=1e9, budget_flops=1e6, chunk=8) == 8
    idx = sample_indices(10_000, 5)
    assert idx.tolist() == [0, 2500, 5000, 7499, 9999]  # evenly spaced, both ends included


def test_missing_gpu_is_one_line_error(capsys):
    import jax

    try:
        jax.devices("gpu")
        pytest.skip("a GPU is present")
    except RuntimeError:
        pass
    assert _script().main(["--device", "gpu", "--grid", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no gpu device") and err.count("\n") == 1


def test_bad_method_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_:
        _script().parse_args(["--methods", "backprop,nope"])
    assert exit_.value.code != 0 and "unknown method" in capsys.readouterr().err


def test_training_figure_is_drawn_from_the_json(tmp_path):
    """``--plot-only`` redraws the figure from a results file, here one without the new-process series."""
    import jax
    import matplotlib.image

    from benchmarks import machine

    def result(whole, epoch):
        return {"whole_fit_s": whole, "epoch_s": epoch}

    doc = {
        "benchmark": "digits 64,128,128,10 relu/softmax, adam lr 1e-3, batch 64, 50 epochs",
        "machine": machine.describe(jax.devices()[0]),
        "dtype": "float32",
        "results": {
            "fnn.fit cold": result(0.8, 0.003),
            "fnn.fit warm": result(0.3, 0.003),
            "jax.grad + optax loop": result(1.4, 0.017),
            "sklearn MLPClassifier": result(0.6, 0.012),
        },
        "fresh_process": None,
    }
    path = tmp_path / "training.json"
    path.write_text(json.dumps(doc))
    _script("bench_training").main(["--plot-only", "--out", str(path)])
    height, width, _ = matplotlib.image.imread(tmp_path / "training.png").shape
    assert (height, width) == (418, 1210)  # figsize (11, 3.8) at the figures' 110 dpi


def test_a_classifier_case_runs_every_method_on_integer_labels():
    """The ``trained`` sweep's kind of network (softmax, cross-entropy, integer labels):
    every method prepares and times; the eager call's program is the compiled core plus
    the one-hot encoding of the labels it is given."""
    import jax
    import jax.numpy as jnp

    from benchmarks import grids, runner
    from benchmarks.machine import describe

    case = grids.Case("trained", grids.classifier((8,), "relu", n_in=12, n_out=4), 16)
    device = jax.devices("cpu")[0]
    rows = runner.run_case(
        case,
        device,
        jnp.float32,
        runner.BUDGETS["tiny"],
        describe(device),
        methods=tuple(m for m in ALL_METHODS if m != "analytical"),
    )
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == set(ALL_METHODS) - {"analytical"}
    timed = [r for r in rows if r["status"] != "skipped"]
    assert all(r["time_median_s"] > 0 for r in timed)
    core, eager = by_method["backprop"]["flops"], by_method["backprop_eager"]["flops"]
    # a few FLOPs per one-hot entry
    assert 0 < core < eager <= core + 2 * case.batch * case.net.sizes[-1] * 16
    assert math.isfinite(by_method["backprop_eager"]["paired_vs_jax_grad"])


@pytest.fixture(scope="module")
def graphs_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_graphs")
    assert _script().main(["--grid", "graphs_tiny", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv", newline="") as f:
        return out, list(csv.DictReader(f))


def test_graph_grid_times_backprop_jax_grad_and_torch_on_residual_and_cascade_nets(graphs_run):
    """The graphs grid's default contenders, one row each per case, every one measured; the FLOPs
    XLA counts are at least the graph's own matmul count, which the rows carry."""
    from benchmarks.grids import grid

    out, rows = graphs_run
    cases = grid("graphs_tiny")
    assert {r["sweep"] for r in rows} == {"residual", "cascade"}
    assert sorted((r["case"], r["method"]) for r in rows) == sorted(
        (c.name, m) for c in cases for m in GRAPH_METHODS
    )
    params = {c.name: c.net.n_params for c in cases}
    has_torch = importlib.util.find_spec("torch") is not None
    for r in rows:
        if r["method"] == "torch" and not has_torch:  # the optional peer: skipped, and the row says why
            assert r["status"] == "skipped" and "torch" in r["note"]
            continue
        assert r["status"] == "measured" and int(r["P"]) == int(r["evaluated"]) == params[r["case"]]
        assert 0 < float(r["time_min_s"]) <= float(r["time_median_s"]) <= float(r["time_max_s"])
        if r["method"] == "torch":
            assert r["note"].startswith("eager autograd") and r["flops"] == ""
        else:
            assert float(r["flops"]) >= float(r["matmul_flops"]) > 0 and r["flops_source"] == "xla"
    assert all(
        math.isfinite(float(r["paired_vs_jax_grad"])) for r in rows if r["method"].startswith("backprop")
    )
    results = json.loads((out / "results.json").read_text())
    assert results["grid"] == "graphs_tiny" and results["complete"] and results["slopes"] == {}
    assert {r["case"] for r in results["ratios"]} == set(params)
    for name in ("summary.md", "backprop_vs_autodiff.png", "flops_per_s.png"):
        assert (out / name).stat().st_size > 0
    assert not (out / "time_vs_params.png").exists()  # no sweep along P to draw
    summary = (out / "summary.md").read_text()
    assert all(f"| {c.name} |" in summary for c in cases) and "Fitted slopes" not in summary


def test_the_torch_peer_computes_fnns_loss_and_gradients_on_any_network():
    """The peer is built from the network's description: the graphs grid's residual and cascade nets,
    a graph with several inputs, a residual and dropout in one node (off without a key, as in fnn),
    and an MLP (its chain graph). At the benchmark's matmul precision, on the grids' cases: the runs above
    compiled their programs already."""
    pytest.importorskip("torch")
    import jax
    import jax.numpy as jnp

    import fnn
    from benchmarks import grids, methods, runner, torch_peer

    mixed = fnn.Graph(
        6,
        nodes=[
            fnn.Dense("h1", 8, "gelu"),
            fnn.Dense("h2", 8, "tanh", inputs=("h1", "x"), residual="h1", dropout=0.2),
            fnn.Dense("out", 3, "softmax", inputs=("h2", "h1")),
        ],
        loss="cross_entropy",
    )
    cases = [*grids.grid("graphs_tiny"), grids.Case("graph", mixed, 16), grids.grid("tiny")[0]]
    for case in cases:
        net = case.net
        with jax.default_matmul_precision(runner.MATMUL_PRECISION):
            params, x, _, targets = methods.make_inputs(net, case.batch, jax.devices("cpu")[0], jnp.float32)
            loss, grads = fnn.backprop(net, params, x, targets)
        step, leaves = torch_peer.peer(net, params, x, targets)
        assert step().item() == pytest.approx(float(loss), rel=1e-5), case.name
        graph, grads = torch_peer.as_graph(net, grads)
        for node in graph.nodes:
            W, b = leaves[node.name]
            assert set(W) == set(node.inputs)
            for i, w in W.items():
                assert w.grad.numpy() == pytest.approx(
                    np.asarray(grads[node.name]["W"][i]), rel=1e-4, abs=1e-6
                )
            assert b.grad.numpy() == pytest.approx(np.asarray(grads[node.name]["b"]), rel=1e-4, abs=1e-6)


def test_bench_calls_measures_and_writes_every_function(tmp_path):
    """bench_calls.py's pieces on the smallest case, a few rounds: one row per function and mode."""
    from benchmarks import calls

    case = calls.cases(quick=True)[0]
    rows = calls.measure(case, rounds=3, sample_s=2e-4)
    assert {(r["function"], r["mode"]) for r in rows} == {
        (f, m) for f in calls.FUNCTIONS for m in calls.MODES
    }
    assert all(r["fnn_us"] > 0 and r["plain_us"] > 0 and math.isfinite(r["ratio"]) for r in rows)
    results = {
        "machine": {"cpu": "test", "cores": 1, "device": "cpu", "device_kind": "cpu", "jax_version": "x"},
        "rounds": 3,
        "tolerance": calls.TOLERANCE,
        "rows": rows,
        "wall_s": 1.0,
        "worst": {"backprop, pipelined": {"case": case.name, "ratio": rows[0]["ratio"]}},
    }
    paths = calls.save(results, tmp_path)
    assert [p.name for p in paths] == ["results.json", "results.csv", "summary.md", "calls.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    with open(paths[1]) as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_estimator_round_times_both_and_they_agree(monkeypatch):
    """One round of bench_training.py --estimators on digits (2 epochs): both contenders timed, in a
    random order, and in float64 the same accuracy (the same algorithm)."""
    import random

    import jax

    from benchmarks import estimators

    case = next(iter(estimators.CASES))
    # no jax.clear_caches() in the test process: it would drop every other test's compiled programs
    monkeypatch.setattr(jax, "clear_caches", lambda: None)
    monkeypatch.setitem(estimators.CASES, case, {**estimators.CASES[case], "epochs": 2})
    data = estimators.dataset(case, np.float64)
    rounds = [estimators.one_round(case, np.float64, data, 0, random.Random(0)) for _ in range(2)]
    for r in rounds:
        assert sorted(r["order"]) == ["fnn.sklearn", "scikit-learn"]
        assert r["fnn.sklearn"]["cold_fit_s"] > 0 and r["scikit-learn"]["whole_fit_s"] > 0
        assert r["fnn.sklearn"]["test_accuracy"] == r["scikit-learn"]["test_accuracy"]
    summary = estimators.summarise(rounds)
    assert summary["sklearn_over_fnn_epoch"] > 0
    table = estimators.table({f"{case}, float64": {"summary": summary}})
    assert table.count("\n") == 2 and "x |" in table


@pytest.mark.slow
def test_bench_training_steps_times_every_method_against_a_gradient(tmp_path):
    """``bench_training.py --steps --tiny``: every method's compiled step on both nets, in gradients (one
    round each, after one warm-up step: the schema and the ratios, not the figures). Slow (``pytest -m slow
    -k steps``): 13 programs to compile, about 25 s on two cores."""
    from benchmarks import steps
    from fnn import optimizers

    out = tmp_path / "steps.json"
    _script("bench_training").main(["--steps", "--tiny", "--repeats", "1", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["machine"]["cores"] >= 1 and doc["repeats"] == 1 and doc["dtype"] == "float32"
    expected = [m for m in steps.METHODS if m != "kfac" or "kfac" in optimizers.NAMES]
    assert [c["loss"] for c in doc["cases"]] == ["cross_entropy", "mse"]
    for case in doc["cases"]:
        lm = case["loss"] == "mse"
        assert sorted(case["methods"]) == sorted(m for m in expected if lm or m != "levenberg_marquardt")
        assert list(case["skipped"]) == ([] if lm else ["levenberg_marquardt"])
        assert case["gradient_s"] > 0 and case["P"] == steps.cases(tiny=True)[0 if not lm else 1].net.n_params
        for name, r in case["methods"].items():
            for key in ("gradients", "ratio_of_medians", "median_s", "compile_s"):
                assert r[key] > 0 and math.isfinite(r[key]), (case["case"], name, key)
            assert len(r["samples_s"]) == 1 and math.isfinite(r["loss_last"])
        hf = case["methods"]["hessian_free"]
        assert len(hf["cg_iterations"]) == 1 and hf["cg_iterations_mean"] >= 1
        assert hf["gradients_per_cg_iteration"] > 0 and "cg_iterations" not in case["methods"]["adam"]
    table = (tmp_path / "steps.md").read_text()
    assert (
        table.startswith("Machine: ") and "| hessian_free |" in table and "not run: needs loss='mse'" in table
    )
    assert (tmp_path / "steps.png").stat().st_size > 0


def test_steps_stop_between_cases_and_say_so():
    """``steps.run(stop=...)``: asked after each case, a true stops before the next; ``complete`` says whether
    every case ran (the GPU script's ``second_order`` check stops so when its budget runs out)."""
    from benchmarks import steps

    two = [
        steps.synthetic_case((4,), 8, n_in=6, n_classes=3),
        steps.synthetic_case((5,), 8, n_in=6, n_classes=3),
    ]
    asked = []
    doc = steps.run(
        1,
        1,
        methods=("adam",),
        progress=None,
        case_list=two,
        stop=lambda rows: asked.append(len(rows)) or True,
    )
    assert asked == [1] and len(doc["cases"]) == 1 and doc["complete"] is False
    assert doc["cases"][0]["sizes"] == [6, 4, 3] and doc["cases"][0]["methods"]["adam"]["gradients"] > 0
    assert steps.run(1, 1, methods=("adam",), progress=None, case_list=two, stop=lambda rows: False)[
        "complete"
    ]


def test_cold_start_ratios_are_paired_and_its_children_report(tmp_path):
    from benchmarks import cold_start

    seconds = {name: [1.0, 2.0] for name in cold_start.contenders(str(tmp_path))}
    seconds["workload fnn first run"] = [3.0, 2.0]
    seconds["import fnn"] = [1.5, 2.1]
    ratios = cold_start.ratios({"seconds": seconds})
    assert ratios["workload first run / sklearn"] == 2.0  # the median of 3/1 and 2/2
    assert ratios["workload second run / sklearn"] == 1.0
    assert math.isclose(ratios["import fnn - import jax (s)"], 0.3)
    wall, took = cold_start.run_child("import", "fnn", None)
    assert 0 < took < wall
