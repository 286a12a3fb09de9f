"""MATLAB's comparison of its training functions, rebuilt on fnn's optimizers.

MATLAB's page "Choose a Multilayer Neural Network Training Function" trains
networks on six benchmark problems with nine training functions, 30 trials
each from different initial weights, until the mean squared error falls below
a goal, and tabulates the time and epochs each took. Three of its problems can
be rebuilt here:

=======  ==========  ===========================================================  ==========
problem  network     data                                                         goal (mse)
=======  ==========  ===========================================================  ==========
SIN      1-5-1       one period of a sine, ``sin(pi x)`` at 41 points of [-1, 1]  0.002
PARITY   3-10-10-1   3-bit parity, inputs and targets in {-1, 1}                  0.001
CANCER   30-5-5-2    scikit-learn's breast-cancer data, one-hot targets in {0,1}  0.012
=======  ==========  ===========================================================  ==========

tanh hidden layers (MATLAB's ``tansig``), a linear output for SIN and tanh
outputs for the two pattern-recognition problems, inputs scaled to [-1, 1] per
feature (MATLAB's ``mapminmax``) and Nguyen-Widrow initial weights (its
``initnw``). MATLAB's CANCER data had 9 features; scikit-learn's (the
Wisconsin diagnostic set) has 30, so the network is 30-5-5-2.

The goal. MATLAB's ``mse`` is the mean over examples *and outputs* of ``e^2``;
fnn's ``mse`` loss is half the squared error summed over outputs, averaged
over examples: ``fnn = (n_out / 2) * MATLAB``. Each goal is converted so, and
the table reports MATLAB's measure.

The methods are MATLAB's, by their names here: LM ``levenberg_marquardt``,
BFG ``bfgs``, RP ``rprop``, SCG ``scg``, CGB ``cgb``, CGF ``cgf``, CGP
``cgp``, OSS ``oss``, GDX ``adaptive_momentum`` (``traingdx``: adaptive
learning rate and momentum), with MATLAB's default settings (RP's first step
0.07). Each trial is one ``fnn.fit`` with ``goal``, its
wall time measured around the call; every method's epoch is compiled before
the trials (a warm-up fit), and in each trial the methods run in a fresh
random order, all from the same initial weights.

Two rows are fnn's own, beside MATLAB's nine: SCG-GN and SCG-H, Moller's
scaled conjugate gradient with the curvature along its direction computed
exactly by hand instead of MATLAB's finite difference of two gradients,
the Gauss-Newton product (``fnn.optimizers.scg(curvature="gnvp")``) or the
Hessian's (``curvature="hvp"``). Given to ``fnn.fit`` as transforms (built once
per process, so every trial reuses their compiled epoch), they see the params'
tree where the named methods see one flat vector.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import statistics
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Factory:
    """An optimizer built by a factory of ``fnn.optimizers`` with keywords, e.g.
    ``Factory("scg", curvature="gnvp")`` for ``fnn.optimizers.scg(curvature="gnvp")``. Its transform is
    built once (``build``), so that every ``fnn.fit`` with it reuses the epoch compiled for it."""

    name: str
    kwargs: tuple  # ((keyword, value), ...)

    def __init__(self, name: str, **kwargs):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "kwargs", tuple(sorted(kwargs.items())))

    def build(self):
        return _built(self)

    def __str__(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.kwargs) + ")"


@functools.cache
def _built(factory: Factory):
    import fnn

    return getattr(fnn.optimizers, factory.name)(**dict(factory.kwargs))


# MATLAB's acronym -> an fnn optimizer's name, or a Factory (fnn's own rows beside MATLAB's: SCG with the
# curvature along its direction exact, Gauss-Newton's (SCG-GN) or the Hessian's (SCG-H), instead of MATLAB's
# finite difference of gradients)
METHODS = {
    "LM": "levenberg_marquardt",
    "BFG": "bfgs",
    "RP": "rprop",
    "SCG": "scg",
    "CGB": "cgb",
    "CGF": "cgf",
    "CGP": "cgp",
    "OSS": "oss",
    "GDX": "adaptive_momentum",
    "SCG-GN": Factory("scg", curvature="gnvp"),
    "SCG-H": Factory("scg", curvature="hvp"),
}
# MATLAB's defaults where fnn's differ: trainrp's first step delta0 = 0.07 (fnn's rprop: 0.01);
# traingdx's lr 0.01, momentum 0.9 and rate factors 1.05 / 0.7 / 1.04 are fnn's adaptive_momentum's
LEARNING_RATES = {"RP": 0.07}


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    sizes: tuple
    output: str
    goal: float  # MATLAB's mse: mean over examples and outputs of e^2
    x: np.ndarray
    y: np.ndarray
    data: str

    @property
    def fnn_goal(self) -> float:
        """The goal in fnn's mse loss, ``(n_out / 2) * MATLAB's``."""
        return self.goal * self.sizes[-1] / 2

    def network(self):
        import fnn

        return fnn.MLP(self.sizes, activation="tanh", output=self.output, loss="mse")


def minmax(x: np.ndarray) -> np.ndarray:
    """Each column scaled to [-1, 1] (MATLAB's ``mapminmax``)."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    return 2 * (x - lo) / np.where(hi > lo, hi - lo, 1) - 1


def sin_problem() -> Problem:
    x = np.linspace(-1, 1, 41)[:, None]
    return Problem(
        "SIN",
        (1, 5, 1),
        "identity",
        0.002,
        x.astype(np.float32),
        np.sin(np.pi * x).astype(np.float32),
        "sin(pi x) at 41 points of [-1, 1]",
    )


def parity_problem() -> Problem:
    bits = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)], np.float32)
    odd = bits.sum(axis=1, keepdims=True) % 2
    return Problem(
        "PARITY", (3, 10, 10, 1), "tanh", 0.001, 2 * bits - 1, 2 * odd - 1, "3-bit parity, {-1, 1}"
    )


