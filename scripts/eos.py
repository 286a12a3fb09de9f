"""Gradient descent at the edge of stability (Cohen et al. 2021) with fnn's exact Hessian-vector products
(``scripts/edge_of_stability.py``).

The claim. Full-batch gradient descent ``w <- w - eta grad L(w)`` on a
quadratic is stable only while the top Hessian eigenvalue (the *sharpness*)
is below ``2 / eta``. Cohen, Kaur, Li, Kolter & Talwalkar (ICLR 2021,
"Gradient Descent on Neural Networks Typically Occurs at the Edge of
Stability") find that on neural networks the sharpness first rises
("progressive sharpening") until it reaches about ``2 / eta``, then hovers
there instead of passing it, while the training loss keeps falling over long
time scales, but not monotonically. The classical picture (choose ``eta``
below ``2 / sharpness``) does not describe this phase.

The method. For each problem (a digits subset with one-hot targets and mse,
one of Cohen et al.'s two losses and the one under which they see the
stronger sharpening; and a 1-D regression) and each ``eta``, one network
from one init is trained by full-batch GD, every step
``fnn.backprop``'s gradient. Every ``every`` steps the sharpness is measured:
``fnn.curvature`` runs the forward and backward passes once, and Lanczos
iteration (``lanczos``) over its exact ``c.hvp`` (Pearlmutter's R-operator)
gives the top eigenvalue, the algebraically largest, so a large negative
eigenvalue cannot stand in for it as it could in power iteration. Lanczos is
warm-started from the previous top eigenvector and restarted from its Ritz
vector until ``||H u - theta u|| <= RESIDUAL_TOL |theta|`` (each run keeps its
residuals). The GD steps and the measurement are one ``jax.jit``-compiled
program per segment of ``every`` steps (``lax.scan`` and ``lax.fori_loop``
inside). Training and eigenvalues are in float32.

``summarise`` turns a run into the numbers the claim is about: the largest
sharpness before and after it first reaches ``2 / eta`` (``REACHED`` of it),
the fraction of the measurements after that within ``BAND`` of ``2 / eta``,
whether the loss still fell from there to the end, and how many of those
steps raised it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnn.core.backprop import backprop
from fnn.core.curvature import curvature
from fnn.core.initializers import init
from fnn.core.mlp import MLP
from scripts.common import digits_batch, pyplot

Array = jax.Array

BAND = 0.15  # "at the edge": sharpness within +-15% of 2/eta
REACHED = 0.95  # the sharpness "reaches" 2/eta when it first passes 95% of it
RESIDUAL_TOL = 1e-3  # ||H u - theta u|| / |theta|: theta then lies within 0.1% of an eigenvalue of H
LANCZOS_STEPS = 20  # Krylov dimension of one Lanczos pass
MAX_RESTARTS = 5


class Problem(NamedTuple):
    """One training set and the network trained on it."""

    name: str
    net: MLP
    x: Array
    y: Array


def digits_problem(n: int = 1000, hidden=(64, 64), seed: int = 0) -> Problem:
    """``n`` standardised digits, one-hot targets, a tanh ``64-hidden-10`` with mse (identity output)."""
    x, labels = digits_batch(n, seed)
    net = MLP((64, *hidden, 10), activation="tanh", output="identity", loss="mse")
    return Problem(
        f"digits ({n} examples), tanh 64-{'-'.join(map(str, hidden))}-10, mse on one-hot",
        net,
        jnp.asarray(x),
        jax.nn.one_hot(labels, 10, dtype=jnp.float32),
    )


def sine_problem(n: int = 200, hidden=(64, 64)) -> Problem:
    """``y = sin(2x) + cos(5x) / 2`` at ``n`` evenly spaced ``x`` in ``[-3, 3]``, a tanh
    ``1-hidden-1`` with mse."""
    x = jnp.linspace(-3.0, 3.0, n, dtype=jnp.float32)[:, None]
    net = MLP((1, *hidden, 1), activation="tanh", output="identity", loss="mse")
    return Problem(
        f"sin(2x) + cos(5x)/2 ({n} points), tanh 1-{'-'.join(map(str, hidden))}-1, mse",
        net,
        x,
        jnp.sin(2 * x) + 0.5 * jnp.cos(5 * x),
    )


class Plan(NamedTuple):
    """A problem and its runs: ``eta = 2 / edge`` for each of ``edges``, ``steps`` steps each."""

    problem: Problem
    edges: tuple[float, ...]
    steps: int

    @property
    def etas(self) -> tuple[float, ...]:
        return tuple(2.0 / e for e in self.edges)


def plans(quick: bool = False) -> list[Plan]:
    """What ``scripts/edge_of_stability.py`` runs.

    The full run (about two and a half minutes on two cores): 1000 digits,
    whose sharpness falls from 12.4 at init to 8.7 by step 80 and then
    rises, with ``2/eta`` at 13, 15, 16 and 20 (above the sharpness at init,
    as in Cohen et al.), and the sine, sharpness 17 at init, with ``2/eta``
    at 20, 30, 45 and 80. The last of each is out of reach in the run's
    steps: a control, progressive sharpening alone.
    ``quick``: small nets and a thousand steps at most, for the tests.
    """
    if quick:
        return [
            Plan(digits_problem(100, (16, 16)), (10.0, 20.0), 100),
            Plan(sine_problem(100, (16, 16)), (10.0, 40.0), 1000),
        ]
    return [
        Plan(digits_problem(1000, (64, 64)), (13.0, 15.0, 16.0, 20.0), 12000),
        Plan(sine_problem(200, (64, 64)), (20.0, 30.0, 45.0, 80.0), 10000),
    ]


# --------------------------------------------------------------------------- the top eigenvalue


def lanczos(matvec, v0: Array, steps: int = LANCZOS_STEPS):
    """``(theta, u, residual)``: the largest Ritz value of ``steps`` Lanczos steps from ``v0`` and its unit
    Ritz vector, ``residual = ||matvec(u) - theta u||``, for a symmetric ``matvec`` on flat vectors.

    With ``V`` the orthonormal Krylov basis and ``T = V^T H V`` tridiagonal
    (``alpha`` on the diagonal, ``beta`` beside it), ``theta = max eig(T)``,
    ``u = V s``. Every new vector is orthogonalised against the whole basis,
    twice, since float32 loses orthogonality in a few steps otherwise. A basis
    exhausted before ``steps`` (``beta = 0``) leaves zero rows, which decouple.
    """
    n = v0.shape[0]
    basis = jnp.zeros((steps + 1, n), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha = jnp.zeros(steps, v0.dtype)
    beta = jnp.zeros(steps, v0.dtype)

    def step(j, state):
        basis, alpha, beta = state
        w = matvec(basis[j])
        a = basis[j] @ w
        w = w - basis.T @ (basis @ w)  # rows past j are zero: this is against v_0 .. v_j
        w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        return basis.at[j + 1].set(w / jnp.where(b > 0, b, 1)), alpha.at[j].set(a), beta.at[j].set(b)

    basis, alpha, beta = jax.lax.fori_loop(0, steps, step, (basis, alpha, beta))
    t = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, s = jnp.linalg.eigh(t)
    u = s[:, -1] @ basis[:steps]
    u = u / jnp.linalg.norm(u)
    return theta[-1], u, jnp.linalg.norm(matvec(u) - theta[-1] * u)


def top_eigenvalue(
    matvec, v0: Array, steps: int = LANCZOS_STEPS, tol: float = RESIDUAL_TOL, restarts: int = MAX_RESTARTS
):
    """``(theta, u, relative residual)``: ``lanczos`` from ``v0``, restarted from its Ritz vector (at most
    ``restarts`` more times) until ``||H u - theta u|| <= tol |theta|``. Jittable; ``v0`` the warm start."""

    def again(state):
        i, _, _, rel = state
        return (i <= restarts) & (rel > tol)

    def restart(state):
        i, _, u, _ = state
        theta, u, res = lanczos(matvec, u, steps)
        return i + 1, theta, u, res / jnp.abs(theta)

    inf = jnp.asarray(jnp.inf, v0.dtype)
    _, theta, u, rel = jax.lax.while_loop(again, restart, (0, inf, v0, inf))
    return theta, u, rel


def sharpness(net, params, x, y, v0: Array, steps: int = LANCZOS_STEPS):
    """``(lambda_max, eigenvector, relative residual)`` of the Hessian of the batch-mean loss at
    ``params``, by ``top_eigenvalue`` over ``fnn.curvature(...).hvp``; vectors are flat
    (``ravel_pytree`` of the params)."""
    c = curvature(net, params, x, y)
    unravel = ravel_pytree(params)[1]
    return top_eigenvalue(lambda u: ravel_pytree(c.hvp(unravel(u)))[0], v0, steps)


# --------------------------------------------------------------------------- gradient descent


def _segment(net, params, x, y, eta, v, every: int, lanczos_steps: int):
    """The sharpness at ``params``, then ``every`` GD steps: ``(params, v, lambda, residual, losses)``."""
    lam, v, res = sharpness(net, params, x, y, v, lanczos_steps)

    def step(p, _):
        loss, grads = backprop(net, p, x, y)
        return jax.tree_util.tree_map(lambda w, g: w - eta * g, p, grads), loss

    params, losses = jax.lax.scan(step, params, None, length=every)
    return params, v, lam, res, losses


_compiled_segment = jax.jit(_segment, static_argnames=("net", "every", "lanczos_steps"))


def gradient_descent(
    problem: Problem,
    eta: float,
    steps: int,
    *,
    every: int = 20,
    seed: int = 0,
    lanczos_steps: int = LANCZOS_STEPS,
) -> dict:
    """Full-batch GD at step size ``eta`` for ``steps`` steps from ``fnn.init(jax.random.key(seed))``.

    Returns plain lists: ``loss`` (``L(w_t)``, ``t = 0 .. steps - 1``), and at
    ``sharpness_step`` (every ``every`` steps from 0) the ``sharpness`` and its
    Lanczos ``residual`` (relative). A run whose loss stops being finite ends there.
    """
    if steps <= 0 or every <= 0 or steps % every:
        raise ValueError(f"steps ({steps}) must be a positive multiple of every ({every})")
    net, x, y = problem.net, problem.x, problem.y
    params = init(jax.random.key(seed), net)
    v = jax.random.normal(jax.random.key(seed + 1), ravel_pytree(params)[0].shape, jnp.float32)
    loss, at, lam, res = [], [], [], []
    for start in range(0, steps, every):
        params, v, s, r, losses = _compiled_segment(
            net, params, x, y, jnp.float32(eta), v, every, lanczos_steps
        )
        at.append(start)
        lam.append(float(s))
        res.append(float(r))
        loss.extend(np.asarray(losses, np.float64).tolist())
        if not np.all(np.isfinite(losses)):
            break
    return {
        "problem": problem.name,
        "eta": eta,
        "steps": len(loss),
        "every": every,
        "loss": loss,
        "sharpness_step": at,
        "sharpness": lam,
        "residual": res,
    }


def edge_of_stability(
    problem: Problem, etas, steps: int, *, every: int = 20, seed: int = 0, progress=None
) -> list[dict]:
    """``gradient_descent`` at each of ``etas`` from the same init; ``progress(run)`` after each if given."""
    runs = []
    for eta in etas:
        runs.append(gradient_descent(problem, eta, steps, every=every, seed=seed))
        if progress:
            progress(runs[-1])
    return runs


# --------------------------------------------------------------------------- what the runs say


def summarise(run: dict, band: float = BAND, reached: float = REACHED) -> dict:
    """The claim's numbers for one run (``None`` where the sharpness never reached ``2 / eta``).

    ``reached_step``: the first measurement with sharpness ``>= reached * 2/eta``
    (after the first below it, for a sharpness that starts above);
    ``max_before`` / ``max_after``: the largest sharpness before it and from it
    on, also as a ratio to ``2/eta``; ``frac_in_band``: the fraction of the
    measurements from it on within ``(1 +- band) 2/eta``; ``loss_fell``: the
    last loss below the loss there; ``loss_rises``: the number of steps from
    there whose loss exceeds the step before's (non-monotone when > 0).
    """
    edge = 2.0 / run["eta"]
    lam, at, loss = np.asarray(run["sharpness"]), np.asarray(run["sharpness_step"]), np.asarray(run["loss"])
    below = np.flatnonzero(lam < reached * edge)
    # a sharpness that starts above 2/eta comes down first
    first_below = int(below[0]) if len(below) else len(lam)
    hit = first_below + np.flatnonzero(lam[first_below:] >= reached * edge)
    out = {
        "problem": run["problem"],
        "eta": run["eta"],
        "two_over_eta": edge,
        "steps": run["steps"],
        "sharpness_init": float(lam[0]),
        "sharpness_final": float(lam[-1]),
        "loss_init": float(loss[0]),
        "loss_final": float(loss[-1]),
        "max_residual": float(np.max(run["residual"])),
        "diverged": not bool(np.all(np.isfinite(loss))),
    }
    if len(hit) == 0:
        return {
            **out,
            "reached_step": None,
            "max_before": float(lam.max()),
            "max_after": None,
            "max_before_ratio": float(lam.max() / edge),
            "max_after_ratio": None,
            "frac_in_band": None,
            "loss_fell": None,
            "loss_rises": None,
        }
    i = int(hit[0])
    step = int(at[i])
    after = lam[i:]
    tail = loss[step:]
    before = float(lam[:i].max())  # i > 0: lam[first_below] is below
    return {
        **out,
        "reached_step": step,
        "max_before": before,
        "max_before_ratio": before / edge,
        "max_after": float(after.max()),
        "max_after_ratio": float(after.max() / edge),
        "frac_in_band": float(np.mean(np.abs(after / edge - 1) <= band)),
        "loss_fell": bool(tail[-1] < tail[0]),
        "loss_rises": int(np.sum(np.diff(tail) > 0)),
    }


def curves(run: dict, digits: int = 5) -> dict:
    """``run`` at its sharpness measurements only, to ``digits`` significant digits: the loss there, not at
    every step, and the largest Lanczos residual; a results file's share of it."""
    keep = lambda v: float(f"{v:.{digits}g}")
    return {
        "problem": run["problem"],
        "eta": run["eta"],
        "steps": run["steps"],
        "every": run["every"],
        "step": run["sharpness_step"],
        "sharpness": [keep(v) for v in run["sharpness"]],
        "loss": [keep(run["loss"][t]) for t in run["sharpness_step"]],
        "max_residual": max(run["residual"]),
    }


