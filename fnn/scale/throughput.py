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

**The peak** (``peak_tflops``, ``peak_info``) is the vendor's dense (no
sparsity) tensor-core figure for the precision in ``PEAKS_TFLOPS`` for known
GPUs. For CPUs and unknown devices it is measured, once per machine: the
FLOP/s of a jitted square matmul (``n`` = 1024, float32, or bfloat16 under
``bf16``) on the device, i.e. what XLA's own dot reaches here
(``measure_peak``): after ``WARMUP_S`` of untimed calls (XLA's threads awake,
the clock up, the operands in cache), the fastest of ``MIN_REPEATS`` to
``MAX_REPEATS`` timed calls within ``MEASURE_S``. The fastest, not the median:
a peak is a ceiling, and a busy machine only ever slows a call down, so the
fastest call is the stable estimate of what the machine can do (a best of 3
without warm-up varied 2.6x between runs on a 2-core CPU).

The measurement is kept in one JSON file, ``peak_cache_path()``
(``fnn-peak/peaks.json`` in the compile cache's directory,
``fnn.scale.compile_cache.default_dir()``: ``$FNN_CACHE_DIR``, else
``$XDG_CACHE_HOME/fnn/xla``, else ``~/.cache/fnn/xla``), keyed by the
machine's identity (``machine_identity``): the platform, the device kind, the
CPU's model name, ``os.cpu_count()`` and the CPUs this process may use,
``$XLA_FLAGS`` (``--xla_cpu_max_isa=AVX`` changes XLA's code), the jax and
jaxlib versions, the dtype and ``n``. Any of these changed is another entry,
measured afresh. The file is written atomically (a temporary file in its
folder, ``os.replace``), the folder 0700 and the file 0600; it is read as
JSON, never unpickled, and checked: a file that is damaged, too big, not
plain JSON of this format, not the user's own or writable by others, and an
entry whose identity is not this machine's or whose value is not a positive
finite number, are ignored and measured again. Where the file cannot be
written the peak is measured all the same, once per process, and says "not
cached". Delete the file to measure again.

**Refusal: MFU is never above 100%.** A time in which the model's FLOPs would
run faster than the peak is not a time of the work done (an asynchronous
dispatch timed, say): ``rates`` then reports no samples/s, no TFLOP/s and no
MFU (``None``), as for a time that is not positive or not finite, and
``refusal`` says why. ``mfu(tflops, peak)`` is the ratio only when both are
known and it lies in (0, 1], else ``None`` (for the progress bar).

``speed_summary`` is the throughput of a run as ``fnn train`` writes it to
``metrics.json`` (and the GPU benchmark reports it): ``mfu`` ``null`` with an
``mfu_note`` saying why, where refused; ``peak_tflops``, ``peak_source`` and
``peak_measurement`` (``None`` for a table value) say which peak and how it
was obtained.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import stat
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import metadata

import jax
import jax.numpy as jnp

from fnn.scale import compile_cache
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


def matmul_peak(
    device, dtype, n: int, repeats: int = 7, seconds: float | None = None, warmup_s: float = 0.0
) -> dict:
    """FLOP/s of a jitted ``(n, n) @ (n, n)`` in ``dtype`` on ``device``: ``2 n^3 / time``.

    This is the practical peak XLA's own dot reaches on this machine right now,
    the yardstick for a training run's (or a gradient's) achieved FLOP/s. One
    untimed call, then untimed calls for ``warmup_s`` seconds, then ``repeats``
    timed calls; with ``seconds``, the timed calls stop once that long has
    passed and ``MIN_REPEATS`` of them ran (``repeats`` is then the most).
    """
    call, flops = matmul_call(device, dtype, n)
    call()
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        call()
    times, start = [], time.perf_counter()
    while len(times) < repeats:
        times.append(wall_time(call))
        if seconds is not None and len(times) >= MIN_REPEATS and time.perf_counter() - start >= seconds:
            break
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "flops": flops,
        "median_flops_per_s": flops / statistics.median(times),
        "best_flops_per_s": flops / min(times),
        "repeats": len(times),
    }


# --------------------------------------------------------------------------- the measured peak, cached

WARMUP_S = 0.25  # untimed calls first
MEASURE_S = 1.0  # timed calls stop after this long, once MIN_REPEATS ran
MIN_REPEATS = 5
MAX_REPEATS = 100
METHOD = (
    f"fastest of {MIN_REPEATS} to {MAX_REPEATS} timed calls within {MEASURE_S:g} s "
    f"after {WARMUP_S:g} s of warm-up"
)

