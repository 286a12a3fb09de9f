"""Shared test helpers: data for a network, and gradient comparisons."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fnn.check import gradcheck
from fnn.core import activations, losses

HIDDEN = tuple(n for n in activations.BUILTIN_ACTIVATIONS if activations.get(n).hidden_ok)
OUTPUTS = activations.BUILTIN_ACTIVATIONS
PAIRS = tuple(
    [(out, loss) for out in OUTPUTS for loss in losses.LOSSES]
    + [(out, loss) for loss, out in losses.FUSED_ONLY.items()]
)


# XLA options for test programs that are compiled once and run once: backend
# optimisation off cuts their compile time, which dominates such tests.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def targets(key, loss: str, batch: int, n_out: int, dtype, labels: bool = True):
    """Targets that suit ``loss``: labels or one-hot rows, probabilities, counts, or reals."""
    if loss == "cross_entropy":
        y = jax.random.randint(key, (batch,), 0, n_out)
        return y if labels else jax.nn.one_hot(y, n_out, dtype=dtype)
    if loss == "bce":
        return jax.random.uniform(key, (batch, n_out), dtype)
    if loss == "poisson":
        return jax.random.poisson(key, 1.5, (batch, n_out)).astype(dtype)
    return 0.5 * jax.random.normal(key, (batch, n_out), dtype)


def host_targets(rng, loss: str, batch: int, n_out: int):
    """NumPy targets that suit ``loss``, from the generator ``rng``: labels, probabilities, counts or reals."""
    if loss == "cross_entropy":
        return rng.integers(0, n_out, batch)
    if loss == "bce":
        return rng.uniform(0, 1, (batch, n_out))
    if loss == "poisson":
        return rng.poisson(1.5, (batch, n_out)).astype(float)
    return 0.5 * rng.normal(size=(batch, n_out))


def worst_rel_error(grads, refs, loss) -> float:
    """The largest per-leaf ``rel`` of fnn.check_gradients (see fnn/check/gradcheck.py)."""
    tiny = gradcheck.gradient_floor(grads, loss)
    pairs = zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(refs))
    return max(gradcheck.compare(g, r, tiny)[1] for g, r in pairs)


def leaf_norm_error(got, ref) -> float:
    """``||g - r|| / ||r||``: the error relative to the leaf's norm."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), np.finfo(np.float64).tiny))


def worst_norm_error(grads, refs) -> float:
    return max(leaf_norm_error(g, r) for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(refs)))


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str, folder: Path = BENCHMARKS):
    """The script ``folder/name.py`` as a module, to call its ``main(argv)`` in the test process."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
