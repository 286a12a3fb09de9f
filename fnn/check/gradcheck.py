"""``check_gradients``: backprop against autodiff and finite differences.

For every layer and leaf (``W``, ``b``) the report gives, for each reference
``r`` and backprop's gradient ``g``:

    max_abs = max_i |g_i - r_i|
    rel     = max_abs / max(max_i |g_i|, max_i |r_i|, tiny)
    tiny    = FLOOR * max(largest |g_i| over all leaves, |L|)

``rel`` is the elementwise ``|a - b| / max(|a|, |b|, tiny)`` taken at the scale
of the whole leaf: an entry that is zero up to rounding (a sum of terms that
cancel) would make the elementwise ratio meaningless, while its error relative
to the leaf's largest entry stays meaningful. ``tiny`` keeps a leaf whose
gradient has vanished (deep sigmoid stacks) or is exactly zero (dead relu
units) from being judged on rounding noise alone: finite differences carry an
absolute error of about ``eps_mach^(2/3) |L|`` whatever the size of the leaf.
With ``FLOOR = 1e-2`` a leaf that is wrong by its own size still shows
``rel >= 1e-2`` for any leaf down to 1e-2 of that size, far above every tolerance.

The check passes when every ``rel`` is within the tolerance for its dtype:

==========  ========  =====================  =====================
dtype       autodiff  finite diff. central   finite diff. forward
==========  ========  =====================  =====================
float64     1e-12     1e-7                   1e-5
float32     1e-5      5e-2                   2e-1
==========  ========  =====================  =====================

The float32 finite-difference bounds are loose because a float32 loss carries
only about 7 digits, and a difference quotient loses half or more of them.
Run the check in float64 (the default) for a meaningful verdict.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fnn.check.autodiff import autodiff
from fnn.check.finite_differences import finite_differences
from fnn.core import validation
from fnn.core.backprop import backprop
from fnn.core.protocol import Network

FLOOR = 1e-2
TOLERANCES = {
    "float64": {"autodiff": 1e-12, "central": 1e-7, "forward": 1e-5, "five_point": 1e-7},
    "float32": {"autodiff": 1e-5, "central": 5e-2, "forward": 2e-1, "five_point": 5e-2},
}


@dataclasses.dataclass(frozen=True)
class Row:
    layer: int
    leaf: str
    shape: tuple[int, ...]
    scale: float  # max |backprop gradient| in this leaf
    reference: str  # "autodiff" or "finite_differences"
    max_abs: float
    rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.rel <= self.tolerance


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """Per-leaf errors of backprop against each reference, with a verdict."""

    rows: tuple[Row, ...]
    dtype: str
    loss: float
    what: str = "gradient"  # what was checked: "gradient", or a curvature product (fnn.check_curvature)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def worst(self, reference: str) -> Row:
        """The row with the largest ``rel`` against ``reference``."""
        return max((r for r in self.rows if r.reference == reference), key=lambda r: r.rel)

    def __str__(self) -> str:
        head = (
            f"{'layer':>5} {'leaf':<4} {'shape':<12} {'max|g|':>10} {'reference':<18} {'max abs err':>12} "
            f"{'rel err':>10} {'tol':>8}  ok"
        )
        lines = [f"{self.what} check in {self.dtype}, loss = {self.loss:.6g}", head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.layer:>5} {r.leaf:<4} {str(r.shape):<12} {r.scale:>10.3e} {r.reference:<18} "
                f"{r.max_abs:>12.3e} {r.rel:>10.3e} {r.tolerance:>8.0e}  {'yes' if r.passed else 'NO'}"
            )
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


def gradient_floor(grads, loss) -> float:
    """``tiny = FLOOR * max(largest |g_i| over all leaves, |L|)``, never below the dtype's tiny."""
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(grads)]
    largest = max([float(np.max(np.abs(leaf))) for leaf in leaves] + [abs(float(loss))])
    return max(FLOOR * largest, float(np.finfo(leaves[0].dtype).tiny))