PEAK_FOLDER = "fnn-peak"  # in compile_cache.default_dir()
PEAK_FILE = "peaks.json"
FORMAT = "fnn-peak-1"
MAX_ENTRIES = 64  # machine identities kept in the file (the oldest measurements go first)
MAX_BYTES = 1 << 20  # a bigger file is no file of ours

_memo: dict[tuple[str, str], dict] = {}  # (file, identity key) -> peak_info's answer, in this process


def measure_peak(device, dtype_name: str, n: int) -> float:
    """The matmul peak TFLOP/s of ``device``, measured now (``matmul_peak``): the fastest of ``MIN_REPEATS``
    to ``MAX_REPEATS`` timed ``(n, n) @ (n, n)`` within ``MEASURE_S`` seconds, after ``WARMUP_S`` seconds of
    untimed calls; about 1.5 s in all. ``peak_info`` calls it through its ``measure`` argument (a test
    passes, or monkeypatches, a fake one)."""
    found = matmul_peak(
        device, jnp.dtype(dtype_name), n, repeats=MAX_REPEATS, seconds=MEASURE_S, warmup_s=WARMUP_S
    )
    return found["best_flops_per_s"] / 1e12


def peak_cache_path() -> str:
    """The file of measured peaks: ``fnn-peak/peaks.json`` in ``compile_cache.default_dir()``."""
    return os.path.join(os.path.abspath(compile_cache.default_dir()), PEAK_FOLDER, PEAK_FILE)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name: ``/proc/cpuinfo``'s (Linux), else ``platform.processor()``, else the machine."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, sep, value = line.partition(":")
                if sep and value.strip() and name.strip().lower() in ("model name", "cpu model", "hardware"):
                    return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine_identity(device, dtype_name: str, n: int) -> dict:
    """What a measured peak holds for: the machine, XLA's flags, the libraries' versions, the dtype, ``n``."""
    return {
        "platform": str(getattr(device, "platform", "?")),
        "device_kind": str(getattr(device, "device_kind", "?")),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "dtype": dtype_name,
        "n": n,
    }


def identity_key(identity: dict) -> str:
    """The file's key of an identity: a digest of its JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def read_cached_peak(path: str, identity: dict) -> dict | None:
    """The entry of ``identity`` in the file at ``path`` (``tflops``, ``measured_at``, ``method``,
    ``identity``); ``None`` where there is none, or where the file or the entry cannot be trusted."""
    entry = _read_entries(path).get(identity_key(identity))
    return entry if entry is not None and entry["identity"] == identity else None


def write_cached_peak(
    path: str, identity: dict, tflops: float, measured_at: str, method: str = METHOD
) -> None:
    """Add ``identity``'s measurement to the file at ``path``, keeping the other valid entries; atomically,
    folder 0700, file 0600. ``OSError`` where it cannot be written."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # fnn's own folder; an OSError where it is not ours
    entries = _read_entries(path)
    entries[identity_key(identity)] = {
        "identity": identity,
        "tflops": float(tflops),
        "measured_at": measured_at,
        "method": method,
    }
    newest = sorted(entries.items(), key=lambda item: item[1]["measured_at"], reverse=True)[:MAX_ENTRIES]
    data = json.dumps({"format": FORMAT, "entries": dict(newest)}, indent=1, sort_keys=True, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".peaks-", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_entries(path: str) -> dict:
    """The file's valid entries by key; ``{}`` for a file that is absent, unreadable, damaged, too big, of
    another format, not the user's own or writable by others."""
    try:
        with open(path, "rb") as fh:
            if not _trusted(os.fstat(fh.fileno())):
                return {}
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return {}
    if len(data) > MAX_BYTES:
        return {}
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    entries = document.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {key: entry for key, entry in entries.items() if _valid_entry(key, entry)}


def _trusted(st: os.stat_result) -> bool:
    """A plain file, and (POSIX) the user's own, writable by no one else."""
    if not stat.S_ISREG(st.st_mode):
        return False
    if hasattr(os, "getuid"):
        return st.st_uid == os.getuid() and not st.st_mode & 0o022
    return True


def _valid_entry(key, entry) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("identity"), dict):
        return False
    if identity_key(entry["identity"]) != key or not _positive(entry.get("tflops")):
        return False
    if not isinstance(entry.get("method"), str) or not isinstance(entry.get("measured_at"), str):
        return False
    try:
        datetime.datetime.fromisoformat(entry["measured_at"])
    except ValueError:
        return False
    return True


