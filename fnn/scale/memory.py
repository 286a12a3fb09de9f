"""How many parameters a method holding P x P matrices can afford on a device.

Levenberg-Marquardt and Bayesian regularisation hold the Gauss-Newton matrix
``J^T J`` and its factorisation, BFGS its inverse-Hessian approximation: each
is P x P, so their memory grows as P^2 while every other method's grows as P.
The limit follows from the device's memory, not from a constant.
"""

from __future__ import annotations

import os

import jax
import numpy as np

# the share of the device's memory the P x P matrices may take: the rest is the
# data's, the Jacobian chunk's and XLA's
FRACTION = 0.5


def device_memory(device=None) -> int:
    """Bytes of memory of ``device`` (default: the first local device); the host's RAM for a CPU."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# P x P matrices each method holds at once: Levenberg-Marquardt J^T J, its damped
# copy and their LU factors (br: and the eigenvectors); BFGS the inverse Hessian
# and its update's rank-two terms
MATRICES = {"levenberg_marquardt": 3, "br": 4, "bfgs": 3}
# rows of the Jacobian the Gauss-Newton methods hold at once: a chunk of examples
# (fnn.optim.gauss_newton.normal_equations) has max(P, CHUNK_ROWS) rows
CHUNK_ROWS = 2048


def needed(method: str, n_params: int, dtype, matrices: int | None = None) -> int:
    """Bytes of ``method``'s P x P matrices (and Jacobian chunk) in ``dtype``; ``matrices``: how many a method
    not in ``MATRICES`` holds (``fnn.optimizers.Method.matrices``)."""
    rows = max(n_params, CHUNK_ROWS) if method != "bfgs" else 0
    count = MATRICES.get(method, matrices or 0)
    return np.dtype(dtype).itemsize * n_params * (count * n_params + rows)


def check(method: str, n_params: int, dtype, device=None, matrices: int | None = None) -> None:
    """``ValueError`` naming the memory ``method`` would need when it exceeds ``FRACTION`` of the device's."""
    need, have = needed(method, n_params, dtype, matrices), device_memory(device)
    if need > FRACTION * have:
        gib = 2.0**30
        raise ValueError(
            f"{method} holds {MATRICES.get(method, matrices)} P x P {np.dtype(dtype).name} matrices: "
            f"at P = {n_params:,} parameters that is {need / gib:.1f} GiB, more than {FRACTION:.0%} of the "
            f"device's {have / gib:.1f} GiB ({device or jax.local_devices()[0]}); use a smaller network, "
            f"or scg, cgb, cgf, cgp, oss or lbfgs, whose memory grows as P"
        )