def summary_table(summaries: list[dict], band: float = BAND) -> str:
    """The summaries as a markdown table, a row per problem and ``eta``."""
    head = (
        f"| problem | eta | 2/eta | sharpness at init | max before reaching 2/eta | reached at step "
        f"| max after (x 2/eta) | after: within +-{band:.0%} of 2/eta | loss: init -> end "
        f"| loss fell after reaching | steps the loss rose after reaching |\n" + "|---" * 11 + "|"
    )
    rows = []
    for s in summaries:
        name = s["problem"].split(" (")[0]
        if s["reached_step"] is None:
            rest = f"{s['max_before']:.2f} | never ({s['steps']} steps) | - | - "
        else:
            rest = (
                f"{s['max_before']:.2f} | {s['reached_step']} | "
                f"{s['max_after']:.2f} ({s['max_after_ratio']:.2f}) "
                f"| {s['frac_in_band']:.0%} "
            )
        fell = "-" if s["loss_fell"] is None else ("yes" if s["loss_fell"] else "no")
        rises = "-" if s["loss_rises"] is None else f"{s['loss_rises']}"
        rows.append(
            f"| {name} | {s['eta']:.4g} | {s['two_over_eta']:.3g} | {s['sharpness_init']:.2f} | {rest}"
            f"| {s['loss_init']:.3g} -> {s['loss_final']:.3g} | {fell} | {rises} |"
        )
    return "\n".join([head, *rows]) + "\n"