def _positive(value) -> bool:
    """A real number (not a bool), finite and above 0."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def peak_tflops(
    device, precision: str | None = None, n: int = 1024, measure: Callable | None = None
) -> tuple[float | None, str]:
    """``(peak TFLOP/s, source)`` for ``device`` under ``precision``: the table, else measured once per
    machine and cached (``peak_info``; the module docstring). The peak is ``None`` only where measuring
    failed, and the source says why."""
    found = peak_info(device, precision, n, measure)
    return found["peak_tflops"], found["peak_source"]


def peak_info(device, precision: str | None = None, n: int = 1024, measure: Callable | None = None) -> dict:
    """``peak_tflops``, ``peak_source`` and ``peak_measurement`` (``None`` for a table value; else ``n``,
    ``dtype``, ``tflops``, ``method``, ``measured_at``, ``identity``, ``key``, ``cache`` (the file),
    ``cached`` (whether the file holds it) and ``from_cache`` (whether it was read from there)).

    ``measure(device, dtype_name, n) -> TFLOP/s`` measures the peak on a miss (default ``measure_peak``).
    Once found, a process keeps the answer for the same file and identity."""
    kind = str(getattr(device, "device_kind", ""))
    found = table_peak(kind, precision)
    if found is not None:
        return {
            "peak_tflops": found,
            "peak_source": f"table: {kind} {precision or 'fp32'} dense",
            "peak_measurement": None,
        }
    dtype = "bfloat16" if precision == "bf16" else "float32"
    identity = machine_identity(device, dtype, n)
    path = peak_cache_path()
    memo = (path, identity_key(identity))
    if memo not in _memo:
        _memo[memo] = _measured_peak(device, identity, path, measure or measure_peak)
    answer = dict(_memo[memo])
    if answer["peak_measurement"] is not None:
        answer["peak_measurement"] = dict(answer["peak_measurement"])
    return answer


def _measured_peak(device, identity: dict, path: str, measure: Callable) -> dict:
    """``peak_info``'s answer from the file at ``path``, else measured and written there."""
    n, dtype = identity["n"], identity["dtype"]
    on = identity["cpu"] if identity["platform"] == "cpu" else identity["device_kind"]
    what = f"{n}x{n} {dtype} matmul on {identity['platform']} ({on})"
    entry = read_cached_peak(path, identity)
    if entry is not None:  # (its identity equals this one; this one's keys in machine_identity's order)
        entry = {**entry, "identity": identity}
        return _described(what, entry, path, cached=True, from_cache=True, where=f"cached in {path}")
    try:
        tflops = float(measure(device, dtype, n))
    except Exception as err:  # a readout: training goes on without it
        return _no_peak(f"measuring the {what} failed ({type(err).__name__}: {err})")
    if not _positive(tflops):
        return _no_peak(f"the {what} measured {tflops!r} TFLOP/s, no positive finite rate")
    entry = {
        "identity": identity,
        "tflops": tflops,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": METHOD,
    }
    try:
        write_cached_peak(path, identity, tflops, entry["measured_at"], entry["method"])
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        return _described(what, entry, path, cached=False, from_cache=False, where=f"not cached ({reason})")
    return _described(what, entry, path, cached=True, from_cache=False, where=f"cached in {path}")


def _described(what: str, entry: dict, path: str, cached: bool, from_cache: bool, where: str) -> dict:
    identity = entry["identity"]
    text = ", ".join(f"{k}={v!r}" for k, v in identity.items())
    return {
        "peak_tflops": entry["tflops"],
        "peak_source": (
            f"measured: {what}, {entry['method']}, measured {entry['measured_at']}, {where} "
            f"under identity {identity_key(identity)} ({text})"
        ),
        "peak_measurement": {
            "n": identity["n"],
            "dtype": identity["dtype"],
            "tflops": entry["tflops"],
            "method": entry["method"],
            "measured_at": entry["measured_at"],
            "identity": dict(identity),
            "key": identity_key(identity),
            "cache": path,
            "cached": cached,
            "from_cache": from_cache,
        },
    }


