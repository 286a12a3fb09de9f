"""Data parallelism on JAX's own sharding: one mesh axis ``data`` over devices and hosts.

fnn does not write collectives. A training step is one program over global
arrays, and XLA's SPMD partitioner splits it:

* each minibatch is sharded along its batch axis, ``NamedSharding(mesh, P("data"))``:
  device ``d`` of ``D`` holds rows ``d B/D .. (d+1) B/D`` of the ``B`` examples;
* params and optimizer state are replicated, ``P()``;
* the gradient ``dL/dW_l = a_{l-1}^T delta_l`` sums over the batch axis, so
  XLA computes each device's partial sum and inserts the all-reduce itself;
  the loss's mean over the batch is reduced the same way.

Every device therefore applies the same update to the same params, and the
run is the single-device run up to the order of floating-point additions.
The global batch must divide by the number of devices (``check_batch``), so
that every device gets the same number of examples.

Several hosts (``jax.distributed.initialize``, ``initialize`` here) form one
mesh over all their devices. Each process loads the whole dataset
deterministically, computes the same epoch permutation, and hands JAX only
its own rows of each global batch (``jax.make_array_from_process_local_data``).
Only process 0 writes files (``is_writer``).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnn.core import validation

AXIS = "data"


def initialize(coordinator: str, num_processes: int, process_id: int, platform: str | None = None) -> None:
    """Join a multi-process run: ``jax.distributed.initialize`` before any other JAX call.

    On CPU the cross-process collectives use gloo (JAX's CPU collectives
    implementation that works over TCP without MPI).
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process-id must be in 0..{num_processes - 1}, got {process_id} "
            f"(with --num-processes {num_processes})"
        )
    if platform in (None, "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def multi_process() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes checkpoints and metrics (process 0 only)."""
    return jax.process_index() == 0


def select_devices(kind: str | None = None, count: int | None = None) -> list:
    """The devices a run uses: ``count`` of this process's devices of ``kind`` (default: all).

    In a multi-process run every process takes its local devices; the mesh is
    then made of all processes' devices (``global_devices``).
    """
    try:
        devices = jax.local_devices(backend=kind) if kind is not None else jax.local_devices()
    except RuntimeError:
        devices = []
    if not devices:
        raise ValueError(f"no {kind} device is available to JAX (backends: {_platforms()})")
    if count is None:
        return devices
    count = validation.check_positive_int("devices", count)
    if count > len(devices):
        raise ValueError(
            f"asked for {count} devices but this process has {len(devices)} {devices[0].platform} "
            f"device(s); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N"
        )
    return devices[:count]


def _platforms() -> str:
    try:
        return ", ".join(sorted({d.platform for d in jax.devices()}))
    except RuntimeError:
        return "none"


def global_devices(local: list) -> list:
    """All processes' devices of ``local``'s platform, ``local`` itself in a single process."""
    if not multi_process():
        return list(local)
    per_process = len(local)
    out = []
    for p in range(jax.process_count()):
        mine = [d for d in jax.devices(local[0].platform) if d.process_index == p]
        out.extend(mine[:per_process])
    return out


def make_mesh(devices) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices``."""
    return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """A minibatch ``(B, ...)``: rows split over the ``data`` axis."""
    return NamedSharding(mesh, P(AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """An epoch of minibatches ``(steps, B, ...)``: the batch axis (1) split over ``data``."""
    return NamedSharding(mesh, P(None, AXIS))


def check_batch(batch: int, n_devices: int) -> None:
    """Every device must get the same number of examples: ``batch % n_devices == 0``."""
    if batch % n_devices:
        lower = batch - batch % n_devices
        raise ValueError(
            f"batch size {batch} does not divide over {n_devices} devices; use a multiple of {n_devices} "
            f"(e.g. {lower or n_devices} or {lower + n_devices}) or fewer devices"
        )


def put_global(tree, sharding: NamedSharding):
    """Place ``tree`` (the same values in every process) on the mesh with ``sharding``.

    A single process uses ``jax.device_put``; several build each global array
    from the rows this process's devices hold.
    """

    def one(a):
        if not multi_process():
            return jax.device_put(a, sharding)
        if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(a)), impl=jax.random.key_impl(a))
        a = np.asarray(a)
        lo, hi = local_rows(sharding, a.shape)
        local = a if lo is None else a[(slice(None),) * _axis(sharding) + (slice(lo, hi),)]
        return jax.make_array_from_process_local_data(sharding, local, a.shape)

    return jax.tree_util.tree_map(one, tree)


def _axis(sharding: NamedSharding):
    """The array axis split over ``data``, or ``None`` for a replicated sharding."""
    for i, name in enumerate(sharding.spec):
        if name == AXIS:
            return i
    return None


def local_rows(sharding: NamedSharding, shape) -> tuple[int | None, int | None]:
    """The range ``[lo, hi)`` of the sharded axis that this process's devices hold (``None``: all)."""
    axis = _axis(sharding)
    if axis is None:
        return None, None
    spans = [idx[axis] for idx in sharding.addressable_devices_indices_map(tuple(shape)).values()]
    lo = min(s.start or 0 for s in spans)
    hi = max(shape[axis] if s.stop is None else s.stop for s in spans)
    return lo, hi


def to_local(tree):
    """Replicated global arrays as this process's ordinary arrays (a single-device copy)."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a.addressable_data(0)
        return a

    return jax.tree_util.tree_map(one, tree)


def describe(devices) -> str:
    """``"4 cpu devices"``, ``"2 processes x 1 cpu device"``."""
    kind = devices[0].platform
    n = len(devices)
    if multi_process():
        per = n // jax.process_count()
        return f"{jax.process_count()} processes x {per} {kind} device{'s' if per > 1 else ''}"
    return f"{n} {kind} device{'s' if n > 1 else ''}"


def fits_on_device(nbytes: int, device, fraction: float = 0.25) -> bool:
    """Whether a dataset of ``nbytes`` may live on ``device``: at most ``fraction`` of its memory.

    Devices that report no memory limit (CPU) hold the dataset in host RAM
    anyway, so it always "fits" there.
    """
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend implements memory_stats
        stats = None
    limit = (stats or {}).get("bytes_limit")
    return limit is None or nbytes <= fraction * limit or math.isinf(fraction)
