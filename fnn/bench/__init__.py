"""Benchmarks of the gradient methods: backprop against jax.grad, forward mode,
finite differences, the closed form and PyTorch, across network sizes.

    results = fnn.bench.benchmark("quick", device="cpu", dtype="float32")
    fnn.bench.save(results, Path("out"))   # results.csv, results.json, summary.md, PNGs

Modules: ``grids`` (which sizes), ``methods`` (the JAX methods), ``torch_peer``,
``runner`` (interleaved timing, rows), ``analysis`` (slopes, ratios, targets),
``output`` and ``plots``; ``calls`` (the cost of an eager call), ``curvature``
(Hessian- and Gauss-Newton-vector products in gradients), ``steps`` (each
training method's compiled step in gradients), ``estimators``
(``fnn.sklearn`` against scikit-learn), ``training_functions`` (MATLAB's
comparison) and ``gpu`` (every GPU check in one run). XLA's cost analysis, the
matmul peak, timing and the machine's description are ``fnn.scale``'s.
"""

from __future__ import annotations

from pathlib import Path

DTYPES = ("float32", "bfloat16", "float64")


def benchmark(grid: str = "quick", device: str = "cpu", dtype: str = "float32", methods=None,
              progress: bool = True, on_case=None) -> dict:
    """Run a grid and analyse it. Raises ``DeviceUnavailable`` when ``device`` is absent.

    ``on_case``: called with the unanalysed results so far after each case
    (see ``fnn.bench.runner.run``)."""
    import jax
    import jax.numpy as jnp

    from fnn.bench import analysis, runner
    from fnn.scale import machine

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPES)}")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    target = machine.select_device(device)
    results = runner.run(grid, target, jnp.dtype(dtype), methods, progress, on_case)
    return analysis.analyse(results)


def save(results: dict, out: Path) -> list[Path]:
    """Write CSV, JSON, the markdown summary and the PNG plots under ``out``."""
    from fnn.bench import output, plots

    out = Path(out)
    return output.write_all(results, out) + plots.plot_all(results, out)