def plot_edge_of_stability(runs_by_problem: dict, path) -> None:
    """Per problem (columns): the sharpness vs step with ``2/eta`` dashed in the run's colour (top), and
    the training loss vs step on a log axis (bottom)."""
    plt = pyplot()
    names = list(runs_by_problem)
    fig, axes = plt.subplots(
        2, len(names), figsize=(6 * len(names), 7.5), dpi=90, sharex="col", squeeze=False
    )
    for col, name in enumerate(names):
        top, bottom = axes[0][col], axes[1][col]
        for i, run in enumerate(runs_by_problem[name]):
            label = f"eta = {run['eta']:.3g} (2/eta = {2 / run['eta']:.3g})"
            top.plot(run["sharpness_step"], run["sharpness"], color=f"C{i}", linewidth=1.2, label=label)
            top.axhline(2 / run["eta"], color=f"C{i}", linestyle="--", linewidth=0.9)
            bottom.plot(np.arange(len(run["loss"])), run["loss"], color=f"C{i}", linewidth=0.9, label=label)
        edges = [2 / r["eta"] for r in runs_by_problem[name]]
        highest = max(max(max(r["sharpness"]) for r in runs_by_problem[name]), *edges)
        top.set_ylim(0, 1.15 * highest if math.isfinite(highest) else None)
        top.set_title(name, fontsize=10)
        top.set_ylabel("sharpness (top Hessian eigenvalue)")
        top.legend(fontsize=8, loc="lower right")
        bottom.set_yscale("log")
        bottom.set_ylabel("training loss")
        bottom.set_xlabel("step of full-batch gradient descent")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
    fig.suptitle(
        "Full-batch gradient descent at several step sizes eta: the sharpness, with 2/eta dashed, "
        "and the training loss",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
