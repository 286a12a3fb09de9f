"""The deep autoencoder (Hinton & Salakhutdinov 2006) trained from random initialisations, as Martens (2010)
and Martens & Grosse (2015) trained it: second-order methods against first-order ones.

The network encodes an image through narrowing logistic layers to a linear
code layer and decodes it through the mirrored layers to sigmoid outputs,
trained with the binary cross-entropy on pixels in [0, 1]:

* digits (the default, here on every machine): 64-256-128-64-8 and back,
  1347 training and 450 test images;
* MNIST (``--data-dir`` with its IDX files): 784-1000-500-250-30 and back,
  the papers' architecture, 60,000 and 10,000 images.

The papers' measure is the reconstruction error, the squared error summed
over an image's pixels and averaged over the images (``reconstruction_error``).
Each method runs from the same initialisations (``fnn.init`` under seeds
``0..inits-1``, no pre-training) for a wall-time budget; every epoch records
the training and test errors, the wall time and the gradient-equivalents
spent (``cost``): a gradient of the whole training set counts 1, a minibatch's
its share; Hessian-free adds its curvature pass (1), its ``1 + i``
Gauss-Newton products at their measured cost (``measure_costs``) and two
loss evaluations (backtracking and line search: at least one each); K-FAC
adds its sampled backward pass (1) and two Gauss-Newton products (the
quadratic model); ``scg`` one product or, by finite differences, one
gradient, and one loss; L-BFGS one value-and-gradient per line-search trial
(at least one; optax does not count them for us, so one is counted).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import fnn
from fnn import optimizers
from fnn.training.callbacks import Callback

DIGITS_SIZES = (64, 256, 128, 64, 8)
MNIST_SIZES = (784, 1000, 500, 250, 30)
ADAM_GRID = (1e-3, 3e-3, 1e-2)
MOMENTUM_GRID = (0.01, 0.03, 0.1)


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    x: np.ndarray  # training images in [0, 1]
    x_test: np.ndarray
    net: fnn.MLP


def autoencoder(encoder: tuple[int, ...]) -> fnn.MLP:
    """``encoder`` and its mirror: logistic hidden layers, a linear code layer, sigmoid outputs, bce."""
    sizes = (*encoder, *encoder[-2::-1])
    hidden = ["sigmoid"] * (len(sizes) - 2)
    hidden[len(encoder) - 2] = "identity"  # the code layer
    return fnn.MLP(sizes, activation=tuple(hidden), output="sigmoid", loss="bce")


def digits_problem(seed: int = 0) -> Problem:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32) / 16.0
    idx = np.random.default_rng(seed).permutation(len(x))
    return Problem("digits", x[idx[450:]], x[idx[:450]], autoencoder(DIGITS_SIZES))


def mnist_problem(data_dir) -> Problem:
    ds = fnn.datasets.load_idx_dataset("mnist", data_dir)
    return Problem("mnist", ds.x, ds.test.x, autoencoder(MNIST_SIZES))


def quick_problem() -> Problem:
    """A smoke-test size: 16 features of the digits, 16-8-4 and back."""
    p = digits_problem()
    return Problem("digits-quick", p.x[:200, ::4], p.x_test[:100, ::4], autoencoder((16, 8, 4)))


@jax.jit
def _squared_error(yhat, x):
    return jnp.mean(jnp.sum((yhat - x) ** 2, axis=1))


def reconstruction_error(net, params, x) -> float:
    """The squared error per image, ``mean_n sum_pixels (x - xhat)^2``: the papers' measure."""
    return float(_squared_error(fnn.predict(net, params, x), x))


# --------------------------------------------------------------------------- the methods


@dataclasses.dataclass(frozen=True)
class Method:
    label: str
    optimizer: object  # a name or an optax transform
    batch_size: int | None  # None: the whole training set
    learning_rate: float | None = None
    cost: str = "gradient"  # how a step is counted (see step_cost)


def methods(adam_lr: float, momentum_lr: float) -> list[Method]:
    """The contenders, Adam's and momentum's rates from their grids (``tune``)."""
    out = [
        Method("Hessian-free", "hessian_free", None, cost="hessian_free"),
        Method("SCG (Gauss-Newton)", optimizers.scg(curvature="gnvp"), None, cost="scg"),
        Method("L-BFGS", "lbfgs", None, cost="gradient_and_loss"),
        Method(f"Adam (lr {adam_lr:g})", "adam", 128, adam_lr),
        Method(f"SGD + momentum 0.9 (lr {momentum_lr:g})", "momentum", 128, momentum_lr),
    ]
    if "kfac" in optimizers.NAMES:
        out.insert(1, Method("K-FAC", "kfac", 512, cost="kfac"))
    return out


def measure_costs(net, params, x, repeats: int = 7) -> dict:
    """A Gauss-Newton product on the kept passes (``fnn.curvature(...).gnvp``, as Hessian-free
    multiplies) and a loss, each in gradients of the same batch: medians, the three interleaved in a
    fresh order each round."""
    c = fnn.curvature(net, params, x, x)
    v = jax.tree_util.tree_map(jnp.ones_like, params)
    calls = {
        "gradient": jax.jit(lambda p: fnn.backprop(net, p, x, x)),
        "product": lambda p: c.gnvp(v),
        "loss": jax.jit(lambda p: fnn.loss(net, p, x, x)),
    }
    times = {k: [] for k in calls}
    rng = np.random.default_rng(0)
    for name in calls:
        jax.block_until_ready(calls[name](params))
    for _ in range(repeats):
        for name in rng.permutation(list(calls)):
            t = time.perf_counter()
            jax.block_until_ready(calls[name](params))
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(t)) for k, t in times.items()}
    return {"gauss_newton_product": med["product"] / med["gradient"], "loss": med["loss"] / med["gradient"]}


