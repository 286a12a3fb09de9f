"""Which device a run uses, and a description of the machine for the results."""

from __future__ import annotations

import os
import platform

import jax

DEVICE_KINDS = ("cpu", "gpu", "auto")


class DeviceUnavailable(RuntimeError):
    """The requested device kind does not exist on this machine."""


def resolve_kind(kind: str) -> str:
    """``auto`` is ``gpu`` when JAX sees a GPU, else ``cpu``; other kinds are returned as given."""
    if kind != "auto":
        return kind
    try:
        return "gpu" if jax.devices("gpu") else "cpu"
    except RuntimeError:
        return "cpu"


def select_device(kind: str):
    """The first JAX device of ``kind`` (``cpu``, ``gpu`` or ``auto``), or ``DeviceUnavailable``."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device {kind!r}; expected one of {list(DEVICE_KINDS)}")
    kind = resolve_kind(kind)
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        devices = []
    if not devices:
        raise DeviceUnavailable(f"no {kind} device is available to JAX (backends: {_backends()})")
    return devices[0]


def _backends() -> str:
    try:
        return ", ".join(sorted({d.platform for d in jax.devices()}))
    except RuntimeError:
        return "none"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """Cores this process may run on (its affinity, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def describe(device) -> dict:
    """Everything needed to tell results from different machines apart."""
    import jaxlib

    return {
        "device": device.platform,
        "device_kind": device.device_kind,
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "torch_version": torch_version(),
    }
