"""Every GPU check in one run, within a time budget: the first thing to run when a GPU is available.

    device = benchmarks.gpu_suite.device(dry_run=False)          # DeviceUnavailable without a GPU
    summary = benchmarks.gpu_suite.run_all(device, out, budget_s=540)

The checks (``benchmarks.gpu_checks``) run in ``CHECKS``' order, which is their
priority. Before each, its estimate (seconds at the tiny or the real size) is
set against the budget left: a check that would not fit is recorded as
``skipped`` with the reason ``budget``, and the next, cheaper one may still
run. A check that raises is recorded as ``error`` with its message and
traceback, and the run goes on. A check stopped early by the budget (between
grid cases, between epochs) is ``partial``. ``summary.json`` and
``summary.md`` are rewritten after every check, so a run killed from outside
keeps what it finished.

``dry_run``: the same code at the tiny sizes, on JAX's CPU device.
"""

from __future__ import annotations

import gc
import json
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax

from benchmarks import gpu_checks
from benchmarks.machine import describe, select_device
from benchmarks.output import write_json


class Check(NamedTuple):
    name: str
    run: Callable[[gpu_checks.Context], dict]
    tiny_s: float  # estimated seconds at the tiny size (the dry run, on 2 CPU cores)
    real_s: (
        float  # estimated seconds on one H100 or H200: guesses from the H200's earlier runs, not yet timed
    )
    what: str


CHECKS = (
    Check(
        "gradients_default",
        gpu_checks.gradients_default,
        4,
        110,
        "gradient grid `gpu`, depth and batch sweeps, float32 at JAX's default matmul precision (TF32)",
    ),
    Check(
        "gradients_highest",
        gpu_checks.gradients_highest,
        4,
        140,
        "the same at `highest` matmul precision (float32 products)",
    ),
    Check("calls", gpu_checks.calls, 3, 60, "per-call cost: eager public functions against jitted plain JAX"),
    Check("graphs", gpu_checks.graphs, 3, 140, "gradient grid `graphs`: residual and cascade fnn.Graph nets"),
    Check(
        "lm_fp32", gpu_checks.lm_fp32, 2, 15, "Levenberg-Marquardt on sine at fp32 (the test's loss <= 1e-5)"
    ),
    Check(
        "lm_large",
        gpu_checks.lm_large,
        2,
        45,
        "Levenberg-Marquardt at P >= 20,000: time per epoch, loss drop",
    ),
    Check("mfu", gpu_checks.mfu, 3, 30, "fnn.fit in bf16 (tf32, fp32 beside it): TFLOP/s and MFU"),
    Check(
        "curvature",
        gpu_checks.curvature,
        15,
        120,
        "Hessian- and Gauss-Newton-vector products: fnn.hvp and c.gnvp against JAX and torch.func, "
        "in gradients",
    ),
    Check(
        "second_order",
        gpu_checks.second_order,
        8,
        90,
        "one compiled step of Hessian-free, K-FAC, SCG (exact curvature) and L-BFGS beside Adam's, "
        "in gradients",
    ),
)
NAMES = tuple(c.name for c in CHECKS)
BUDGET_S = 540.0  # 9 minutes: a device lease of 15 minutes less its start and the transfers


def device(dry_run: bool = False):
    """The first GPU, or ``DeviceUnavailable``; JAX's CPU device for a dry run."""
    return select_device("cpu" if dry_run else "gpu")


def slug(device_kind: str) -> str:
    """``gpu_`` and the device kind in lower case, runs of other characters as ``_``: ``gpu_nvidia_h200``."""
    return "gpu_" + re.sub(r"[^a-z0-9]+", "_", device_kind.lower()).strip("_")


def run_check(check: Check, ctx: gpu_checks.Context) -> dict:
    """One check's record: ``status`` ``ok``, ``partial`` (stopped by the budget) or ``error``, with
    its seconds."""
    start = time.perf_counter()
    record = {
        "name": check.name,
        "what": check.what,
        "estimate_s": check.tiny_s if ctx.tiny else check.real_s,
    }
    try:
        ctx.out.mkdir(parents=True, exist_ok=True)
        with jax.default_device(ctx.device):
            result = json.loads(json.dumps(check.run(ctx), default=_plain))  # JSON now, not when written
        partial = result.get("complete") is False
        record.update(
            status="partial" if partial else "ok", reason="budget" if partial else "", result=result
        )
    except Exception as err:  # a failing check is recorded and the next one runs
        record.update(
            status="error",
            reason="",
            error=f"{type(err).__name__}: {err}".strip(),
            traceback=traceback.format_exc(),
        )
    finally:
        gc.collect()  # the check's device buffers go before the next check allocates its own
    return {**record, "seconds": time.perf_counter() - start}


