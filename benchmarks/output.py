"""Writing results: ``results.csv`` (one row per method and case), ``results.json``
(rows plus machine, matmul peak, slopes, ratios, targets) and ``summary.md``."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from benchmarks.runner import ROW_FIELDS


def _clean(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


PARTIAL = "results.partial.json"  # the rows so far of a run still going (or stopped before its end)


def write_csv(rows, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(row[k]) for k in ROW_FIELDS})


def _format(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def write_json(results: dict, path: Path) -> None:
    """Written next to ``path`` and renamed over it: a run stopped mid-write leaves the last whole file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_clean(results), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """Results written by ``write_json``, with the rows' nulls back as NaN (for re-analysis); a
    column that results from an older version lack is NaN too."""
    results = json.loads(Path(path).read_text())
    results["rows"] = [
        {**dict.fromkeys(ROW_FIELDS, math.nan), **{k: math.nan if v is None else v for k, v in row.items()}}
        for row in results["rows"]
    ]
    return results


def _x(v, digits=2):
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def _t(seconds):
    if not math.isfinite(seconds):
        return "n/a"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def summary_markdown(results: dict) -> str:
    """The tables ``benchmarks/README.md`` shows: machine, ratios by size, slopes, targets."""
    m, peak = results["machine"], results["matmul_peak"]["used"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; device `{m['device']}` ({m['device_kind']}); "
        f"jax {m['jax_version']}, torch {m['torch_version'] or 'not installed'}; dtype {results['dtype']} "
        f"(matmul precision {results.get('matmul_precision', 'JAX default')}); "
        f"grid `{results['grid']}`, {results['wall_s']:.0f} s.",
        "",
        *(
            [
                f"**Stopped early: {results['cases_done']} of the grid's {results['cases']} "
                "cases were run.**",
                "",
            ]
            if not results.get("complete", True)
            else []
        ),
        f"Matmul peak ({peak['n']}x{peak['n']} @ {peak['n']}x{peak['n']}, {peak['dtype']}): "
        f"{peak['median_flops_per_s'] / 1e9:.1f} GFLOP/s median, {peak['best_flops_per_s'] / 1e9:.1f} best, "
        "timed alone at the start or end of the run; `% peak` below uses the same matmul timed "
        "in each case's interleaved rounds (`peak GFLOP/s`), under the same load as the methods.",
        "",
        "`backprop` and `jax.grad` are their compiled executables; `eager` is the public call "
        "`fnn.backprop(net, params, x, y)` as a user's loop makes it (checks and dispatch included; "
        "integer labels for the classifiers).",
        "",
        "| case | P | batch | backprop | eager | jax.grad | torch | bp/jax.grad (paired, median, min) | "
        "eager/jax.grad (paired) | bp/torch | eager/torch | "
        "FLOPs bp/jax.grad | temp bp/jax.grad | bp GFLOP/s | peak GFLOP/s | % peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["ratios"]:
        lines.append(
            f"| {r['case']} | {r['P']:,} | {r['batch']} | {_t(r['backprop_s'])} | "
            f"{_t(r.get('eager_s', math.nan))} | "
            f"{_t(r['jax_grad_s'])} | "
            f"{_t(r['torch_s'])} | {_x(r['paired_time_vs_jax_grad'])}, {_x(r['time_vs_jax_grad'])}, "
            f"{_x(r['min_time_vs_jax_grad'])} | {_x(r.get('paired_eager_vs_jax_grad', math.nan))} | "
            f"{_x(r['time_vs_torch'])} | {_x(r.get('eager_vs_torch', math.nan))} | "
            f"{_x(r['flops_vs_jax_grad'], 4)} | {_x(r['temp_vs_jax_grad'])} | "
            f"{_x(r['flops_per_s'] / 1e9, 1)} | {_x(r['peak_flops_per_s'] / 1e9, 1)} | "
            f"{_x(100 * r['peak_fraction'], 0)} |"
        )
    if results["slopes"]:  # none in the graphs grid, which has no sweep along P
        lines += [
            "",
            "Fitted slopes k of time ~ P^k and of cost in forward passes ~ P^k:",
            "",
            "| sweep | method | k (time) | k (forward passes) | P range |",
            "|---|---|---:|---:|---|",
        ]
    for sweep, by_method in results["slopes"].items():
        for method, s in by_method.items():
            lines.append(
                f"| {sweep} | {method} | {_x(s['time'])} | {_x(s['rel_forward'])} | "
                f"{s['P_min']:,} to {s['P_max']:,} |"
            )
    lines += ["", "| target | met | detail |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {met} | {t['detail']} |")
    return "\n".join(lines) + "\n"


def write_all(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.csv", out / "results.json", out / "summary.md"]
    write_csv(results["rows"], paths[0])
    write_json(results, paths[1])
    paths[2].write_text(summary_markdown(results))
    (out / PARTIAL).unlink(missing_ok=True)  # the whole run is written: the partial file is stale
    return paths