def compare(g, r, tiny: float) -> tuple[float, float]:
    """``(max_abs, rel)`` of one leaf, as defined in the module docstring."""
    g, r = np.asarray(g), np.asarray(r)
    max_abs = float(np.max(np.abs(g - r)))
    return max_abs, max_abs / max(float(np.max(np.abs(g))), float(np.max(np.abs(r))), tiny)


def check_gradients(
    net: Network,
    params,
    x,
    y,
    *,
    dtype="float64",
    eps: float | None = None,
    scheme: str = "central",
    key=None,
) -> GradientReport:
    """Compare ``fnn.backprop`` with ``fnn.autodiff`` and ``fnn.finite_differences``.

    Args:
      dtype: ``"float64"`` (default; enables 64-bit JAX for the duration of the
        check) or ``"float32"``. Params, x and y are cast to it.
      eps: passed to ``fnn.finite_differences``.
      scheme: passed to ``fnn.finite_differences``.
      key: check with dropout on, the masks drawn from ``key`` (the same for all three).

    Returns a ``GradientReport``: ``print(report)`` shows a table, ``report.passed``
    the verdict against ``TOLERANCES``.
    """
    dtype = checked_dtype(dtype)
    validation.check_inputs(net, params, x, y)
    with jax.enable_x64(dtype == "float64"):
        params, x, y = cast(dtype, params, x, y)
        loss, bp = backprop(net, params, x, y, key=key)
        references = {
            "autodiff": autodiff(net, params, x, y, key=key)[1],
            "finite_differences": finite_differences(net, params, x, y, eps=eps, scheme=scheme, key=key),
        }
        tolerances = {
            "autodiff": TOLERANCES[dtype]["autodiff"],
            "finite_differences": TOLERANCES[dtype][scheme],
        }
        rows = report_rows(net, bp, references, gradient_floor(bp, loss), tolerances)
        return GradientReport(rows, dtype, float(loss))


def checked_dtype(dtype) -> str:
    """``"float32"`` or ``"float64"`` from a name or a dtype (``ValueError`` else)."""
    dtype = jnp.dtype(dtype).name if dtype in ("float32", "float64", jnp.float32, jnp.float64) else dtype
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dtype


def cast(dtype: str, params, x, y):
    """Params, and float ``x`` and ``y``, in ``dtype`` (integer labels stay as they are)."""
    to = lambda a: jnp.asarray(a, dtype)
    floating = lambda a: jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
    return jax.tree_util.tree_map(to, params), to(x) if floating(x) else x, to(y) if floating(y) else y


def report_rows(net, values, references: dict, tiny: float, tolerances: dict) -> tuple[Row, ...]:
    """One ``Row`` per leaf of ``values`` and reference, judged against ``tolerances[reference]``."""
    rows = []
    for layer, leaf, g, found in _leaves(net, values, references):
        for ref, r in found.items():
            max_abs, rel = compare(g, r, tiny)
            rows.append(
                Row(layer, leaf, g.shape, float(np.max(np.abs(g))), ref, max_abs, rel, tolerances[ref])
            )
    return tuple(rows)


def _leaves(net, grads, references: dict):
    """``(group index, leaf name, g, {reference: r})`` for every leaf of each group of ``net``
    (an MLP's groups are its layers, with leaves ``W`` and ``b``)."""
    grouped = {name: net.groups(tree) for name, tree in {None: grads, **references}.items()}
    for layer in range(len(grouped[None])):
        flat = {
            name: jax.tree_util.tree_flatten_with_path(groups[layer][1])[0]
            for name, groups in grouped.items()
        }
        for i, (path, g) in enumerate(flat[None]):
            yield (
                layer,
                _leaf_name(path),
                np.asarray(g),
                {ref: np.asarray(flat[ref][i][1]) for ref in references},
            )


def _leaf_name(path) -> str:
    """``['W']`` -> ``W``, ``['W']['x']`` -> ``W/x``."""
    return "/".join(str(getattr(k, "key", k)) for k in path)
