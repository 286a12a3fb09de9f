r"""Small networks: fnn.fit against a plain JAX + optax program, PyTorch eager and torch.compile.

    results = benchmarks.small.run(rounds=5)                  # every workload, every contender
    benchmarks.small.save(results, "benchmarks/results/small_cpu")   # small.json, small.md, small.png

Workloads (float32, params from ``fnn.init(jax.random.key(0), net)`` for every contender):

* ``simplechains``: SimpleChains.jl's headline benchmark. A 4-32-16-4 tanh MLP (identity output,
  mse) learns the 2x2 matrix exponential: ``x`` is 10,000 rows of 4 standard-normal numbers (seed
  0), read as a 2x2 matrix column by column (Julia's ``reshape``), ``y`` the 4 entries of
  ``scipy.linalg.expm`` of it, in the same order. Adam, lr 1e-3, full batch, 10,000 epochs.
  (SimpleChains' own loss is the sum of squares; here it is fnn's mse, ``1/2 ||yhat - y||^2``
  averaged over the examples, for every contender.)
* ``digits``: ``fnn train --dataset digits``: the classification preset 64-128-128-10, relu hidden
  layers, softmax output, cross-entropy, Adam at its default lr 1e-3, batch 64, 50 epochs, on the
  training split ``fnn train`` uses (``fnn.data.prepare``: 25 % test, 10 % validation, seed 0,
  standardised on the training split: 1,212 examples; 19 minibatches an epoch, the last filled up
  with the first examples of the epoch's permutation, as ``fnn.fit`` does). No validation.
* ``curve_gd``, ``curve_rprop``, ``curve_lm``: MATLAB-style curve fitting, a 1-10-1 tanh net
  (identity output, mse) on ``y = sin(x)`` at 200 points evenly spread over ``[0, 2 pi]``,
  unscaled (not ``fnn.datasets.sine``'s ``[-pi, pi]``: there the odd target and the zero initial
  biases make the biases' gradients 0 up to rounding, which sign-based Rprop turns into steps of
  its full size, and the contenders' rounding into different runs), full batch, 1,000 epochs
  (MATLAB's ``trainParam.epochs``), with fnn's ``gd`` (lr 0.1, its default), ``rprop`` (first
  step 0.01, its default) and ``levenberg_marquardt``. Levenberg-Marquardt may stop before 1,000
  epochs (its ``mu`` passing its maximum); its time is divided by the epochs it ran.

Contenders, each computing what the ``fnn.fit`` call computes (the same network, params, data,
loss, optimizer and learning rate, batch size, and for ``digits`` the same shuffled minibatches):

* ``fnn``: ``fnn.fit(net, params, (x, y), optimizer=..., learning_rate=..., batch_size=...,
  epochs=E, key=jax.random.key(0))`` as a user calls it (no progress bar, no validation),
  blocking on the params it returns; full batch is ``batch_size=None``. Besides the training it
  records each epoch's mean loss,
  per-layer gradient norms (and the train accuracy for ``digits``) in its history.
* ``jax``: plain JAX + optax, written here: the MLP's forward in ``jnp``, ``jax.value_and_grad`` of
  the same loss (integer labels: ``optax.softmax_cross_entropy_with_integer_labels``), the
  matching optax transform (``optax.adam(1e-3)``, ``optax.sgd(0.1)``, ``optax.rprop(0.01)``), all
  E epochs in one jitted ``lax.scan`` (``digits``: a scan over epochs of a scan over minibatches,
  the epochs' orders passed in); it returns the params and each epoch's mean loss.
* ``torch``: PyTorch eager, ``nn.Sequential`` of ``nn.Linear`` and ``nn.Tanh``/``nn.ReLU``, the
  same params copied in, ``torch.optim.Adam``/``SGD``/``Rprop`` (whose defaults are optax's:
  betas, eps, Rprop's etas and step bounds), the same loss (``0.5 * ((out - y) ** 2).sum(1).mean()``;
  ``F.cross_entropy`` on the labels), a Python loop over epochs (and minibatches). Its Rprop
  is the textbook one; optax's (fnn's ``rprop`` is ``optax.rprop``) applies every update one
  step late, its first update zero (optax pull request #1725): the PyTorch Rprop rows do the same
  work per step along another path.
* ``torch_compile``: the same with its training step (zero_grad, forward, loss, backward,
  ``optimizer.step()``) under ``torch.compile`` (inductor, which needs a C compiler on the CPU);
  a workload where it fails is ``skipped`` with the reason.

Levenberg-Marquardt has no optax transform and no PyTorch optimizer: ``curve_lm`` has no plain-JAX
and no PyTorch contender (``n/a``), and reports fnn alone with its fraction of the machine's limit.

The epochs' minibatch orders of ``digits`` are drawn on the host inside every contender's timed
run, as ``fnn.fit`` draws them (``epoch_order``: NumPy's ``default_rng([*key words, epoch])``
permutation, from the words of ``jax.random.key(0)``), so all three train on the same minibatches.

Timing. Every (workload, contender) measurement is a fresh Python process (``python -m
benchmarks.small --child ...``: JAX's and PyTorch's thread pools never share a process; a
PyTorch child imports neither jax nor fnn, a JAX child not torch, which each child checks and
reports). The child loads the workload's data and params (written once by the parent), builds
the trainer, runs one whole training of E epochs to warm up (compiling: XLA's, fnn's cache of
compiled programs, inductor's), then times one more training of E epochs from the same initial
params (the PyTorch params and optimizer state reset in place) and prints its result as JSON.
Threads: the environment is the parent's for every child; JAX uses all the cores it is given,
PyTorch its default ``torch.get_num_threads()`` (recorded). Inductor compiles in the child's own
process (``TORCHINDUCTOR_COMPILE_THREADS=1`` unless set): its default pool of compile workers,
started in the background, otherwise competes with the timed run. Rounds: every round runs every
contender of a workload once, in a freshly shuffled order (``seed``, default the time,
recorded). Per contender: microseconds per epoch, the median over rounds (min, max and every
sample kept); ratios are paired: the median over rounds of each round's own ratio.

Machine limit. The arithmetic an epoch needs, at this machine's measured rates:
``step_flops(sizes, batch) * steps / matmul peak`` (``fnn.scale.throughput``: the matmul FLOPs of
forward and backward; the peak: the best of 7 runs of a jitted 1024 x 1024 float32 matmul) plus
``examples * sum(hidden widths) / elementwise rate`` (the hidden activations' evaluations; the
rate: evaluations per second of a jitted ``jnp.tanh`` / relu, the best of 7 runs, the faster of
one pass over 10^7 float32 and 10 nested applications to 10^6 of them), all measured in the parent
once. A contender's ``fraction`` is this time over its
measured time (1 would be the machine's limit). It leaves out biases, the loss, the optimizer
update and, for Levenberg-Marquardt, its Jacobian, ``J^T J`` and its linear solves: the limit
counts only the gradient's share of the work LM does, so LM's fraction understates how close it
comes to the machine. One pass over 10^7 numbers is bound by memory (here it is the slower of the
two); the layers of these networks stay in cache, and the nested applications measure the rate
without the memory traffic.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = (
    Path(__file__).resolve().parents[1]
)  # the repository's root: the children run `-m benchmarks.small` there
CONTENDERS = ("fnn", "jax", "torch", "torch_compile")
LABELS = {
    "fnn": "fnn.fit",
    "jax": "plain JAX + optax",
    "torch": "PyTorch eager",
    "torch_compile": "torch.compile",
}
REFERENCES = ("jax", "torch", "torch_compile")  # the ratios: contender / reference, paired
DEFAULT_ROUNDS, QUICK_ROUNDS = 5, 2
KEY_SEED = 0  # fnn.fit(..., key=jax.random.key(KEY_SEED)); its words seed the minibatch orders
ELEMENTWISE_N, ELEMENTWISE_DEPTH = 10**7, 10  # evaluations, and nested applications
# inductor compiles in the child's own process: its default pool of compile workers, started in the
# background, otherwise still competes with the timed run (on 2 cores the compiled epochs took 10-50x longer)
CHILD_ENV = {"TORCHINDUCTOR_COMPILE_THREADS": "1"}  # unless the environment says otherwise
ENV_KEYS = (
    "XLA_FLAGS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "JAX_PLATFORMS",
    "TORCHINDUCTOR_COMPILE_THREADS",
)
NO_LM = "Levenberg-Marquardt has no optax transform"
NO_TORCH_LM = "PyTorch has no Levenberg-Marquardt optimizer"


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    what: str
    sizes: tuple[int, ...]
    activation: str  # of the hidden layers
    output: str
    loss: str
    optimizer: str  # fnn's name
    learning_rate: float | None  # what fnn.fit is given (None: the method chooses its own steps)
    batch_size: int | None  # None: the whole training set
    epochs: int
    quick_epochs: int
    missing: tuple[tuple[str, str], ...] = ()  # (contender, why it has no program here)

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.sizes[1:-1]


_CURVE = dict(
    sizes=(1, 10, 1), activation="tanh", output="identity", loss="mse", batch_size=None, epochs=1000
)
WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "simplechains",
            "SimpleChains.jl's benchmark: 2x2 matrix exponential, 10,000 examples, full batch",
            sizes=(4, 32, 16, 4), activation="tanh", output="identity", loss="mse",
            optimizer="adam", learning_rate=1e-3, batch_size=None, epochs=10_000, quick_epochs=100,
        ),
        Workload(
            "digits",
            "fnn train --dataset digits: 1,212 training examples, minibatch 64",
            sizes=(64, 128, 128, 10), activation="relu", output="softmax", loss="cross_entropy",
            optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=50, quick_epochs=3,
        ),
        Workload(
            "curve_gd", "sine curve fit, 200 points, full batch, gradient descent",
            optimizer="gd", learning_rate=0.1, quick_epochs=50, **_CURVE,
        ),
        Workload(
            "curve_rprop", "sine curve fit, 200 points, full batch, Rprop",
            optimizer="rprop", learning_rate=0.01, quick_epochs=50, **_CURVE,
        ),
        Workload(
            "curve_lm", "sine curve fit, 200 points, full batch, Levenberg-Marquardt",
            optimizer="levenberg_marquardt", learning_rate=None, quick_epochs=50, **_CURVE,
            missing=(("jax", NO_LM), ("torch", NO_TORCH_LM), ("torch_compile", NO_TORCH_LM)),
        ),
    )
}  # fmt: skip


# --------------------------------------------------------------------------- data (parent)


def make_data(wl: Workload) -> dict[str, np.ndarray]:
    """The workload's ``x``, ``y`` (float32; ``digits``: integer labels), initial params (``W0``,
    ``b0``, ...: ``fnn.init(jax.random.key(0), net)``) and ``key_words``, the words of
    ``jax.random.key(KEY_SEED)`` that seed the minibatch orders."""
    import jax

    import fnn

    if wl.name == "simplechains":
        import scipy.linalg

        x = np.random.default_rng(0).standard_normal((10_000, 4)).astype(np.float32)
        a = x.astype(np.float64).reshape(-1, 2, 2).transpose(0, 2, 1)  # column by column, as Julia's reshape
        y = scipy.linalg.expm(a).transpose(0, 2, 1).reshape(-1, 4).astype(np.float32)
    elif wl.name == "digits":
        splits = fnn.data.prepare(
            fnn.datasets.load("digits"), test_size=0.25, val_size=0.1, seed=0, scale="standard"
        )
        x, y = np.asarray(splits.train.x, np.float32), np.asarray(splits.train.y, np.int32)
    else:  # not centred on 0: on [-pi, pi] an odd target and zero initial biases make their gradients 0
        x = np.linspace(0.0, 2 * math.pi, 200)[:, None]
        x, y = x.astype(np.float32), np.sin(x).astype(np.float32)
    net = network(wl)
    params = fnn.init(jax.random.key(0), net)
    out = {"x": x, "y": y, "key_words": key_words(KEY_SEED)}
    for i, layer in enumerate(params):
        out[f"W{i}"], out[f"b{i}"] = np.asarray(layer["W"]), np.asarray(layer["b"])
    return out


def network(wl: Workload):
    import fnn

    return fnn.MLP(wl.sizes, activation=wl.activation, output=wl.output, loss=wl.loss)


def key_words(seed: int) -> np.ndarray:
    """The words of ``jax.random.key(seed)`` as host integers (what ``fnn.fit`` seeds its shuffling with)."""
    import jax

    return np.asarray(jax.random.key_data(jax.random.key(seed))).ravel().astype(np.uint64)


def params_of(data: dict) -> list[dict[str, np.ndarray]]:
    """The initial params as fnn's list of ``{"W", "b"}`` (host arrays)."""
    layers = sum(1 for k in data if k.startswith("W"))
    return [{"W": np.asarray(data[f"W{i}"]), "b": np.asarray(data[f"b{i}"])} for i in range(layers)]


