"""Cold start: what a script pays to compile, against scikit-learn, each run in a fresh process.

Three measurements, every contender in a new Python process, in a fresh
random order each round (``rounds``):

* **workload**: the fits of scikit-learn's example
  ``plot_mlp_training_curves.py``: 7 stochastic settings (SGD, constant and
  inverse-scaling rates, with none, classical and Nesterov's momentum; Adam) on
  iris, digits, circles and moons, scaled to [0, 1], 28 fits in all, each then
  scored. Wall time of the whole process (interpreter, imports, data, fits):
  scikit-learn's ``MLPClassifier``; ``fnn.sklearn.MLPClassifier`` with an
  empty compile cache ("first run"), and with the cache a first run filled
  ("second run").
* **first fit**: ``MLPClassifier(solver="sgd", random_state=0).fit`` on iris,
  timed inside the process after its imports: the fit a new user makes first.
* **import**: ``import fnn`` against ``import jax``, timed inside the process.
* **phases** (``measure_phases``): a small network's compile split into
  tracing, lowering and XLA's passes, with XLA's default options and with
  ``FAST_COMPILE``, and the steady epoch of each program, side by side.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

SETTINGS = [
    {"solver": "sgd", "learning_rate": "constant", "momentum": 0, "learning_rate_init": 0.2},
    {
        "solver": "sgd",
        "learning_rate": "constant",
        "momentum": 0.9,
        "nesterovs_momentum": False,
        "learning_rate_init": 0.2,
    },
    {
        "solver": "sgd",
        "learning_rate": "constant",
        "momentum": 0.9,
        "nesterovs_momentum": True,
        "learning_rate_init": 0.2,
    },
    {"solver": "sgd", "learning_rate": "invscaling", "momentum": 0, "learning_rate_init": 0.2},
    {
        "solver": "sgd",
        "learning_rate": "invscaling",
        "momentum": 0.9,
        "nesterovs_momentum": True,
        "learning_rate_init": 0.2,
    },
    {
        "solver": "sgd",
        "learning_rate": "invscaling",
        "momentum": 0.9,
        "nesterovs_momentum": False,
        "learning_rate_init": 0.2,
    },
    {"solver": "adam", "learning_rate_init": 0.01},
]


def estimator(library: str):
    """``MLPClassifier`` of ``library``: ``"fnn"`` or ``"sklearn"``."""
    if library == "fnn":
        from fnn.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    return MLPClassifier


def workload(library: str) -> list[float]:
    """The example's 28 fits; the training-set score of each."""
    from sklearn import datasets
    from sklearn.preprocessing import MinMaxScaler

    classifier = estimator(library)
    iris, digits = datasets.load_iris(), datasets.load_digits()
    sets = [
        ("iris", iris.data, iris.target),
        ("digits", digits.data, digits.target),
        ("circles", *datasets.make_circles(noise=0.2, factor=0.5, random_state=1)),
        ("moons", *datasets.make_moons(noise=0.3, random_state=0)),
    ]
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some settings do not converge, as in the example
        for name, x, y in sets:
            x = MinMaxScaler().fit_transform(x)
            for setting in SETTINGS:
                model = classifier(random_state=0, max_iter=15 if name == "digits" else 400, **setting).fit(
                    x, y
                )
                scores.append(float(model.score(x, y)))
    return scores


def first_fit(library: str) -> float:
    """Seconds of the first fit in this process: SGD on iris with scikit-learn's defaults."""
    from sklearn.datasets import load_iris

    classifier = estimator(library)
    x, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        classifier(solver="sgd", random_state=0).fit(x, y)
        return time.perf_counter() - start


FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False}  # the option that shortens XLA's passes most


def phases(case: str) -> dict:
    """Where a small network's compile goes: tracing, lowering and XLA's compile of the estimator's chunk of
    epochs (``case``: ``"iris"`` or ``"digits"``, then ``"default"`` or ``"fast"`` for ``FAST_COMPILE``),
    and the steady epoch of the program compiled (median of 30 calls of 32 epochs)."""
    import jax
    from sklearn import datasets

    from fnn.scale import traced_cache

    data, options = case.split(":")
    x, y = getattr(datasets, f"load_{data}")(return_X_y=True)
    jax.jit(lambda a: a * 2)(1.0).block_until_ready()  # XLA's own start-up, paid once by any program
    captured = {}
    call = traced_cache.call  # the estimator runs its compiled programs through it: fun(*static, *args)

    def spy(fun, static, static_key, *args):
        if getattr(fun, "__name__", "") != "dense_epochs":  # the chunk of epochs; anything else runs
            return call(fun, static, static_key, *args)
        captured["fun"], captured["args"] = fun, (*static, *args)
        raise StopIteration

    traced_cache.call = spy
    try:
        estimator("fnn")(solver="sgd", random_state=0).fit(x, y)
    except StopIteration:
        pass
    finally:
        traced_cache.call = call
    real, args = captured["fun"], captured["args"]
    with jax.enable_x64(True):  # the estimator fits float64 data in float64
        start = time.perf_counter()
        traced = real.trace(*args)
        lap = time.perf_counter()
        lowered = traced.lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile(FAST_COMPILE if options == "fast" else None)
        done = time.perf_counter()
        jax.block_until_ready(compiled(*args[2:]))
        calls = []
        for _ in range(30):
            t = time.perf_counter()
            jax.block_until_ready(compiled(*args[2:]))
            calls.append(time.perf_counter() - t)
    return {
        "trace": lap - start,
        "lower": lowered_at - lap,
        "compile": done - lowered_at,
        "epoch": statistics.median(calls) / int(args[10]),
    }


