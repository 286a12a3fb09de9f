"""benchmarks/bench_curvature.py on the tiny grid (seconds): the files it writes, and the products it times
checked against JAX at the very point it timed them."""

import csv
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_script, worst_norm_error

import fnn
from benchmarks import curvature
from fnn.core.forward import loss_core

FILES = (
    "results.csv",
    "results.json",
    "summary.md",
    "cost_in_gradients.png",
    "ratios.png",
    "fd_error_vs_eps.png",
)
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("curvature")
    assert load_script("bench_curvature").main(["--grid", "tiny", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, rows, json.loads((out / "results.json").read_text())


def test_it_writes_every_file_and_a_row_per_contender_and_case(tiny_run):
    out, rows, results = tiny_run
    assert all((out / name).stat().st_size > 0 for name in FILES)
    assert rows and list(rows[0]) == list(curvature.ROW_FIELDS)
    cases = [c.name for c in curvature.grid("tiny")]
    assert [(r["case"], r["method"]) for r in rows] == [(c, m) for c in cases for m in curvature.CONTENDERS]
    for r in rows:
        if r["method"] == "torch" and not HAS_TORCH:
            assert r["status"] == "skipped" and "not installed" in r["note"]
            continue
        assert r["status"] == "measured", r
        assert 0 < float(r["time_min_s"]) <= float(r["time_median_s"]) <= float(r["time_max_s"])
        assert int(r["rounds"]) >= curvature.BUDGETS["tiny"].min_rounds and float(r["gradients"]) > 0
    backprop = [r for r in rows if r["method"] == "backprop"]
    assert all(float(r["gradients"]) == 1.0 for r in backprop)  # the unit, paired with itself
    assert results["complete"] and results["machine"]["cores"] >= 1 and results["machine"]["jax_version"]
    assert [t["key"] for t in results["targets"]] == list(curvature.TARGETS)
    assert all(t["met"] in (True, False) for t in results["targets"])
    detail = {t["key"]: t["detail"] for t in results["targets"]}
    hvp_flops = [r["flops_gradients"]["hvp"] for r in results["ratios"]]
    assert (
        f"XLA counts {min(hvp_flops):.2f}-{max(hvp_flops):.2f} gradients of arithmetic"
        in detail["hvp_gradients"]
    )
    assert "FLOPs of fnn.hvp / JAX's program: " in detail["hvp_vs_fwd_over_rev"]
    assert "FLOPs of c.gnvp / JAX's program: " in detail["gnvp_vs_linearized"]
    summary = (out / "summary.md").read_text()
    assert "| target | met | detail |" in summary and "hvp/fwd-rev" in summary


def test_hvp_equals_forward_over_reverse_at_the_benchmarked_point(tiny_run):
    """Recomputed here with jax.jvp(jax.grad) at the benchmark's own point, not read back from its files."""
    _, rows, _ = tiny_run
    device = jax.devices("cpu")[0]
    for case in curvature.grid("tiny"):
        params, x, y, _, v = curvature.point(case, device)
        loss = lambda w: loss_core(case.net, w, x, y)

        @jax.jit  # one program for both: compiling is most of this test's time
        def both(w, v):
            return fnn.hvp(case.net, w, x, y, v), jax.jvp(jax.grad(loss), (w,), (v,)), loss(w)

        (value, grads, hv), (grads_ref, hv_ref), value_ref = both(params, v)
        assert {a.dtype for a in jax.tree_util.tree_leaves(hv)} == {jnp.dtype(jnp.float32)}
        assert worst_norm_error(grads, grads_ref) < 1e-5, case.name
        assert worst_norm_error(hv, hv_ref) < 1e-5, case.name
        assert float(value) == pytest.approx(float(value_ref), rel=1e-6)
        recorded = {r["method"]: r for r in rows if r["case"] == case.name}
        # the same, from the compiled programs timed
        assert float(recorded["fwd_over_rev"]["rel_diff"]) < 1e-5
        assert float(recorded["rev_over_rev"]["rel_diff"]) < 1e-5
        assert float(recorded["gnvp_linearized"]["rel_diff"]) < 1e-5
        assert 1e-7 < float(recorded["fd_central"]["rel_diff"]) < 1e-2  # an approximation, and a close one


def test_gauss_newton_product_equals_jax_at_the_benchmarked_point():
    case = curvature.grid("tiny")[0]
    params, x, y, _, v = curvature.point(case, jax.devices("cpu")[0])
    gv = fnn.curvature(case.net, params, x, y).gnvp(v)

    @jax.jit
    def reference(w, v):  # J^T H_L J v by JAX: a JVP, the loss's Hessian in the logits, a VJP
        z, vjp = jax.vjp(lambda u: curvature.logits_of(case.net, u, x), w)
        jv = jax.jvp(lambda u: curvature.logits_of(case.net, u, x), (w,), (v,))[1]
        hjv = jax.jvp(jax.grad(lambda t: curvature.loss_of_logits(case.net, t, y)), (z,), (jv,))[1]
        return vjp(hjv)[0]

    assert worst_norm_error(gv, reference(params, v)) < 1e-5


def test_finite_differences_error_falls_then_rises_with_eps(tiny_run):
    """Truncation error ~ eps^2 at large eps, rounding error ~ u / eps at small: float64 reaches far lower."""
    sweep = tiny_run[2]["fd_sweep"]
    f32, f64, eps = np.array(sweep["fd_float32"]), np.array(sweep["fd_float64"]), np.array(sweep["eps"])
    assert eps[0] == 1e-1 and eps[-1] == pytest.approx(1e-7)
    assert f32[0] == pytest.approx(f64[0], rel=1e-2)  # truncation dominates both at eps = 0.1
    assert f32[-1] > 100 * f32.min() and f64.min() < 1e-7 < f32.min() < 1e-3
    assert sweep["hvp_float32"] < 1e-5 and sweep["fwd_over_rev_float64"] < 1e-12