def steps_and_batch(wl: Workload, n: int) -> tuple[int, int]:
    batch = n if wl.batch_size is None else min(wl.batch_size, n)
    return -(-n // batch), batch


def epoch_order(words: np.ndarray, epoch: int, n: int, batch: int) -> np.ndarray:
    """The example indices of each minibatch of ``epoch``, ``(steps, batch)`` int32, drawn as
    ``fnn.fit`` documents it: NumPy's permutation from ``(key words, epoch)``, filled up with its own
    first examples when ``batch`` does not divide ``n``."""
    steps = -(-n // batch)
    perm = np.random.default_rng([*np.asarray(words).tolist(), epoch]).permutation(n).astype(np.int32)
    return np.concatenate([perm, perm[: steps * batch - n]]).reshape(steps, batch)


# --------------------------------------------------------------------------- the contenders' trainers
# Each returns ``run() -> (params, epochs run)``: one whole training of ``epochs`` epochs from the initial
# params, blocking until its result is ready; ``as_numpy(params)`` gives fnn's list of {"W", "b"} on the host.


def fnn_trainer(wl: Workload, data: dict, epochs: int) -> Callable[[], tuple]:
    import jax
    import jax.numpy as jnp

    import fnn

    net = network(wl)
    params = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in params_of(data)]
    x, y = data["x"], data["y"]

    def run():
        p, history = fnn.fit(
            net,
            params,
            (x, y),
            optimizer=wl.optimizer,
            learning_rate=wl.learning_rate,
            batch_size=wl.batch_size,  # None: the whole training set
            epochs=epochs,
            key=jax.random.key(KEY_SEED),
        )
        return jax.block_until_ready(p), len(history)

    return run


def jax_trainer(wl: Workload, data: dict, epochs: int) -> Callable[[], tuple]:
    """Plain JAX + optax: the forward pass, ``jax.value_and_grad``, the optax update, all epochs in one
    jitted ``lax.scan``."""
    import jax
    import jax.numpy as jnp
    import optax

    if wl.optimizer not in ("adam", "gd", "rprop"):
        raise ValueError(f"no plain-JAX program for {wl.optimizer}")
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[wl.activation]
    tx = {"adam": optax.adam, "gd": optax.sgd, "rprop": optax.rprop}[wl.optimizer](wl.learning_rate)

    def predict(params, x):
        for layer in params[:-1]:
            x = act(x @ layer["W"] + layer["b"])
        return x @ params[-1]["W"] + params[-1]["b"]

    def loss_fn(params, x, y):
        z = predict(params, x)
        if wl.loss == "mse":
            return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=-1))
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(z, y))

    def step(carry, batch):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    n = data["x"].shape[0]
    _, batch = steps_and_batch(wl, n)
    params = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in params_of(data)]
    x, y, words = jnp.asarray(data["x"]), jnp.asarray(data["y"]), data["key_words"]

    if batch == n:  # full batch

        @jax.jit
        def train(params, x, y):
            carry, losses = jax.lax.scan(
                lambda c, _: step(c, (x, y)), (params, tx.init(params)), length=epochs
            )
            return carry[0], losses

        def run():
            p, losses = train(params, x, y)
            return jax.block_until_ready(p), epochs

        return run

    @jax.jit
    def train(params, x, y, orders):
        def epoch(carry, order):
            carry, losses = jax.lax.scan(lambda c, idx: step(c, (x[idx], y[idx])), carry, order)
            return carry, jnp.mean(losses)

        carry, losses = jax.lax.scan(epoch, (params, tx.init(params)), orders)
        return carry[0], losses

    def run():
        orders = np.stack([epoch_order(words, e, n, batch) for e in range(epochs)])
        p, losses = train(params, x, y, orders)
        return jax.block_until_ready(p), epochs

    return run