def cancer_problem() -> Problem:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    onehot = np.eye(2, dtype=np.float32)[y]
    return Problem(
        "CANCER",
        (30, 5, 5, 2),
        "tanh",
        0.012,
        minmax(x).astype(np.float32),
        onehot,
        "breast cancer (scikit-learn), 569 x 30",
    )


PROBLEMS = {"SIN": sin_problem, "PARITY": parity_problem, "CANCER": cancer_problem}


def optimizer(method: str):
    """``fnn.fit``'s ``optimizer=`` for MATLAB's acronym ``method``: a name, or a Factory's transform."""
    m = METHODS[method]
    return m.build() if isinstance(m, Factory) else m


def label(method: str) -> str:
    """The fnn optimizer of ``method`` as written in the tables: ``scg``, ``scg(curvature='gnvp')``."""
    return str(METHODS[method])


def trial(problem: Problem, method: str, params, max_epochs: int) -> dict:
    """One fit of ``method`` (MATLAB's acronym) from ``params`` until the goal: time, epochs, final mse."""
    import jax

    import fnn

    net = problem.network()
    t0 = time.perf_counter()
    trained, history = fnn.fit(
        net,
        params,
        (problem.x, problem.y),
        optimizer=optimizer(method),
        epochs=max_epochs,
        learning_rate=LEARNING_RATES.get(method),
        goal=problem.fnn_goal,
        key=jax.random.key(0),
    )
    seconds = time.perf_counter() - t0
    mse = float(fnn.loss(net, trained, problem.x, problem.y)) * 2 / problem.sizes[-1]
    return {
        "problem": problem.name,
        "method": method,
        "time_s": seconds,
        "epochs": len(history),
        "mse": mse,
        "reached": bool(history.stop_reason.startswith("reached the goal")),
    }