def _plain(value):
    """NumPy and JAX scalars and arrays as Python numbers and lists; anything else as its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def skipped(check: Check, estimate: float, left: float) -> dict:
    return {
        "name": check.name,
        "what": check.what,
        "estimate_s": estimate,
        "status": "skipped",
        "reason": "budget",
        "detail": f"needs about {estimate:.0f} s, {max(left, 0):.0f} s of the budget left",
        "seconds": 0.0,
    }


def run_all(
    device,
    out: Path,
    budget_s: float = BUDGET_S,
    tiny: bool = False,
    checks=CHECKS,
    command: str = "",
    echo: Callable[[str], None] = print,
) -> dict:
    """Run ``checks`` in order within ``budget_s``; write and return the summary (see the module
    docstring)."""
    out, start = Path(out), time.perf_counter()
    left = lambda: budget_s - (time.perf_counter() - start)
    summary = {
        "machine": describe(device),
        "jax_version": jax.__version__,
        "device_slug": slug(device.device_kind),
        "dry_run": tiny,
        "budget_s": budget_s,
        "command": command,
        "checks": [],
        "complete": False,
    }
    for i, check in enumerate(checks, 1):
        estimate = check.tiny_s if tiny else check.real_s
        if estimate > left():
            record = skipped(check, estimate, left())
        else:
            echo(
                f"[{i}/{len(checks)}] {check.name}: {check.what} "
                f"(about {estimate:.0f} s, {left():.0f} s left)"
            )
            record = run_check(check, gpu_checks.Context(device, out / check.name, tiny, left))
        summary["checks"].append(record)
        echo(
            f"[{i}/{len(checks)}] {check.name}: {record['status']} in {record['seconds']:.1f} s"
            + (
                f": {record.get('error') or record.get('detail')}"
                if record["status"] in ("error", "skipped")
                else ""
            )
        )
        write(summary | {"wall_s": time.perf_counter() - start}, out)
    summary.update(complete=True, wall_s=time.perf_counter() - start)
    write(summary, out)
    return summary


def write(summary: dict, out: Path) -> list[Path]:
    """``summary.json`` and ``summary.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.json", out / "summary.md"]
    write_json(summary, paths[0])
    paths[1].write_text(markdown(summary))
    return paths


def said(record: dict) -> str:
    """A check's one line: its headline, its error, or why it was skipped or stopped."""
    status, result = record["status"], record.get("result", {})
    text = {
        "ok": result.get("headline", ""),
        "error": record.get("error", ""),
        "skipped": f"{record['reason']}: {record.get('detail', '')}",
        "partial": f"stopped early ({record['reason']}): {result.get('headline', '')}",
    }[status]
    return (text.splitlines() or [""])[0].replace("|", "/")


def table(summary: dict) -> str:
    """One row per check: status, seconds, estimate, and what it found."""
    lines = ["| check | status | seconds | estimate | result |", "|---|---|---:|---:|---|"]
    lines += [
        f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['estimate_s']:.0f} | {said(r)} |"
        for r in summary["checks"]
    ]
    return "\n".join(lines)


def markdown(summary: dict) -> str:
    m = summary["machine"]
    return "\n".join(
        [
            f"# GPU checks{' (dry run: tiny sizes on the CPU)' if summary['dry_run'] else ''}",
            "",
            f"Device `{m['device']}` ({m['device_kind']}); {m['cpu']}, {m['cores']} cores; "
            f"jax {summary['jax_version']}, "
            f"torch {m['torch_version'] or 'not installed'}. Budget {summary['budget_s']:.0f} s, "
            f"{summary.get('wall_s', 0):.0f} s used"
            f"{'' if summary['complete'] else ' (still running or stopped)'}.",
            "",
            f"`{summary['command']}`" if summary["command"] else "",
            "",
            table(summary),
            "",
            "Each check's own files are in its folder here; errors keep their traceback in `summary.json`.",
            "",
        ]
    )