def step_cost(method: Method, costs: dict, share: float, record: dict) -> float:
    """The gradient-equivalents of one step (``share``: its batch's fraction of the training set)."""
    gn, loss = costs["gauss_newton_product"], costs["loss"]
    if method.cost == "hessian_free":
        return share * (2 + (1 + record["cg_iterations"]) * gn + 2 * loss)
    if method.cost == "kfac":
        return share * (2 + 2 * gn + loss)
    if method.cost == "scg":
        return share * (1 + gn + loss)
    return share * (1 + (loss if method.cost == "gradient_and_loss" else 0.0))


# --------------------------------------------------------------------------- one run


class _Errors(Callback):
    """Records the training and test reconstruction errors and the cost after every epoch; stops at
    the budget."""

    def __init__(self, problem: Problem, method: Method, costs: dict, budget_s: float):
        self.problem, self.method, self.costs, self.budget_s = problem, method, costs, budget_s
        n = problem.x.shape[0]
        batch = method.batch_size or n
        self.steps, self.share = -(-n // batch), min(batch, n) / n
        self.rows, self.spent = [], 0.0

    def on_epoch_end(self, run):
        rec = run.record
        self.spent += self.steps * step_cost(self.method, self.costs, self.share, rec)
        self.rows.append(
            {
                "epoch": rec["epoch"],
                "wall_s": rec["wall_time_s"],
                "gradients": self.spent,
                "train": reconstruction_error(run.net, run.params, self.problem.x),
                "test": reconstruction_error(run.net, run.params, self.problem.x_test),
            }
        )
        if rec["wall_time_s"] >= self.budget_s:
            return run.stop(f"wall-time budget {self.budget_s:g} s")
        return None


def run_method(
    problem: Problem, method: Method, seed: int, costs: dict, budget_s: float, max_epochs: int = 100_000
) -> list[dict]:
    """One training run from ``fnn.init(key(seed))``: its per-epoch rows (see ``_Errors``)."""
    params = fnn.init(jax.random.key(seed), problem.net)
    errors = _Errors(problem, method, costs, budget_s)
    fnn.fit(
        problem.net,
        params,
        (problem.x, problem.x),
        optimizer=method.optimizer,
        epochs=max_epochs,
        batch_size=method.batch_size,
        learning_rate=method.learning_rate,
        key=jax.random.key(seed + 1000),
        callbacks=[errors],
    )
    return errors.rows


def tune(problem: Problem, name: str, grid, costs: dict, budget_s: float) -> tuple[float, dict]:
    """The rate of ``grid`` whose run from seed 0 ends with the lowest training error, and each one's."""
    finals = {}
    for lr in grid:
        rows = run_method(problem, Method(name, name, 128, lr), 0, costs, budget_s)
        finals[lr] = rows[-1]["train"] if rows and math.isfinite(rows[-1]["train"]) else math.inf
    return min(finals, key=finals.get), finals


def summarise(label: str, runs: list[list[dict]], target: float | None) -> dict:
    """Medians over the initialisations of the final errors, and the epochs and cost to reach ``target``."""
    finals = [r[-1] for r in runs]
    reach = [next((row for row in r if row["train"] <= target), None) for r in runs] if target else []
    hit = [row for row in reach if row is not None]
    med = lambda k: float(np.median([f[k] for f in finals]))
    return {
        "method": label,
        "train": med("train"),
        "test": med("test"),
        "train_range": [min(f["train"] for f in finals), max(f["train"] for f in finals)],
        "epochs": med("epoch"),
        "gradients": med("gradients"),
        "wall_s": med("wall_s"),
        "reached": f"{len(hit)}/{len(runs)}",
        "epochs_to_target": float(np.median([row["epoch"] for row in hit])) if hit else None,
        "gradients_to_target": float(np.median([row["gradients"] for row in hit])) if hit else None,
    }


def table(summaries: list[dict], target: float) -> str:
    lines = [
        "| method | train error | (range over inits) | test error | epochs | gradient-equivalents | "
        f"wall s | reached {target:.2f} | epochs to it | gradients to it |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lo, hi = s["train_range"]
        to = lambda v: "-" if v is None else f"{v:.0f}"
        lines.append(
            f"| {s['method']} | {s['train']:.3f} | {lo:.3f}-{hi:.3f} | {s['test']:.3f} | {s['epochs']:.0f} | "
            f"{s['gradients']:.0f} | {s['wall_s']:.1f} | {s['reached']} | {to(s['epochs_to_target'])} | "
            f"{to(s['gradients_to_target'])} |"
        )
    return "\n".join(lines) + "\n"


def plot(curves: dict, path) -> None:
    """Training error against wall time and against gradient-equivalents; test error dashed (one line
    per init)."""
    from scripts.common import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (label, runs) in enumerate(curves.items()):
        color = f"C{i}"
        for j, rows in enumerate(runs):
            for ax, x in zip(axes, ("wall_s", "gradients")):
                xs = [r[x] for r in rows]
                ax.plot(xs, [r["train"] for r in rows], color=color, lw=1.2, label=label if j == 0 else None)
                ax.plot(xs, [r["test"] for r in rows], color=color, lw=0.8, ls="--")
    for ax, name in zip(axes, ("wall time (s)", "gradient-equivalents")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("reconstruction error (squared error per image)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "deep autoencoder: training error (solid) and test error (dashed), from the same initialisations"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
