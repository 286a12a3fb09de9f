"""Benchmarks of the gradient methods: backprop against jax.grad, forward mode,
finite differences, the closed form and PyTorch, across network sizes.

    import benchmarks   # from the repository's root: the package is not installed with fnn
    results = benchmarks.benchmark("quick", device="cpu", dtype="float32")
    benchmarks.save(results, Path("out"))   # results.csv, results.json, summary.md, PNGs

Modules: ``grids`` (which sizes), ``methods`` (the JAX methods), ``torch_peer``,
``runner`` (interleaved timing, rows), ``analysis`` (slopes, ratios, targets),
``output`` and ``plots``; ``calls`` (the cost of an eager call), ``curvature``
(Hessian- and Gauss-Newton-vector products in gradients), ``steps`` (each
training method's compiled step in gradients), ``estimators``
(``fnn.sklearn`` against scikit-learn), ``cold_start`` (a script's first fits
in fresh processes), ``training_functions`` (MATLAB's comparison) and
``gpu_suite`` with ``gpu_checks`` (every GPU check in one run); ``machine``
(which device a run uses, the machine described) and ``xla_cost`` (XLA's cost
analysis of a compiled program). The matmul peak is ``fnn.scale.throughput``'s
and the timing ``fnn.scale.timing``'s. The files ``bench_*.py`` and ``gpu.py``
beside them are the command-line entry points.
"""

from __future__ import annotations

from pathlib import Path

DTYPES = ("float32", "bfloat16", "float64")


def benchmark(
    grid: str = "quick",
    device: str = "cpu",
    dtype: str = "float32",
    methods=None,
    progress: bool = True,
    on_case=None,
) -> dict:
    """Run a grid and analyse it. Raises ``DeviceUnavailable`` when ``device`` is absent.

    ``on_case``: called with the unanalysed results so far after each case
    (see ``benchmarks.runner.run``)."""
    import jax
    import jax.numpy as jnp

    from benchmarks import analysis, machine, runner

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPES)}")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    target = machine.select_device(device)
    results = runner.run(grid, target, jnp.dtype(dtype), methods, progress, on_case)
    return analysis.analyse(results)


def save(results: dict, out: Path) -> list[Path]:
    """Write CSV, JSON, the markdown summary and the PNG plots under ``out``."""
    from benchmarks import output, plots

    out = Path(out)
    return output.write_all(results, out) + plots.plot_all(results, out)