def run(
    problems,
    methods=tuple(METHODS),
    trials: int = 30,
    max_epochs: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Every method on every problem, ``trials`` times; one row per trial (see the module docstring)."""
    import jax

    import fnn

    rng = random.Random(seed)
    rows = []
    bar = _bar(progress, len(problems) * trials * len(methods))
    for problem in problems:
        net = problem.network()
        warm = fnn.init(jax.random.key(10**6), net, scheme="nguyen_widrow")
        for m in methods:  # compile every method's epoch before timing
            fnn.fit(
                net,
                warm,
                (problem.x, problem.y),
                optimizer=optimizer(m),
                epochs=2,
                learning_rate=LEARNING_RATES.get(m),
                key=jax.random.key(0),
            )
        for t in range(trials):
            params = fnn.init(jax.random.key(seed + t), net, scheme="nguyen_widrow")
            order = list(methods)
            rng.shuffle(order)
            for m in order:
                rows.append({**trial(problem, m, params, max_epochs), "trial": t})
                bar.update(1)
    bar.close()
    return rows


def _bar(progress: bool, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, desc="trials")


def summary(rows: list[dict]) -> list[dict]:
    """Per problem and method: mean, min and max time and epochs, trials that reached the goal,
    and the mean time over the fastest method's (MATLAB's "ratio"), methods ordered by mean time."""
    out = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        cells = []
        for method in dict.fromkeys(r["method"] for r in rows if r["problem"] == problem):
            rs = [r for r in rows if r["problem"] == problem and r["method"] == method]
            times, epochs = [r["time_s"] for r in rs], [r["epochs"] for r in rs]
            cells.append(
                {
                    "problem": problem,
                    "method": method,
                    "trials": len(rs),
                    "reached": sum(r["reached"] for r in rs),
                    "time_mean": statistics.fmean(times),
                    "time_min": min(times),
                    "time_max": max(times),
                    "epochs_mean": statistics.fmean(epochs),
                    "epochs_min": min(epochs),
                    "epochs_max": max(epochs),
                    "mse_median": statistics.median(r["mse"] for r in rs),
                }
            )
        cells.sort(key=lambda c: c["time_mean"])
        for c in cells:
            c["ratio"] = c["time_mean"] / cells[0]["time_mean"]
        out += cells
    return out


def table(summary_rows: list[dict], problems: dict) -> str:
    """The summary as Markdown, one table per problem."""
    lines = []
    for name in dict.fromkeys(s["problem"] for s in summary_rows):
        p = problems[name]
        lines += [
            f"**{name}**: {'-'.join(map(str, p.sizes))}, {p.data}, goal mse {p.goal} "
            f"(fnn loss {p.fnn_goal:g})",
            "",
            "| method | fnn optimizer | mean time (s) | ratio | min time | max time | mean epochs "
            "| min epochs | max epochs | reached goal | median final mse |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in (s for s in summary_rows if s["problem"] == name):
            lines.append(
                f"| {s['method']} | `{label(s['method'])}` | {s['time_mean']:.3f} | {s['ratio']:.2f} | "
                f"{s['time_min']:.3f} | {s['time_max']:.3f} | {s['epochs_mean']:.0f} | {s['epochs_min']} | "
                f"{s['epochs_max']} | {s['reached']}/{s['trials']} | {s['mse_median']:.2e} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(summary_rows: list[dict], path) -> None:
    """Mean time per method and problem (bars, with min-max whiskers), trials that reached the goal beside."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(s["problem"] for s in summary_rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        cells = [s for s in summary_rows if s["problem"] == name][::-1]
        mean = np.array([c["time_mean"] for c in cells])
        err = np.array(
            [[c["time_mean"] - c["time_min"] for c in cells], [c["time_max"] - c["time_mean"] for c in cells]]
        )
        colors = ["tab:blue" if c["reached"] == c["trials"] else "tab:orange" for c in cells]
        ax.barh(range(len(cells)), mean, xerr=err, color=colors, capsize=3)
        ax.set_yticks(range(len(cells)), [c["method"] for c in cells])
        for i, c in enumerate(cells):
            ax.annotate(
                f" {c['reached']}/{c['trials']}, {c['epochs_mean']:.0f} ep",
                (c["time_max"], i),
                va="center",
                fontsize=8,
            )
        ax.set_xscale("log")
        ax.set_xlim(right=4 * max(c["time_max"] for c in cells))  # room for the labels
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("seconds to the goal (mean, min-max)")
        ax.set_title(name)
    fig.suptitle(
        "MATLAB's training-function comparison on fnn (orange: not every trial reached the goal)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
