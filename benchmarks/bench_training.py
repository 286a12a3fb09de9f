r"""Training speed on digits: fnn.fit vs scikit-learn's MLPClassifier vs a plain jax.grad + optax loop.

All three train 64,128,128,10 relu/softmax with Adam (lr 1e-3), batch 64, 50
epochs, on the same standardised stratified 75/25 split (no validation, no
early stopping, no L2: MLPClassifier(alpha=0, tol=0, n_iter_no_change=huge)).
All three compute in float32 (scikit-learn keeps the float32 data's dtype,
with NumPy's BLAS).

* whole fit: wall time of one complete training run (init and fit), with
  XLA compiling the epoch ("cold": a fresh fnn.fit / a fresh jit for the plain
  loop in every repeat) or loading it from JAX's persistent compilation cache
  ("warm": ``fnn.enable_compile_cache``, which ``fnn train`` turns on, filled
  by one earlier run of the same configuration);
* epoch: the steady-state time of one epoch (fnn: median of epochs 2-50 from
  history.epoch_time_s; plain loop: median epoch after the first; scikit-learn:
  whole fit / 50, it has nothing to compile);
* fresh process (``--fresh``, on by default): the whole fit timed inside a new
  Python process per run, after its imports and data loading, so that JAX's
  one-time compilations of small operations (the init's random draws, ...) are
  paid as they are by ``fnn train``; fnn cold (empty cache) and warm.

The contenders run interleaved within every repeat, so a change in the
machine's load touches all of them alike. Medians over --repeats runs; the
"paired" ratios are the median of each repeat's own ratio. Writes
benchmarks/results/training_<backend>.json (cpu, or gpu where JAX's default
device is one; scikit-learn always runs on the CPU) and its figure beside it
(``--plot-only`` redraws the figure from the JSON).

    python benchmarks/bench_training.py [--repeats 5] [--no-fresh] [--plot-only]

``--baseline DIR`` runs only a before/after comparison of fnn.fit's steady epoch
(as above: median of epochs 2-50) between the fnn of this checkout ("current")
and the fnn of another checkout DIR ("baseline"), each fit in a fresh process
that imports its checkout's fnn (checked against ``fnn.__file__``), the two in a
fresh random order every repeat (``--seed``, default the time). It writes the
per-repeat and median steady epoch, whole fit and test accuracy of each, the
paired ratio current/baseline (median of each repeat's own ratio), both commits
(and whether this checkout is dirty), the machine and the command line, to
--out (default results/loop_<backend>/loop.json):

    python benchmarks/bench_training.py --baseline ../fnn_before --repeats 7 \
        --out benchmarks/results/loop_cpu/loop.json

``--estimators`` runs only the estimator comparison (``benchmarks.estimators``):
``fnn.sklearn.MLPClassifier`` against scikit-learn's ``MLPClassifier`` with the
same settings, on digits (hidden (100,), 50 epochs) and on a synthetic
50,000 x 100 set of 10 classes (hidden (256, 256), 5 epochs), in float64 and
float32; whole fit (fnn cold and warm) and per epoch, the two in a fresh random
order every round. It writes --out (default
results/estimators_<backend>/estimators.json), a markdown table and a figure
beside it:

    python benchmarks/bench_training.py --estimators --repeats 5

``--cold-start`` runs only the cold-start comparison (``benchmarks.cold_start``):
scikit-learn's example ``plot_mlp_training_curves.py`` (28 fits) with
``fnn.sklearn.MLPClassifier`` and with scikit-learn's, each in a fresh process
(fnn's first run with an empty compile cache, its second with a filled one),
the first fit of a new process, and ``import fnn`` against ``import jax``, in a
fresh random order every round. It writes --out (default
results/cold_start_<backend>/cold_start.json) and a markdown table beside it:

    python benchmarks/bench_training.py --cold-start --repeats 5

``--steps`` runs only the comparison of one compiled optimizer step per method
(``benchmarks.steps``): the step of ``fnn.fit``'s epoch (hand-written backprop,
``tx.update``, apply; full batch) of adam, levenberg_marquardt (on the mse net
only), scg (finite differences), scg(gnvp), hessian_free (with its mean CG
iterations), kfac (once registered) and lbfgs, on digits 64-128-128-10
relu/softmax and a 64-32-1 mse net, each against one gradient timed beside it
(paired ratio: the step's cost in gradient-equivalents), in interleaved rounds of
a fresh random order (``--seed``, default 0). It writes --out (default
results/steps_<backend>/steps.json), a markdown table and a figure beside it:

    python benchmarks/bench_training.py --steps --repeats 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import optax

# `python benchmarks/bench_training.py` puts benchmarks/ on sys.path, not the repository's root: the root goes
# first, so that the package `benchmarks` (not installed with fnn) imports from any working directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import fnn  # noqa: E402
from benchmarks import machine  # noqa: E402
from fnn import data  # noqa: E402
from fnn.core.forward import loss_core  # noqa: E402
from fnn.core.validation import prepare  # noqa: E402
from fnn.data import datasets  # noqa: E402
from fnn.scale import compile_cache  # noqa: E402

EPOCHS, BATCH, LR = 50, 64, 1e-3
NET_ARGS = dict(sizes=(64, 128, 128, 10), activation="relu", output="softmax", loss="cross_entropy")
NET = fnn.MLP(**NET_ARGS)


def run_fnn(train, test, seed):
    # fits of one configuration share a compiled epoch: compile afresh
    fnn.training.loop.make_epoch.cache_clear()
    t0 = time.perf_counter()
    params, h = fnn.fit(
        NET,
        fnn.init(jax.random.key(seed), NET),
        train,
        optimizer="adam",
        learning_rate=LR,
        epochs=EPOCHS,
        batch_size=BATCH,
        key=jax.random.key(seed + 100),
    )
    jax.block_until_ready(params)
    whole = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(np.asarray(fnn.predict(NET, params, test.x)), 1) == test.y))
    return whole, statistics.median(h.epoch_time_s[1:]), acc


def run_plain(train, test, seed):
    """The usual hand-rolled loop: jax.value_and_grad + optax, one jitted step per minibatch."""
    t0 = time.perf_counter()
    params = fnn.init(jax.random.key(seed), NET)
    x, y = prepare(NET, params, train.x, train.y)
    tx = optax.adam(LR)
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(loss_core, argnums=1)(NET, params, xb, yb)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    n = x.shape[0]
    times = []
    for _ in range(EPOCHS):
        e0 = time.perf_counter()
        perm = rng.permutation(n)
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            if len(idx) < BATCH:  # keep one shape (no recompile): fill up like fnn.fit does
                idx = np.concatenate([idx, perm[: BATCH - len(idx)]])
            params, state, loss = step(params, state, x[idx], y[idx])
        jax.block_until_ready(params)
        times.append(time.perf_counter() - e0)
    whole = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(np.asarray(fnn.predict(NET, params, test.x)), 1) == test.y))
    return whole, statistics.median(times[1:]), acc


def run_sklearn(train, test, seed):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        (128, 128),
        activation="relu",
        solver="adam",
        learning_rate_init=LR,
        batch_size=BATCH,
        max_iter=EPOCHS,
        alpha=0.0,
        tol=0.0,
        n_iter_no_change=10**9,
        shuffle=True,
        random_state=seed,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" after max_iter
        clf.fit(train.x, train.y)
    whole = time.perf_counter() - t0
    return whole, whole / EPOCHS, float(clf.score(test.x, test.y))


def fresh_process(contender: str, seed: int, cache_dir: str | None) -> float:
    """The whole fit of ``contender`` timed inside a new Python process (imports and data loading
    excluded)."""
    here, cached = os.path.dirname(os.path.abspath(__file__)), cache_dir is not None
    code = (
        f"import sys, time; sys.path.insert(0, {here!r})\n"
        "import bench_training as b, fnn\n"
        "from fnn import data, datasets\n"
        f"if {cached!r}: fnn.enable_compile_cache({cache_dir!r})\n"
        "s = data.prepare(datasets.load('digits'), test_size=0.25, val_size=0.0, seed=0)\n"
        f"print('WHOLE', b.{contender!s}(s.train, s.test, {seed:d})[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.split("WHOLE", 1)[1].split()[0])


# --baseline: run_fnn's training in a new process, written against the public API only (fnn.MLP, init, fit,
# predict, data.prepare, datasets.load), so that it runs unchanged on an older checkout of fnn.
# Braces doubled: the f-string's text is Python source with f-strings and dicts of its own.
CHILD = f"""
import json, os, statistics, sys, time
import jax, numpy as np
import fnn
root, seed = os.path.realpath(sys.argv[1]), int(sys.argv[2])
where = os.path.realpath(fnn.__file__)
assert where.startswith(os.path.join(root, "")), f"imported {{where}}, not the fnn of {{root}}"
net = fnn.MLP(**{NET_ARGS!r})
s = fnn.data.prepare(fnn.datasets.load("digits"), test_size=0.25, val_size=0.0, seed=0)
t0 = time.perf_counter()
params, h = fnn.fit(net, fnn.init(jax.random.key(seed), net), s.train, optimizer="adam", learning_rate={LR!r},
                    epochs={EPOCHS:d}, batch_size={BATCH:d}, key=jax.random.key(seed + 100))
