"""How well a training run uses its device: FLOPs per step, TFLOP/s and MFU.

FLOPs of one training step (analytic, matmuls only; a multiply-add is 2 FLOPs).
For a batch of ``B`` and layers ``n_{l-1} -> n_l``:

    forward        z_l = a_{l-1} W_l                 2 B n_{l-1} n_l   every layer
    backward       dL/dW_l = a_{l-1}^T delta_l       2 B n_{l-1} n_l   every layer
                   delta_{l-1} = (delta_l W_l^T) ...  2 B n_{l-1} n_l   layers 2..L (no delta for x)

    flops = 6 B sum_l n_{l-1} n_l  -  2 B n_0 n_1

Biases, activations, the loss and the optimizer's update are O(B n) or O(P)
and left out, as is usual for model FLOPs utilisation (MFU): MFU counts the
work the model needs, not what the program happens to execute, so it can be
compared across implementations. ``tests/test_throughput.py`` checks the
formula against XLA's ``cost_analysis`` of the compiled step.

    achieved FLOP/s = flops per step x steps / wall time
    MFU             = achieved FLOP/s / peak FLOP/s of the device

The peak is the vendor's dense (no sparsity) tensor-core figure for the
precision in ``PEAKS_TFLOPS`` for known GPUs; for CPUs and unknown devices it
is measured: the FLOP/s of a jitted square matmul on the device
(``matmul_peak``), i.e. what XLA's own dot reaches here.

``speed_summary`` is the throughput of a run as ``fnn train`` writes it to
``metrics.json`` (and the GPU benchmark reports it).
"""

from __future__ import annotations

import functools
import statistics

import jax
import jax.numpy as jnp

from fnn.scale.timing import wall_time

# Dense peak TFLOP/s by device kind substring and precision (vendor data sheets,
# SXM parts; "fp32" is the plain float32 FMA rate without tensor cores).
PEAKS_TFLOPS = {
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM; PCIe parts: 756 / 378 / 51
    "GH200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "tf32": 183.0, "fp32": 91.6},
    "L4": {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3},
    "A10": {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2},
    "V100": {"bf16": None, "tf32": None, "fp32": 15.7},
    "T4": {"bf16": None, "tf32": None, "fp32": 8.1},
}


def step_flops(sizes, batch: int) -> int:
    """Matmul FLOPs of one training step (forward + backward), see the module docstring."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return 6 * batch * sum(a * b for a, b in pairs) - 2 * batch * pairs[0][0] * pairs[0][1]


def forward_flops(sizes, batch: int) -> int:
    return 2 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def table_peak(device_kind: str, precision: str) -> float | None:
    """The table's peak TFLOP/s for ``device_kind`` (e.g. "NVIDIA H100 80GB HBM3"), or ``None``."""
    key = {"bf16": "bf16", "tf32": "tf32"}.get(precision or "fp32", "fp32")
    kind = device_kind.upper()
    for name in sorted(PEAKS_TFLOPS, key=len, reverse=True):  # GH200 before H200 before H100
        if name in kind:
            return PEAKS_TFLOPS[name][key]
    return None


def matmul_call(device, dtype, n: int):
    """``(call, flops)``: a blocking zero-argument run of a compiled ``(n, n) @ (n, n)``."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), dtype), device)
    b = jax.device_put(jax.random.normal(key_b, (n, n), dtype), device)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    return (lambda: jax.block_until_ready(matmul(a, b))), 2.0 * n**3


def matmul_peak(device, dtype, n: int, repeats: int = 7) -> dict:
    """FLOP/s of a jitted ``(n, n) @ (n, n)`` in ``dtype`` on ``device``: ``2 n^3 / time``.

    This is the practical peak XLA's own dot reaches on this machine right now,
    the yardstick for a training run's (or a gradient's) achieved FLOP/s.
    """
    call, flops = matmul_call(device, dtype, n)
    call()
    times = [wall_time(call) for _ in range(repeats)]
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "flops": flops,
        "median_flops_per_s": flops / statistics.median(times),
        "best_flops_per_s": flops / min(times),
        "repeats": repeats,
    }


@functools.cache
def _measured(device, dtype_name: str, n: int) -> float:
    return matmul_peak(device, jnp.dtype(dtype_name), n, repeats=3)["best_flops_per_s"] / 1e12


def peak_tflops(device, precision: str | None = None, n: int = 1024) -> tuple[float, str]:
    """``(peak TFLOP/s, source)`` for ``device`` under ``precision``: the table, else measured."""
    found = table_peak(getattr(device, "device_kind", ""), precision)
    if found is not None:
        return found, f"table: {device.device_kind} {precision or 'fp32'} dense"
    dtype = "bfloat16" if precision == "bf16" else "float32"
    return _measured(device, dtype, n), f"measured: {n}x{n} {dtype} matmul on {device.device_kind}"


def rates(flops_per_step: int, steps: int, batch: int, seconds: float, peak: float | None = None) -> dict:
    """``samples_per_s``, ``tflops`` (achieved) and ``mfu`` (``None`` without a peak)."""
    if seconds <= 0:
        return {"samples_per_s": None, "tflops": None, "mfu": None}
    tflops = flops_per_step * steps / seconds / 1e12
    return {
        "samples_per_s": steps * batch / seconds,
        "tflops": tflops,
        "mfu": tflops / peak if peak else None,
    }


def speed_summary(history, speed: dict, cfg) -> dict:
    """Throughput for metrics.json: the epochs after the first (which includes compiling), if any.

    ``history``: the run's ``fnn.History``; ``speed``: the run's constants (``steps_per_epoch``,
    ``flops_per_step``, ``batch``, ``devices``, ``device_kind``, ``peak_tflops``, ``peak_source``);
    ``cfg``: its settings (``precision``)."""
    times = history.epoch_time_s[1:] or history.epoch_time_s
    seconds = sum(times)
    steps = speed["steps_per_epoch"] * len(times)
    speeds = rates(speed["flops_per_step"], steps, speed["batch"], seconds, speed["peak_tflops"])
    return {
        "precision": cfg.get("precision") or "fp32",
        "devices": speed["devices"],
        "device_kind": speed["device_kind"],
        "samples_per_s": speeds["samples_per_s"],
        "tflops": speeds["tflops"],
        "mfu": speeds["mfu"],
        "peak_tflops": speed["peak_tflops"],
        "peak_source": speed["peak_source"],
        "flops_per_step": speed["flops_per_step"],
        "flops_method": "analytic matmul FLOPs 6 B sum n_in n_out - 2 B n_0 n_1 (fnn.scale.throughput)",
        "throughput_epochs": "all but the first (compile)"
        if len(history) > 1
        else "the only epoch (with compile)",
    }