def measure_phases(rounds: int = 3, seed: int = 0) -> dict:
    """``phases`` of each case in fresh processes, in a fresh random order each round; medians."""
    rng, cases = random.Random(seed), [f"{d}:{o}" for d in ("iris", "digits") for o in ("default", "fast")]
    got = {c: [] for c in cases}
    for _ in range(rounds):
        rng.shuffle(cases)
        for c in cases:
            got[c].append(run_child("phases", c, None)[1])
    return {c: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for c, runs in got.items()}


def child(argv: list[str]) -> None:
    """The entry of a measuring process: prints one JSON line."""
    what, arg = argv
    result = {"workload": workload, "first_fit": first_fit, "phases": phases}[what](arg)
    print(json.dumps(result))


def run_child(what: str, arg: str, cache: str | None) -> tuple[float, object]:
    """Wall seconds of a fresh process running ``child``, and what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("FNN_COMPILE_CACHE", "FNN_CACHE_DIR")}
    if cache is None:
        env["FNN_COMPILE_CACHE"] = "0"
    else:
        env["FNN_CACHE_DIR"] = cache
    command = [sys.executable, __file__]  # this file alone: the process imports no more than its contender
    if what == "import":  # nothing imported before the module timed
        command = [
            sys.executable,
            "-c",
            "import sys, time, json; t = time.perf_counter(); __import__(sys.argv[2]); "
            "print(json.dumps(time.perf_counter() - t))",
        ]
    start = time.perf_counter()
    out = subprocess.run([*command, what, arg], capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])


def contenders(root: str) -> dict:
    """Each contender: ``(what, arg, cache directory factory)``; ``root`` holds the caches."""
    warm = os.path.join(root, "warm")
    fresh = lambda: tempfile.mkdtemp(dir=root)
    return {
        "workload sklearn": ("workload", "sklearn", lambda: None),
        "workload fnn first run": ("workload", "fnn", fresh),
        "workload fnn second run": ("workload", "fnn", lambda: warm),
        "first fit sklearn": ("first_fit", "sklearn", lambda: None),
        "first fit fnn first run": ("first_fit", "fnn", fresh),
        "first fit fnn second run": ("first_fit", "fnn", lambda: warm),
        "import jax": ("import", "jax", lambda: None),
        "import fnn": ("import", "fnn", lambda: None),
    }


def measure(rounds: int = 5, seed: int = 0, progress=print) -> dict:
    """Every contender once per round, in a fresh random order; the warm cache filled before round 1."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as root:
        table = contenders(root)
        for what in ("workload", "first_fit"):
            run_child(what, "fnn", os.path.join(root, "warm"))
        times = {name: [] for name in table}
        values = {}
        for r in range(rounds):
            names = list(table)
            rng.shuffle(names)
            for name in names:
                what, arg, cache = table[name]
                wall, value = run_child(what, arg, cache())
                times[name].append(wall if what == "workload" else value)
                values[name] = value
            progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in table))
    return {
        "seconds": times,
        "median": {n: statistics.median(t) for n, t in times.items()},
        "scores": {n: v for n, v in values.items() if n.startswith("workload")},
        "rounds": rounds,
    }


def ratios(result: dict) -> dict:
    """Paired ratios (median over rounds of each round's own ratio) and the import difference."""
    s = result["seconds"]
    paired = lambda a, b: statistics.median(x / y for x, y in zip(s[a], s[b]))
    return {
        "workload first run / sklearn": paired("workload fnn first run", "workload sklearn"),
        "workload second run / sklearn": paired("workload fnn second run", "workload sklearn"),
        "first fit, first run / sklearn": paired("first fit fnn first run", "first fit sklearn"),
        "first fit, second run / sklearn": paired("first fit fnn second run", "first fit sklearn"),
        "import fnn - import jax (s)": statistics.median(
            a - b for a, b in zip(s["import fnn"], s["import jax"])
        ),
    }


def markdown(result: dict, machine: dict) -> str:
    machine = (
        f"{machine.get('cpu', machine.get('device_kind'))} ({machine.get('cores', '?')} cores), "
        f"jax {machine.get('jax_version')}"
    )
    rows = ["| contender | median (s) |", "|---|---|"]
    rows += [f"| {name} | {t:.3f} |" for name, t in result["median"].items()]
    rows += ["", "| ratio | value |", "|---|---|"]
    rows += [f"| {name} | {value:.3f} |" for name, value in result["ratios"].items()]
    if "phases" in result:
        rows += [
            "",
            "| small network's chunk of epochs | trace (s) | lower (s) | XLA compile (s) | "
            "steady epoch (us) |",
            "|---|---|---|---|---|",
        ]
        rows += [
            f"| {case} | {p['trace']:.3f} | {p['lower']:.3f} | {p['compile']:.3f} | {p['epoch'] * 1e6:.1f} |"
            for case, p in sorted(result["phases"].items())
        ]
    return (
        f"Cold start on {machine}, {result['rounds']} rounds, medians "
        "(workload: wall time of the process).\n\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    child(sys.argv[1:])