def _no_peak(why: str) -> dict:
    return {"peak_tflops": None, "peak_source": f"none: {why}", "peak_measurement": None}


# --------------------------------------------------------------------------- rates, refused when impossible


def refusal(flops_per_step, steps, seconds, peak: float | None = None) -> str | None:
    """Why ``steps`` steps of ``flops_per_step`` FLOPs in ``seconds`` cannot be a real timing; ``None``
    where they can: a time that is not a finite positive number, or one in which the FLOPs would run faster
    than ``peak`` TFLOP/s (when a peak is known)."""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return f"the time {seconds!r} is no number of seconds"
    if not math.isfinite(seconds) or seconds <= 0:
        return f"the time {seconds!r} s is not a positive finite number"
    tflops = flops_per_step * steps / seconds / 1e12
    if not math.isfinite(tflops) or tflops < 0:
        return f"{flops_per_step!r} FLOPs x {steps!r} steps in {seconds!r} s is no rate"
    if _positive(peak) and tflops > peak:
        return (
            f"{tflops:.4g} TFLOP/s ({flops_per_step:.4g} FLOPs x {steps} steps in {seconds:.4g} s) would be "
            f"{tflops / peak:.1%} of the peak {peak:.4g} TFLOP/s: that time cannot be the work's"
        )
    return None


def mfu(tflops: float | None, peak: float | None) -> float | None:
    """``tflops / peak``: ``None`` unless both are positive finite numbers and the ratio is in (0, 1]."""
    if not (_positive(tflops) and _positive(peak)):
        return None
    ratio = tflops / peak
    return ratio if 0 < ratio <= 1 else None


def rates(flops_per_step: int, steps: int, batch: int, seconds: float, peak: float | None = None) -> dict:
    """``samples_per_s``, ``tflops`` (achieved) and ``mfu`` (``None`` without a peak); all three ``None``
    where the timing is impossible (``refusal``: a time not positive or not finite, or faster than the
    peak)."""
    if refusal(flops_per_step, steps, seconds, peak) is not None:
        return {"samples_per_s": None, "tflops": None, "mfu": None}
    tflops = flops_per_step * steps / seconds / 1e12
    return {"samples_per_s": steps * batch / seconds, "tflops": tflops, "mfu": mfu(tflops, peak)}


def speed_summary(history, speed: dict, cfg) -> dict:
    """Throughput for metrics.json: the epochs after the first (which includes compiling), if any.

    ``history``: the run's ``fnn.History``; ``speed``: the run's constants (``steps_per_epoch``,
    ``flops_per_step``, ``batch``, ``devices``, ``device_kind``, ``peak_tflops``, ``peak_source``, and
    optionally ``peak_measurement``); ``cfg``: its settings (``precision``). ``mfu`` is never above 1:
    where the time is impossible (``refusal``) ``samples_per_s``, ``tflops`` and ``mfu`` are ``None``, and
    ``mfu_note`` says why (also where there is no peak); ``None`` when ``mfu`` is reported."""
    times = history.epoch_time_s[1:] or history.epoch_time_s
    numbers = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times)
    seconds = math.fsum(times) if numbers else math.nan
    steps = speed["steps_per_epoch"] * len(times)
    flops, peak = speed["flops_per_step"], speed["peak_tflops"]
    speeds = rates(flops, steps, speed["batch"], seconds, peak)
    note = refusal(flops, steps, seconds, peak)
    if note is None and speeds["mfu"] is None:
        note = (
            f"no peak TFLOP/s for this device ({speed['peak_source']})"
            if not _positive(peak)
            else f"{speeds['tflops']!r} TFLOP/s is no fraction of the peak in (0, 1]"
        )
    return {
        "precision": cfg.get("precision") or "fp32",
        "devices": speed["devices"],
        "device_kind": speed["device_kind"],
        "samples_per_s": speeds["samples_per_s"],
        "tflops": speeds["tflops"],
        "mfu": speeds["mfu"],
        "mfu_note": note,
        "peak_tflops": peak,
        "peak_source": speed["peak_source"],
        "peak_measurement": speed.get("peak_measurement"),
        "flops_per_step": flops,
        "flops_method": "analytic matmul FLOPs 6 B sum n_in n_out - 2 B n_0 n_1 (fnn.scale.throughput)",
        "throughput_epochs": "all but the first (compile)"
        if len(history) > 1
        else "the only epoch (with compile)",
    }