jax.block_until_ready(params)
whole = time.perf_counter() - t0
acc = float(np.mean(np.argmax(np.asarray(fnn.predict(net, params, s.test.x)), 1) == s.test.y))
print("RESULT", json.dumps({{"fnn_file": where, "epoch_s": statistics.median(h.epoch_time_s[1:]),
                            "whole_fit_s": whole, "test_accuracy": acc}}))
"""


def fit_in_checkout(root: str, seed: int) -> dict:
    """run_fnn's figures (steady epoch, whole fit, accuracy) measured in a new process importing
    ``root``'s fnn.

    ``root`` goes first on PYTHONPATH and is the working directory (``python -c`` puts the working
    directory ahead of PYTHONPATH, and the venv's editable install maps ``fnn`` to this checkout).
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, root, str(seed)], cwd=root, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(f"the fit in {root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def checkout(root: str, dirty: bool = False) -> dict:
    """The checkout's path and commit; with ``dirty``, whether its working tree has changes."""

    def git(*cmd):
        return subprocess.run(["git", "-C", root, *cmd], capture_output=True, text=True, check=True).stdout

    info = {"path": root, "commit": git("rev-parse", "HEAD").strip()}
    if dirty:
        info["dirty"] = bool(git("status", "--porcelain").strip())
    return info


def compare_baseline(args) -> dict:
    """fnn.fit's steady epoch, this checkout's fnn ("current") against the one at ``args.baseline``.

    Every measurement is a fresh process; the two contenders run in a fresh random order in every
    repeat, on the same training seed. Writes and returns the JSON document.
    """
    roots = {
        "current": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "baseline": os.path.abspath(args.baseline),
    }
    seed = int(time.time()) if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    checkouts = {k: checkout(root, dirty=k == "current") for k, root in roots.items()}  # as measured: before
    load_before = os.getloadavg()
    runs, orders = {name: [] for name in roots}, []
    for rep in range(args.repeats):
        order = [list(roots)[i] for i in rng.permutation(len(roots))]
        orders.append(order)
        for name in order:
            runs[name].append(fit_in_checkout(roots[name], rep))
        print(
            f"repeat {rep + 1}/{args.repeats} ({' then '.join(order)}): "
            + ", ".join(
                f"{k} {1e3 * v[-1]['epoch_s']:.3f} ms/epoch, {v[-1]['whole_fit_s']:.2f} s"
                for k, v in runs.items()
            ),
            flush=True,
        )
    ratios = [c["epoch_s"] / b["epoch_s"] for c, b in zip(runs["current"], runs["baseline"])]
    whole_ratios = [c["whole_fit_s"] / b["whole_fit_s"] for c, b in zip(runs["current"], runs["baseline"])]
    contenders = {
        k: {
            "checkout": checkouts[k],
            **{m: statistics.median(r[m] for r in v) for m in ("epoch_s", "whole_fit_s", "test_accuracy")},
            "runs": v,
        }
        for k, v in runs.items()
    }
    doc = {
        "benchmark": "fnn.fit steady epoch, current vs baseline checkout: digits 64,128,128,10 relu/softmax, "
        "adam lr 1e-3, batch 64, 50 epochs; epoch_s = median of epoch_time_s[1:]; "
        "one fresh process per measurement",
        "command": [sys.executable, *sys.argv],
        "machine": machine.describe(jax.devices()[0]),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "dtype": "float32",
        "repeats": args.repeats,
        "order_seed": seed,
        "orders": orders,
        "contenders": contenders,
        "paired_epoch_current_over_baseline": statistics.median(ratios),
        "epoch_ratio_runs": ratios,
        "paired_whole_fit_current_over_baseline": statistics.median(whole_ratios),
        "whole_fit_ratio_runs": whole_ratios,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    for k, v in contenders.items():
        print(
            f"{k:<9} steady epoch {1e3 * v['epoch_s']:8.3f} ms   whole fit {v['whole_fit_s']:7.3f} s"
            f"   test accuracy {100 * v['test_accuracy']:.2f}%   {v['checkout']['commit'][:10]}"
        )
    print(
        f"current/baseline steady epoch, paired: {doc['paired_epoch_current_over_baseline']:.3f}x"
        f" (repeats: min {min(ratios):.3f}x, max {max(ratios):.3f}x)"
    )
    print(f"wrote {args.out}")
    return doc


def compare_estimators(args) -> dict:
    """``fnn.sklearn`` vs scikit-learn's MLPClassifier (``benchmarks.estimators``), written to
    ``args.out``."""
    from benchmarks import estimators

    seed = int(time.time()) if args.seed is None else args.seed
    load_before = os.getloadavg()
    results = estimators.run(args.repeats, seed, progress=lambda line: print(line, flush=True))
    doc = {
        "what": "fnn.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier, the same settings",
        "method": estimators.__doc__.strip(),
        "machine": machine.describe(jax.devices()[0]),
        "load_average_before_after": [load_before, os.getloadavg()],
        "command": " ".join(sys.argv),
        "seed": seed,
        "repeats": args.repeats,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=1)
    base = os.path.splitext(args.out)[0]
    with open(base + ".md", "w") as fh:
        fh.write(estimators.table(results) + "\n")
    estimators.draw(results, base + ".png")
    print(estimators.table(results))
    return doc


def compare_steps(args) -> dict:
    """One compiled step of each optimizer against one gradient (``benchmarks.steps``), written to
    ``args.out``."""
    from benchmarks import steps

    results = steps.run(
        args.repeats,
        seed=0 if args.seed is None else args.seed,
        tiny=args.tiny,
        progress=lambda line: print(line, flush=True),
    )
    results["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    for path in steps.save(results, args.out):
        print(f"wrote {path}")
    print(steps.table(results))
    return results


def _paired(slower, faster, key):
    """Median over repeats of ``slower / faster``, both of the same repeat."""
    return statistics.median(a[key] / b[key] for a, b in zip(slower, faster))


def _summary(runs):
    keys = runs[0].keys()
    return {**{k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


def compare_cold_start(args) -> None:
    """``benchmarks.cold_start``: the workload, the first fit and the import, in fresh processes."""
    from benchmarks import cold_start

    result = cold_start.measure(rounds=args.repeats, seed=args.seed or 0)
    result["ratios"] = cold_start.ratios(result)
    result["phases"] = cold_start.measure_phases(rounds=3, seed=args.seed or 0)
    result["machine"] = machine.describe(jax.devices()[0])
    result["command"] = " ".join(sys.argv)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    table = cold_start.markdown(result, result["machine"])
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write(table)
    print(table)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process series")
    ap.add_argument(
        "--out",
        help="results file (default: results/training_<backend>.json, the figure beside it; "
        "with --baseline: results/loop_<backend>/loop.json; with --steps: "
        "results/steps_<backend>/steps.json)",
    )
    ap.add_argument(
        "--plot-only", action="store_true", help="redraw the figure from the JSON at --out, run nothing"
    )
    ap.add_argument(
        "--baseline",
        metavar="DIR",
        help="run only the steady-epoch comparison of fnn.fit against the fnn of checkout DIR",
    )
    ap.add_argument(
        "--seed",
        type=int,
        help="--baseline, --estimators, --steps: seed of the contenders' random "
        "order (default: the time; --steps: 0)",
    )
    ap.add_argument(
        "--estimators",
        action="store_true",
        help="run only fnn.sklearn's MLPClassifier against scikit-learn's, side by side",
    )
    ap.add_argument(
        "--steps",
        action="store_true",
        help="run only the comparison of one compiled optimizer step per method, in gradients",
    )
    ap.add_argument("--tiny", action="store_true", help="--steps: tiny nets on 64 examples (a smoke test)")
    ap.add_argument(
        "--cold-start",
        action="store_true",
        help="run only the cold-start comparison with scikit-learn, each contender in a fresh process",
    )
    args = ap.parse_args(argv)
    results_dir = os.path.join(os.path.dirname(__file__), "results")
    if args.cold_start:
        args.out = args.out or os.path.join(
            results_dir, f"cold_start_{jax.default_backend()}", "cold_start.json"
        )
        compare_cold_start(args)
        return
    if args.steps:
        args.out = args.out or os.path.join(results_dir, f"steps_{jax.default_backend()}", "steps.json")
        compare_steps(args)
        return
    if args.estimators:
        args.out = args.out or os.path.join(
            results_dir, f"estimators_{jax.default_backend()}", "estimators.json"
        )
        compare_estimators(args)
        return
    if args.baseline:
        args.out = args.out or os.path.join(results_dir, f"loop_{jax.default_backend()}", "loop.json")
        compare_baseline(args)
        return
    args.out = args.out or os.path.join(results_dir, f"training_{jax.default_backend()}.json")
    figure = os.path.splitext(args.out)[0] + ".png"
    if args.plot_only:
        with open(args.out) as fh:
            draw(json.load(fh), figure)
        return
    load_before = os.getloadavg()  # other work on the machine: the contenders do not slow down alike
    splits = data.prepare(datasets.load("digits"), test_size=0.25, val_size=0.0, seed=0)
    tr, te = splits.train, splits.test
    warm_dir = tempfile.mkdtemp(prefix="fnn-bench-cache-")
    runs = {k: [] for k in ("fnn.fit cold", "fnn.fit warm", "jax.grad + optax loop", "sklearn MLPClassifier")}

    def record(name, result):
        whole, epoch, acc = result
        runs[name].append({"whole_fit_s": whole, "epoch_s": epoch, "test_accuracy": acc})

    compile_cache.enable_compile_cache(warm_dir)
    run_fnn(tr, te, 0)  # fills the cache (unmeasured)
    for seed in range(args.repeats):
        compile_cache.disable_compile_cache()
        record("fnn.fit cold", run_fnn(tr, te, seed))
        compile_cache.enable_compile_cache(warm_dir)
        record("fnn.fit warm", run_fnn(tr, te, seed))
        compile_cache.disable_compile_cache()
        record("jax.grad + optax loop", run_plain(tr, te, seed))
        record("sklearn MLPClassifier", run_sklearn(tr, te, seed))
        print(
            f"repeat {seed + 1}/{args.repeats}: "
            + ", ".join(
                f"{k} {v[-1]['whole_fit_s']:.3f} s / {1e3 * v[-1]['epoch_s']:.2f} ms" for k, v in runs.items()
            ),
            flush=True,
        )
    results = {k: _summary(v) for k, v in runs.items()}
    for name, r in results.items():
        print(
            f"{name:<24} whole fit {r['whole_fit_s']:8.3f} s   epoch {1e3 * r['epoch_s']:9.3f} ms"
            f"   test accuracy {100 * r['test_accuracy']:.2f}%",
            flush=True,
        )
    cold, warm, p, s = (results[k] for k in runs)
    ratios = {
        "sklearn_epoch_over_fnn_epoch": s["epoch_s"] / cold["epoch_s"],
        "plain_epoch_over_fnn_epoch": p["epoch_s"] / cold["epoch_s"],
        "sklearn_whole_over_fnn_whole_cold": s["whole_fit_s"] / cold["whole_fit_s"],
        "sklearn_whole_over_fnn_whole_warm": s["whole_fit_s"] / warm["whole_fit_s"],
        "plain_whole_over_fnn_whole_cold": p["whole_fit_s"] / cold["whole_fit_s"],
        # the same repeat's runs side by side, then the median over repeats: steadier under changing load
        "paired_sklearn_epoch_over_fnn_epoch": _paired(
            runs["sklearn MLPClassifier"], runs["fnn.fit cold"], "epoch_s"
        ),
        "paired_sklearn_whole_over_fnn_whole_cold": _paired(
            runs["sklearn MLPClassifier"], runs["fnn.fit cold"], "whole_fit_s"
        ),
    }
    fresh = None
    if not args.no_fresh:
        fresh_runs = {"fnn.fit cold": [], "fnn.fit warm": [], "sklearn MLPClassifier": []}
        fresh_dir = tempfile.mkdtemp(prefix="fnn-bench-fresh-")
        fresh_process("run_fnn", 0, fresh_dir)  # fills the cache (unmeasured)
        for seed in range(args.repeats):
            fresh_runs["fnn.fit cold"].append(fresh_process("run_fnn", seed, None))
            fresh_runs["fnn.fit warm"].append(fresh_process("run_fnn", seed, fresh_dir))
            fresh_runs["sklearn MLPClassifier"].append(fresh_process("run_sklearn", seed, None))
        fresh = {k: {"whole_fit_s": statistics.median(v), "runs": v} for k, v in fresh_runs.items()}
        for k, v in fresh.items():
            print(f"fresh process: {k:<22} whole fit {v['whole_fit_s']:8.3f} s", flush=True)
        sk = fresh["sklearn MLPClassifier"]["whole_fit_s"]
        ratios["fresh_sklearn_whole_over_fnn_whole_cold"] = sk / fresh["fnn.fit cold"]["whole_fit_s"]
        ratios["fresh_sklearn_whole_over_fnn_whole_warm"] = sk / fresh["fnn.fit warm"]["whole_fit_s"]
    for k, v in ratios.items():
        print(f"{k:<42} {v:8.2f}x")
    doc = {
        "benchmark": "digits 64,128,128,10 relu/softmax, adam lr 1e-3, batch 64, 50 epochs",
        "machine": machine.describe(jax.devices()[0]),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "dtype": "float32",
        "repeats": args.repeats,
        "n_train": int(len(tr.x)),
        "n_test": int(len(te.x)),
        "results": results,
        "fresh_process": fresh,
        "ratios": ratios,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"wrote {args.out}")
    draw(doc, figure)


def draw(doc: dict, path: str) -> None:
    from benchmarks import plots  # matplotlib: only when drawing

    plots.training_speed(doc, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