TORCH_STATE = {"step", "exp_avg", "exp_avg_sq", "prev", "step_size", "momentum_buffer"}


def torch_trainer(wl: Workload, data: dict, epochs: int, compiled: bool = False) -> Callable[[], tuple]:
    """PyTorch: ``nn.Sequential``, ``torch.optim``, a Python loop over epochs and minibatches; with
    ``compiled`` the training step under ``torch.compile``. Every ``run()`` starts from the initial
    params and a fresh optimizer state (both reset in place, so that a compiled step stays valid)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    if wl.optimizer not in ("adam", "gd", "rprop"):
        raise ValueError(f"no PyTorch optimizer for {wl.optimizer}")
    init = params_of(data)
    layers = []
    for i, layer in enumerate(init):
        layers.append(nn.Linear(*layer["W"].shape))
        if i < len(init) - 1:
            layers.append({"tanh": nn.Tanh, "relu": nn.ReLU}[wl.activation]())
    model = nn.Sequential(*layers)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    start = [(torch.tensor(la["W"].T.copy()), torch.tensor(la["b"])) for la in init]
    lr = wl.learning_rate
    opt = {"adam": torch.optim.Adam, "gd": torch.optim.SGD, "rprop": torch.optim.Rprop}[wl.optimizer](
        model.parameters(), lr=lr
    )
    x = torch.from_numpy(np.ascontiguousarray(data["x"]))
    y = torch.from_numpy(
        np.ascontiguousarray(data["y"], np.int64 if wl.loss == "cross_entropy" else np.float32)
    )
    n, words = x.shape[0], data["key_words"]
    _, batch = steps_and_batch(wl, n)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = 0.5 * ((out - yb) ** 2).sum(dim=1).mean() if wl.loss == "mse" else F.cross_entropy(out, yb)
        loss.backward()
        opt.step()
        return loss.detach()

    train_step = torch.compile(step) if compiled else step

    def reset():
        with torch.no_grad():
            for m, (w, b) in zip(linears, start):
                m.weight.copy_(w)
                m.bias.copy_(b)
            for state in opt.state.values():  # as the optimizers create it at their first step
                unknown = set(state) - TORCH_STATE
                if unknown:
                    raise RuntimeError(
                        f"unknown {type(opt).__name__} state {sorted(unknown)}: cannot reset it"
                    )
                for k, v in state.items():
                    if k == "step_size":  # Rprop's, which starts at the learning rate
                        v.fill_(lr)
                    elif isinstance(v, torch.Tensor):
                        v.zero_()

    def run():
        reset()
        for e in range(epochs):
            if batch == n:
                train_step(x, y)
            else:
                for idx in torch.from_numpy(epoch_order(words, e, n, batch)):
                    train_step(x[idx], y[idx])
        return model, epochs

    return run


def trainer(wl: Workload, contender: str, data: dict, epochs: int) -> Callable[[], tuple]:
    if contender == "fnn":
        return fnn_trainer(wl, data, epochs)
    if contender == "jax":
        return jax_trainer(wl, data, epochs)
    if contender in ("torch", "torch_compile"):
        return torch_trainer(wl, data, epochs, compiled=contender == "torch_compile")
    raise ValueError(f"unknown contender {contender!r}; expected one of {list(CONTENDERS)}")


def as_numpy(params) -> list[dict[str, np.ndarray]]:
    """fnn's list of ``{"W", "b"}`` on the host, from a trainer's params (JAX's or a torch model)."""
    if hasattr(params, "parameters"):  # a torch model: nn.Linear keeps W transposed
        linears = [m for m in params if hasattr(m, "weight")]
        return [
            {"W": m.weight.detach().numpy().T.copy(), "b": m.bias.detach().numpy().copy()} for m in linears
        ]
    return [{k: np.asarray(v) for k, v in layer.items()} for layer in params]


def train(wl: Workload, contender: str, data: dict, epochs: int) -> list[dict[str, np.ndarray]]:
    """One training of ``epochs`` epochs by ``contender`` (no warm-up, not timed): its final params."""
    return as_numpy(trainer(wl, contender, data, epochs)()[0])


# --------------------------------------------------------------------------- one measurement (the child)


def measure(wl: Workload, contender: str, data: dict, epochs: int) -> dict:
    """Warm up with one whole training of ``epochs`` epochs, then time one more."""
    t0 = time.perf_counter()
    run = trainer(wl, contender, data, epochs)
    t1 = time.perf_counter()
    run()
    t2 = time.perf_counter()
    _, done = run()
    t3 = time.perf_counter()
    out = {
        "seconds": t3 - t2,
        "epochs_run": done,
        "us_per_epoch": 1e6 * (t3 - t2) / done,
        "build_s": t1 - t0,
        "warmup_s": t2 - t1,
        "pid": os.getpid(),
        "modules": {m: m in sys.modules for m in ("jax", "torch")},
    }
    if contender.startswith("torch"):
        import torch

        out["threads"] = {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads()}
    else:
        import jax

        out["threads"] = {"jax_devices": jax.device_count(), "cpu_cores": len(os.sched_getaffinity(0))}
    return out


def child_main(argv: list[str]) -> int:
    """``python -m benchmarks.small --child WORKLOAD CONTENDER DATA.npz EPOCHS``: one measurement,
    printed as ``RESULT {json}``."""
    _, name, contender, path, epochs = argv
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    result = measure(WORKLOADS[name], contender, data, int(epochs))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def in_child(name: str, contender: str, path: str, epochs: int) -> dict:
    """``measure`` in a fresh Python process; ``RuntimeError`` with its stderr's end if it fails."""
    env = {
        **CHILD_ENV,
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-m", "benchmarks.small", "--child", name, contender, path, str(epochs)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode or "RESULT " not in proc.stdout:
        raise RuntimeError(f"exit status {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


# --------------------------------------------------------------------------- the machine's rates (parent)


def elementwise_rate(fn, n: int, depth: int = 1, repeats: int = 7) -> dict:
    """Evaluations per second of ``fn`` applied ``depth`` times in a row (one jitted, fused program) to ``n``
    float32 numbers: with ``depth`` 1 the numbers stream through memory, with more each is loaded once."""
    import jax

    def chain(a):
        for _ in range(depth):
            a = fn(a)
        return a

    a = jax.random.normal(jax.random.key(1), (n,), jax.numpy.float32)
    call = jax.jit(chain).lower(a).compile()
    jax.block_until_ready(call(a))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call(a))
        times.append(time.perf_counter() - t0)
    return {
        "n": n,
        "depth": depth,
        "best_per_s": n * depth / min(times),
        "median_per_s": n * depth / statistics.median(times),
        "repeats": repeats,
    }


def _relu_step(a):
    """One relu evaluation, shifted so that a chain of them does not simplify away (a max, a subtraction)."""
    import jax

    return jax.nn.relu(a) - 0.5


def measure_peaks() -> dict:
    """The matmul peak (1024 x 1024 float32) and the tanh and relu rates, on JAX's default device.

    Each activation's rate is measured twice over 10^7 evaluations: streamed (one pass over 10^7 numbers,
    bound by memory here) and chained (10 nested applications to 10^6 numbers, each number loaded once);
    the limit takes the faster, the machine's best (the layers of these networks stay in cache)."""
    import jax
    import jax.numpy as jnp

    from fnn.scale.throughput import matmul_peak

    t0 = time.perf_counter()
    mm = matmul_peak(jax.devices()[0], jnp.float32, 1024, repeats=7)
    out = {"matmul": mm, "matmul_flops_per_s": mm["best_flops_per_s"]}
    for name, fn in (("tanh", jnp.tanh), ("relu", _relu_step)):
        stream = elementwise_rate(fn, ELEMENTWISE_N)
        chained = elementwise_rate(fn, ELEMENTWISE_N // ELEMENTWISE_DEPTH, ELEMENTWISE_DEPTH)
        out[name] = {
            "stream": stream,
            "chained": chained,
            "best_per_s": max(stream["best_per_s"], chained["best_per_s"]),
        }
    out["used"] = (
        "the best of the repeats (the machine's limit); activations: the faster of stream and chained"
    )
    out["seconds"] = time.perf_counter() - t0
    return out


def limit(wl: Workload, n: int, peaks: dict) -> dict:
    """The arithmetic an epoch needs and its time at the machine's measured rates."""
    from fnn.scale.throughput import step_flops

    steps, batch = steps_and_batch(wl, n)
    flops = step_flops(wl.sizes, batch) * steps
    activations = steps * batch * sum(wl.hidden)
    matmul_s = flops / peaks["matmul_flops_per_s"]
    act_s = activations / peaks[wl.activation]["best_per_s"]
    return {
        "n": n,
        "batch": batch,
        "steps_per_epoch": steps,
        "matmul_flops": flops,
        "activations": activations,
        "matmul_us": 1e6 * matmul_s,
        "activation_us": 1e6 * act_s,
        "us_per_epoch": 1e6 * (matmul_s + act_s),
    }


# --------------------------------------------------------------------------- the run (parent)


def run(
    workloads=None,
    contenders=None,
    rounds: int | None = None,
    seed: int | None = None,
    quick: bool = False,
    epochs: int | None = None,
    fresh: bool = True,
    progress: Callable[[str], None] | None = print,
    on_round: Callable[[dict], None] | None = None,
    command: list[str] | None = None,
) -> dict:
    """Measure ``workloads`` (names; default all) with ``contenders`` (default all) in interleaved rounds.

    ``epochs``: for every workload instead of its own (``quick``: its ``quick_epochs``); ``fresh``:
    every measurement in a new process (``False``: in this one, for the smoke test); ``on_round``:
    called with the results so far after every round; ``command``: recorded (default ``sys.argv``)."""
    import jax

    from benchmarks import machine

    names = list(WORKLOADS) if workloads is None else list(workloads)
    chosen = list(CONTENDERS) if contenders is None else list(contenders)
    for c in chosen:
        if c not in CONTENDERS:
            raise ValueError(f"unknown contender {c!r}; expected some of {list(CONTENDERS)}")
    rounds = rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    seed = int(time.time()) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    results = {
        "benchmark": "small networks: fnn.fit vs plain JAX + optax vs PyTorch eager vs torch.compile, "
        "microseconds per epoch",
        "method": __doc__.strip(),
        "machine": machine.describe(jax.devices()[0]),
        "versions": versions(),
        "command": command if command is not None else [Path(sys.executable).name, *sys.argv],
        "environment": {k: os.environ.get(k, CHILD_ENV.get(k)) for k in ENV_KEYS},  # the children's
        "load_average_before": os.getloadavg(),
        "seed": seed,
        "rounds": rounds,
        "quick": quick,
        "epochs_override": epochs,
        "fresh_processes": fresh,
        "contenders": chosen,
        "labels": LABELS,
        "peaks": measure_peaks(),
        "workloads": {},
        "complete": False,
    }
    tmp = tempfile.TemporaryDirectory(prefix="fnn-bench-small-")
    try:
        for name in names:
            wl = WORKLOADS[name]
            results["workloads"][name] = entry = run_workload(
                wl,
                chosen,
                rounds,
                rng,
                quick,
                epochs,
                fresh,
                results["peaks"],
                tmp.name,
                progress,
                on_round,
                results,
            )
            analyse(entry)
    finally:
        tmp.cleanup()
    results["load_average_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t_start
    results["complete"] = True
    if quick or epochs is not None or rounds != DEFAULT_ROUNDS:
        results["estimated_default_run_s"] = estimate_default_run(results)
    return results


def run_workload(
    wl, chosen, rounds, rng, quick, epochs, fresh, peaks, tmp, progress, on_round, results
) -> dict:
    data = make_data(wl)
    path = os.path.join(tmp, f"{wl.name}.npz")
    np.savez(path, **data)
    n_epochs = epochs if epochs is not None else (wl.quick_epochs if quick else wl.epochs)
    missing = dict(wl.missing)
    rows = {}
    for c in chosen:
        rows[c] = {"label": LABELS[c], "status": "n/a" if c in missing else "measured", "samples": []}
        if c in missing:
            rows[c]["reason"] = missing[c]
        elif c.startswith("torch") and importlib.util.find_spec("torch") is None:
            rows[c].update(status="skipped", reason="torch is not installed")
    entry = {
        "what": wl.what,
        "network": {
            "sizes": list(wl.sizes),
            "activation": wl.activation,
            "output": wl.output,
            "loss": wl.loss,
        },
        "optimizer": wl.optimizer,
        "learning_rate": wl.learning_rate,
        "batch_size": wl.batch_size,
        "epochs": n_epochs,
        "limit": limit(wl, data["x"].shape[0], peaks),
        "contenders": rows,
        "orders": [],
        "load_average_1_min": [],  # at the end of each round: other work on the machine shows here
    }
    for r in range(rounds):
        live = [c for c in chosen if rows[c]["status"] == "measured"]
        order = [live[i] for i in rng.permutation(len(live))]
        entry["orders"].append(order)
        for c in order:
            t0 = time.perf_counter()
            try:
                got = in_child(wl.name, c, path, n_epochs) if fresh else measure(wl, c, data, n_epochs)
            except Exception as err:  # a contender that fails is reported, not dropped
                rows[c]["status"] = "skipped" if c == "torch_compile" else "error"
                rows[c]["reason"] = f"round {r + 1}: {type(err).__name__}: {str(err)[-1500:]}"
                rows[c]["samples"] = []
                continue
            got["round"], got["child_wall_s"] = r, time.perf_counter() - t0
            rows[c]["samples"].append(got)
        entry["load_average_1_min"].append(os.getloadavg()[0])
        if progress:
            shown = ", ".join(
                f"{c} {rows[c]['samples'][-1]['us_per_epoch']:,.0f}"
                if rows[c]["status"] == "measured"
                else f"{c} {rows[c]['status']}"
                for c in order
            )
            progress(
                f"{wl.name}: round {r + 1}/{rounds}, {n_epochs} epochs, us/epoch in the order run: {shown} "
                f"(load average {entry['load_average_1_min'][-1]:.1f})"
            )
        if on_round:
            analyse(entry)
            results["workloads"][wl.name] = entry
            on_round(results)
    return entry


def versions() -> dict:
    import jax
    import jaxlib
    import optax

    out = {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def _paired(a: list[dict], b: list[dict]) -> dict | None:
    """Median over rounds of ``a / b``, both of the same round."""
    by_round = {s["round"]: s["us_per_epoch"] for s in b}
    ratios = [s["us_per_epoch"] / by_round[s["round"]] for s in a if s["round"] in by_round]
    if not ratios:
        return None
    return {"paired": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "runs": ratios}


def analyse(entry: dict) -> dict:
    """Medians, spreads, paired ratios and fractions of the machine's limit, into ``entry``."""
    rows = entry["contenders"]
    for name, row in rows.items():
        us = [s["us_per_epoch"] for s in row["samples"]]
        row.update(
            us_per_epoch=statistics.median(us) if us else None,
            us_min=min(us) if us else None,
            us_max=max(us) if us else None,
            us_samples=us,
            fraction_of_limit=entry["limit"]["us_per_epoch"] / statistics.median(us) if us else None,
            ratios={
                f"vs_{ref}": _paired(row["samples"], rows[ref]["samples"])
                for ref in REFERENCES
                if ref in rows and ref != name
            },
        )
    fnn = rows.get("fnn")
    entry["fnn_over"] = {
        ref: (fnn["ratios"].get(f"vs_{ref}") or {}).get("paired") if fnn else None for ref in REFERENCES
    }
    return entry


def estimate_default_run(results: dict) -> dict:
    """Seconds a default run (every workload's own epochs, ``DEFAULT_ROUNDS`` rounds) would take, from this
    run's measurements: per child its fixed cost (start, imports, compiling: its wall time less its two
    trainings) plus two trainings of the default epochs at this run's median time per epoch
    (``total_s``), or at its fastest sample (``fastest_total_s``: nearer a quiet machine's, when other work
    slowed some samples)."""
    out = {"total_s": results["peaks"]["seconds"], "fastest_total_s": results["peaks"]["seconds"]}
    per = out["per_workload_s"] = {}
    for name, entry in results["workloads"].items():
        full = WORKLOADS[name].epochs
        median = fastest = 0.0
        for row in entry["contenders"].values():
            if not row["samples"]:
                continue
            fixed = max(statistics.median(s["child_wall_s"] - 2 * s["seconds"] for s in row["samples"]), 0.0)
            median += fixed + 2 * full * row["us_per_epoch"] * 1e-6
            fastest += fixed + 2 * full * row["us_min"] * 1e-6
        per[name] = {"median_s": median * DEFAULT_ROUNDS, "fastest_s": fastest * DEFAULT_ROUNDS}
        out["total_s"] += per[name]["median_s"]
        out["fastest_total_s"] += per[name]["fastest_s"]
    return out


# --------------------------------------------------------------------------- outputs


def _us(v) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _x(ratio) -> str:
    return "" if not ratio else f"{ratio['paired']:.2f}x"


def _load(results: dict) -> str:
    loads = [v for e in results["workloads"].values() for v in e.get("load_average_1_min", [])]
    return f"{min(loads):.1f} to {max(loads):.1f}" if loads else "not recorded"


def markdown(results: dict) -> str:
    m, p = results["machine"], results["peaks"]
    lines = [
        "# Small networks: microseconds per epoch",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['device_kind']}); jax {m['jax_version']}, "
        f"torch {results['versions'].get('torch') or 'not installed'}; float32. "
        f"{results['rounds']} rounds, order seed {results['seed']}; "
        f"{'fresh process per measurement' if results['fresh_processes'] else 'one process'}"
        f"{'; quick run' if results['quick'] else ''}.",
        "",
        f"Machine's rates: matmul {p['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s (1024 x 1024 float32), "
        f"tanh {p['tanh']['best_per_s'] / 1e9:.2f} G/s, relu {p['relu']['best_per_s'] / 1e9:.2f} G/s "
        f"(evaluations; streamed over 10^7 float32: tanh {p['tanh']['stream']['best_per_s'] / 1e9:.2f}, "
        f"relu {p['relu']['stream']['best_per_s'] / 1e9:.2f} G/s). Machine limit = matmul FLOPs / matmul "
        "rate + hidden activations / their rate; fraction = limit / measured. Ratios are paired (median "
        "of each round's own ratio).",
        "",
        f"Load average (1 min) at the rounds' ends: {_load(results)}; a busy machine spreads the samples.",
        "",
        "| workload | contender | us/epoch | min-max | vs plain JAX | vs PyTorch eager | vs torch.compile "
        "| fraction of machine limit |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, entry in results["workloads"].items():
        lim = entry["limit"]
        lines.append(
            f"| {name} ({entry['epochs']} epochs) | machine limit | {_us(lim['us_per_epoch'])} | | | | | 1 |"
        )
        for row in entry["contenders"].values():
            if row["status"] != "measured":
                lines.append(f"| {name} | {row['label']} | {row['status']} | | | | | |")
                notes.append(f"- {name}, {row['label']}: {row['status']}: {row.get('reason', '')}")
                continue
            r = row["ratios"]
            lines.append(
                f"| {name} | {row['label']} | {_us(row['us_per_epoch'])} | "
                f"{_us(row['us_min'])}-{_us(row['us_max'])} | {_x(r.get('vs_jax'))} | "
                f"{_x(r.get('vs_torch'))} | {_x(r.get('vs_torch_compile'))} | "
                f"{row['fraction_of_limit']:.3f} |"
            )
            runs = {s["epochs_run"] for s in row["samples"]}
            if runs != {entry["epochs"]}:
                notes.append(f"- {name}, {row['label']}: ran {sorted(runs)} of {entry['epochs']} epochs")
    if notes:
        lines += ["", *(n.replace("\n", " ")[:400] for n in notes)]
    est = results.get("estimated_default_run_s")
    if est:
        lines += [
            "",
            f"A default run ({DEFAULT_ROUNDS} rounds, default epochs) would take about "
            f"{est['total_s'] / 60:.0f} min (estimated from this run's medians; from its fastest samples "
            f"{est.get('fastest_total_s', math.nan) / 60:.0f} min).",
        ]
    return "\n".join(lines) + "\n"


def draw(results: dict, path) -> None:
    """Per workload, the us/epoch of each contender (median, min-max bar) on a log axis, the machine's
    limit dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 4.2), squeeze=False)
    colours = {"fnn": "tab:red", "jax": "tab:blue", "torch": "tab:orange", "torch_compile": "tab:green"}
    for ax, name in zip(axes[0], names):
        entry = results["workloads"][name]
        rows = entry["contenders"]
        for i, (c, row) in enumerate(rows.items()):
            if row["status"] == "measured":
                med = row["us_per_epoch"]
                err = [[med - row["us_min"]], [row["us_max"] - med]]
                ax.errorbar([i], [med], yerr=err, fmt="o", color=colours.get(c, "k"), capsize=3)
            else:
                ax.annotate(
                    row["status"],
                    (i, 0.02),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    fontsize=8,
                    color="grey",
                )
        line = ax.axhline(entry["limit"]["us_per_epoch"], ls="--", color="k", lw=1)
        ax.set_yscale("log")
        low, high = ax.get_ylim()  # room below the limit for the n/a marks, and above the highest bar
        ax.set_ylim(min(low, entry["limit"]["us_per_epoch"] / 2), high * 1.5)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_xticks(
            range(len(rows)),
            [rows[c]["label"].replace(" + ", "\n+ ") for c in rows],
            rotation=45,
            ha="right",
            fontsize=8,
        )
        ax.set_title(f"{name} ({entry['epochs']} epochs)", fontsize=9)
    axes[0][0].set_ylabel("microseconds per epoch (log; median, min-max)")
    m = results["machine"]
    fig.suptitle(f"small networks on {m['cpu']} ({m['cores']} cores), float32", fontsize=10)
    fig.legend(
        [line],
        ["machine limit: the epoch's matmul FLOPs and activations at this machine's measured rates"],
        loc="lower center",
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(results: dict, out) -> list[Path]:
    """``small.json`` (everything), ``small.md`` (the table) and ``small.png`` in ``out``, each replaced
    whole."""
    from benchmarks.output import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "small.json", out / "small.md", out / "small.png"]
    write_json(results, paths[0])
    redraw(results, out)
    return paths


def save_partial(results: dict, out) -> None:
    """The rounds so far, as ``small.json`` (``complete: false``)."""
    from benchmarks.output import write_json

    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(results, Path(out) / "small.json")


def redraw(results: dict, out) -> list[Path]:
    """``small.md`` and ``small.png`` from the results (``--plot-only``)."""
    out = Path(out)
    _replace_text(out / "small.md", markdown(results))
    tmp = out / "small.tmp.png"
    draw(results, tmp)
    os.replace(tmp, out / "small.png")
    return [out / "small.md", out / "small.png"]


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    sys.exit(child_main(sys.argv[1:]))
