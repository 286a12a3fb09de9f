"""``fnn.fit``: the training loop, one compiled program per epoch.

    params, history = fnn.fit(net, params, (x, y), optimizer="adam", epochs=50,
                              batch_size=64, key=jax.random.key(0), validation=(xv, yv))

Each epoch is a single ``jax.jit``-compiled function: ``lax.scan`` over the
minibatches of a permutation of the training set, each step running the
forward pass, fnn's hand-written backward pass (``fnn.backprop.backward``)
and the optimizer's update; the validation loss and accuracy are computed at
the end of the same program. The permutation of epoch ``e`` is drawn on the
host from the key and ``e`` (``epoch_indices``), so a run is a deterministic
function of its key, and a run resumed from a checkpoint at any epoch ends
with exactly the params of an uninterrupted one (on CPU, where XLA is
deterministic). Epoch ``e + 1`` is launched before the statistics of epoch
``e`` are read, so the host's bookkeeping overlaps the computation.

Minibatches all have ``batch_size`` examples: when it does not divide the
training set, the last minibatch is filled up with the first examples of the
epoch's permutation, so every example is seen at least once per epoch.

Stopping: after ``epochs`` epochs; when the epoch's train loss ``<= goal``;
when the mean gradient norm ``<= min_grad``; when the validation loss has not
improved (by more than ``min_delta``) for ``patience`` epochs, in which case
the params of the best validation epoch are restored; when Levenberg-Marquardt's
``mu`` exceeds its maximum; or when the loss becomes NaN/inf, in which case the
params of the last finite epoch are kept (``history.diverged``) and a warning
names the epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from fnn import checkpoint as ckpt_io
from fnn import diagnostics as diag
from fnn import distributed, metrics, optimizers, throughput, validation
from fnn import precision as precisions
from fnn.backprop import backward
from fnn.forward import compiled_loss, compiled_predict, forward, loss_from_cache
from fnn.network import MLP


@dataclasses.dataclass
class History:
    """Per-epoch records of a run (one entry per completed epoch in each list)."""

    epoch: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)  # mean of the epoch's minibatch losses
    train_accuracy: list = dataclasses.field(default_factory=list)  # on the epoch's minibatches (classifiers)
    val_loss: list = dataclasses.field(default_factory=list)  # at the end of the epoch
    val_accuracy: list = dataclasses.field(default_factory=list)
    learning_rate: list = dataclasses.field(default_factory=list)  # at the end of the epoch (NaN: none)
    mu: list = dataclasses.field(default_factory=list)  # Levenberg-Marquardt's mu (NaN otherwise)
    grad_norm: list = dataclasses.field(default_factory=list)  # per layer: mean over steps of ||(dW, db)||
    epoch_time_s: list = dataclasses.field(default_factory=list)  # since the previous epoch ended (first: + compile)
    wall_time_s: list = dataclasses.field(default_factory=list)  # cumulative
    samples_per_s: list = dataclasses.field(default_factory=list)  # training examples per second of the epoch
    tflops: list = dataclasses.field(default_factory=list)  # achieved TFLOP/s (fnn.throughput.step_flops)
    best_epoch: int | None = None  # epoch of the lowest validation loss
    stop_reason: str = ""
    diverged: bool = False
    # fit(..., diagnostics=True): per-epoch lists of per-layer values, keys fnn.diagnostics.KEYS
    diagnostics: dict = dataclasses.field(default_factory=dict)
    # the optimizer's state after the last epoch, for fit(..., opt_state=) to continue from (not in to_dict)
    opt_state: Any = dataclasses.field(default=None, repr=False, compare=False)

    COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "mu",
               "epoch_time_s", "wall_time_s", "samples_per_s", "tflops")

    def __len__(self):
        return len(self.epoch)

    def to_dict(self) -> dict:
        """The records as plain lists and numbers (JSON-serialisable; without ``opt_state``)."""
        d = dataclasses.asdict(dataclasses.replace(self, opt_state=None))
        del d["opt_state"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The inverse of ``to_dict``. A column of ``COLUMNS`` that ``d`` lacks,
        or holds fewer entries of (a checkpoint written before the column was
        recorded), is filled with ``None`` at the front, so that the columns
        stay aligned by epoch (``to_csv`` writes empty cells)."""
        h = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        for name in cls.COLUMNS:
            values = getattr(h, name)
            if len(values) < len(h.epoch):
                setattr(h, name, [None] * (len(h.epoch) - len(values)) + values)
        return h

    def to_csv(self, path) -> None:
        n_layers = len(self.grad_norm[0]) if self.grad_norm else 0
        header = list(self.COLUMNS) + [f"grad_norm_{l + 1}" for l in range(n_layers)]
        lines = [",".join(header)]
        for i in range(len(self)):
            row = [getattr(self, c)[i] for c in self.COLUMNS] + list(self.grad_norm[i])
            lines.append(",".join(_csv_cell(v) for v in row))
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def _csv_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: carries the last completed epoch's state (and checkpoint path)."""

    def __init__(self, params, history: History, epoch: int, checkpoint: str | None):
        super().__init__(f"interrupted after epoch {epoch}")
        self.params, self.history, self.epoch, self.checkpoint = params, history, epoch, checkpoint


# --------------------------------------------------------------------------- the compiled epoch


def _layer_norms(grads):
    return jnp.stack([jnp.sqrt(jnp.sum(g["W"] ** 2) + jnp.sum(g["b"] ** 2)) for g in grads])


CHECKPOINT_SECONDS = 30.0


def _checkpoint_due(epoch: int, every: int | None, saved_time: float) -> bool:
    if every is not None:
        return epoch % every == 0
    return time.monotonic() - saved_time >= CHECKPOINT_SECONDS


@functools.lru_cache(maxsize=32)  # same configuration, same compiled epoch: fits after the first skip compiling
def make_epoch(net: MLP, tx, n: int, batch: int, has_val: bool, policy=None, mesh=None, feed: str = "device",
               flat: bool = False):
    """The jitted ``epoch(params, opt_state, order, x, y, xv, yv) -> (params, opt_state, stats)``.

    ``order``: the epoch's example indices, ``(steps, batch)`` int32, from
    ``epoch_indices`` (computed on the host, so that the compiled epoch holds
    no random-number generator and no sort).
    ``policy``: a ``fnn.precision.Policy`` (``None``: compute in the params' dtype).
    ``mesh``: a ``fnn.distributed`` mesh; each minibatch is then sharded over
    its ``data`` axis and XLA reduces the gradients (``None``: one device).
    ``feed``: ``"device"``, the whole training set is an argument and each
    step gathers its minibatch with ``order``; ``"host"``, ``x`` and ``y`` are
    the epoch's minibatches already gathered, ``(steps, batch, ...)`` (see
    ``epoch_batches``), and ``order`` is unused.
    ``flat``: the optimizer sees the params as one vector
    (``jax.flatten_util.ravel_pytree``), so its update is one fused pass over
    all P parameters instead of one per array; for transforms that act on
    each parameter alone (every built-in optimizer). ``opt_state`` is then the
    state of ``tx.init(ravel_pytree(params)[0])``.
    """
    steps = -(-n // batch)
    classify = metrics.has_accuracy(net)
    host_fed = feed == "host"
    sharded = None if mesh is None else distributed.batch_sharding(mesh)

    def epoch_fn(params, opt_state, order, x, y, xv, yv):
        to_tree = ravel_pytree(params)[1] if flat else (lambda p: p)
        shuffle = order.shape[1] > 0  # epoch_indices gives no order when one full batch is the whole epoch

        def step(carry, batch_or_idx):
            p, opt_state = carry
            if host_fed:
                xb, yb = batch_or_idx
            else:
                xb, yb = (x[batch_or_idx], y[batch_or_idx]) if shuffle else (x, y)
            if sharded is not None:  # keep the minibatch split over the devices
                xb = jax.lax.with_sharding_constraint(xb, sharded)
                yb = jax.lax.with_sharding_constraint(yb, sharded)
            # fnn's hand-written backprop, under the precision policy
            loss, grads, cache = precisions.backprop_step(net, policy, to_tree(p), xb, yb)
            out = {"loss": loss, "norms": _layer_norms(grads)}
            if classify:
                out["correct"] = metrics.correct(net, cache[-1].a, yb)
            if flat:
                grads = ravel_pytree(grads)[0]
            objective = optimizers.Objective(net, xb, yb, to_tree if flat else None)
            updates, opt_state = tx.update(grads, opt_state, p, value=loss, grad=grads, value_fn=objective)
            return (optax.apply_updates(p, updates), opt_state), out

        steps_over = (x, y) if host_fed else order
        carry = (ravel_pytree(params)[0] if flat else params, opt_state)
        (p, opt_state), out = jax.lax.scan(step, carry, steps_over)
        params = to_tree(p)
        stats = {
            "train_loss": jnp.mean(out["loss"]),
            "grad_norm": jnp.mean(out["norms"], axis=0),
            "finite": jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(p)]))
            & jnp.all(jnp.isfinite(out["loss"])),
        }
        if classify:
            stats["train_accuracy"] = jnp.sum(out["correct"]) / (steps * batch)
        if has_val:
            cache = precisions.forward_step(net, policy, params, xv)
            stats["val_loss"] = loss_from_cache(net, cache, yv)
            if classify:
                stats["val_accuracy"] = metrics.correct(net, cache[-1].a, yv) / xv.shape[0]
        lr = optimizers.learning_rate(opt_state)
        if lr is not None:
            stats["learning_rate"] = lr
        lm = optimizers.mu(opt_state)
        if lm is not None:
            stats["mu"], stats["mu_max"] = lm
        return params, opt_state, stats

    return jax.jit(epoch_fn)


@functools.lru_cache(maxsize=32)
def _opt_init(tx, flat: bool):
    """``tx.init`` as one compiled program (op by op, a new process would compile each of its operations)."""
    return jax.jit(lambda params: tx.init(ravel_pytree(params)[0] if flat else params))


def key_words(key) -> np.ndarray:
    """The words of a JAX PRNG key as host integers: the seed of the epochs' shuffling."""
    return np.asarray(jax.random.key_data(key)).ravel().astype(np.uint64)


def epoch_indices(seed: np.ndarray, epoch: int, n: int, batch: int) -> np.ndarray:
    """The example indices of each step of ``epoch``, ``(steps, batch)`` int32.

    A permutation drawn by NumPy from ``(seed, epoch)`` (``seed``: the run key's
    ``key_words``), filled up with its own first examples when ``batch`` does
    not divide ``n``. It is a function of the key and the epoch alone, so a
    resumed run shuffles exactly as an uninterrupted one; drawing it on the
    host keeps the compiled epoch free of a random-number generator and a sort,
    the slowest parts of it to compile. When one batch holds the whole set
    the order does not matter, and the result is empty, ``(1, 0)``.
    """
    if batch >= n:
        return np.zeros((1, 0), np.int32)
    steps = -(-n // batch)
    perm = np.random.default_rng([*seed.tolist(), epoch]).permutation(n).astype(np.int32)
    return np.concatenate([perm, perm[:steps * batch - n]]).reshape(steps, batch)


def epoch_batches(order: np.ndarray, x, y, mesh):
    """The epoch's minibatches ``x[order]``, ``y[order]`` gathered on the host, placed on ``mesh``.

    Shaped ``(steps, batch, ...)``; in a multi-process run each process
    transfers only its own rows of each batch.
    """
    idx = order if order.size else np.arange(x.shape[0])[None, :]
    sharding = distributed.stacked_batch_sharding(mesh)
    lo, hi = distributed.local_rows(sharding, idx.shape)
    local = idx[:, lo:hi]

    def put(a):
        return jax.make_array_from_process_local_data(sharding, a[local], (*idx.shape, *a.shape[1:]))

    return put(x), put(y)


# --------------------------------------------------------------------------- evaluation


def evaluate(net: MLP, params, x, y) -> dict:
    """``{"loss": ..., "accuracy": ...}`` (accuracy for classifiers only) on a whole split."""
    x, y = validation.prepare(net, params, x, y)
    yhat = compiled_predict(net, params, x)
    out = {"loss": float(compiled_loss(net, params, x, y))}
    if metrics.has_accuracy(net):
        out["accuracy"] = float(metrics.correct(net, yhat, y)) / x.shape[0]
    return out


# --------------------------------------------------------------------------- fit


def _as_key(key):
    if key is None:
        raise TypeError("fit needs key=jax.random.key(seed): the run is a deterministic function of it")
    if isinstance(key, int):
        raise TypeError("key must be a JAX PRNG key such as jax.random.key(0), not an int")
    if jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))


def _split_pair(name, data):
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data
    raise TypeError(f"{name} must be an (x, y) pair, got {type(data).__name__}")


def _check_positive_int(name, v, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def _optimizer(net: MLP, optimizer, learning_rate, **options):
    """``(tx, name, default batch size)`` for an optimizer given by name or as an optax transform."""
    if isinstance(optimizer, str):
        spec = optimizers.spec(optimizer)
        if optimizer == "levenberg_marquardt" and net.loss != "mse":
            raise ValueError(f"levenberg_marquardt minimises a sum of squared residuals and needs loss='mse', got {net.loss!r}")
        return optimizers.get(optimizer, learning_rate, **options), optimizer, None if spec.full_batch else 32
    if isinstance(optimizer, optax.GradientTransformation):
        return optax.with_extra_args_support(optimizer), getattr(optimizer, "__name__", type(optimizer).__name__), None
    raise TypeError(f"optimizer must be a name or an optax GradientTransformation, got {type(optimizer).__name__}")


def _check_lm_size(net: MLP, batch: int) -> None:
    """Levenberg-Marquardt builds the (batch x outputs, P) Jacobian and solves a P x P system: bound both."""
    entries = batch * net.sizes[-1] * net.n_params
    if net.n_params > optimizers.LM_MAX_PARAMS or entries > optimizers.LM_MAX_JACOBIAN:
        raise ValueError(
            f"levenberg_marquardt needs P <= {optimizers.LM_MAX_PARAMS} parameters and a Jacobian of at most "
            f"{optimizers.LM_MAX_JACOBIAN} entries (batch x outputs x P); got P = {net.n_params}, "
            f"{entries} entries: use a smaller network or batch, or another optimizer"
        )


def _local_devices(devices) -> list:
    """This process's devices for ``fit(devices=...)``: ``None``, a count, or a list of devices."""
    if devices is None:
        local = distributed.select_devices()
        return local if len(local) > 1 or distributed.multi_process() else local[:1]
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        return distributed.select_devices(count=int(devices))
    return list(devices)


def _resume(path: str, net: MLP, name: str, params, opt_state, key):
    """``(params, opt_state, key, start epoch, history, best)`` read from the checkpoint at ``path``.

    ``params`` and ``opt_state`` are the templates the saved trees are checked against and rebuilt on.
    """
    saved = ckpt_io.load(path)
    _check_same_run(saved.meta, net, name)
    params = ckpt_io.restore_tree(saved, "params", params)
    opt_state = ckpt_io.restore_tree(saved, "opt_state", opt_state)
    b = saved.meta.get("best", {})
    best = {"loss": math.inf if b.get("loss") is None else b["loss"], "epoch": b.get("epoch"),
            "params": ckpt_io.restore_tree(saved, "best_params", params) if "best_params" in saved.arrays else None,
            "bad": b.get("bad", 0)}
    history = History.from_dict(saved.meta["history"])
    history.stop_reason = ""
    return params, opt_state, saved.key if saved.key is not None else key, int(saved.meta["epoch"]), history, best


def _stop_reason(record: dict, stats: dict, best: dict, *, goal, min_grad, patience) -> str | None:
    """Why training stops after this epoch by ``fit``'s criteria, or ``None`` to go on."""
    if goal is not None and record["train_loss"] <= goal:
        return f"reached the goal: train loss {record['train_loss']:.3g} <= {goal:g}"
    if min_grad is not None and float(np.sqrt(np.sum(np.square(stats["grad_norm"])))) <= min_grad:
        return f"gradient norm fell to <= min_grad {min_grad:g}"
    if patience is not None and best["bad"] >= patience:
        return f"early stopping: no validation improvement for {patience} epochs (best epoch {best['epoch']})"
    if "mu" in stats and float(stats["mu"]) > float(stats["mu_max"]):
        return f"levenberg_marquardt: mu exceeded {float(stats['mu_max']):g} without lowering the loss"
    return None


def fit(
    net: MLP,
    params: list[dict],
    train,
    *,
    optimizer: str | optax.GradientTransformation = "adam",
    epochs: int = 100,
    batch_size: int | None = None,
    key,
    validation: Any = None,
    learning_rate: float | Callable | None = None,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    goal: float | None = None,
    min_grad: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
    config: dict | None = None,
    precision="fp32",
    devices=None,
    feed: str | None = None,
    peak_tflops: float | None = None,
    diagnostics: bool = False,
    opt_state=None,
) -> tuple[list[dict], History]:
    """Train ``net`` from ``params`` on ``train = (x, y)``; return ``(params, history)``.

    Args:
      optimizer: a name from ``fnn.optimizers.NAMES`` (built with
        ``learning_rate``, ``momentum``, ``nesterov``, ``weight_decay``,
        ``clip_norm``, see ``fnn.optimizers.get``) or any optax transform, which
        is called as ``update(grads, state, params, value=, grad=, value_fn=)``.
        A named optimizer updates all parameters as one flat vector (one fused
        pass; its state is shaped like ``ravel_pytree(params)[0]``); a
        transform given as an object sees the params' own structure, so that
        masks and per-layer transforms work.
      epochs: the total number of epochs (a resumed run counts those already done).
      batch_size: examples per step; ``None`` is the whole training set
        (full-batch), the default of ``gd``, ``adaptive_*``, ``rprop``, ``lbfgs``
        and ``levenberg_marquardt``; minibatch methods default to 32.
      key: ``jax.random.key(seed)``: the shuffling of every epoch derives from it.
      validation: ``(x, y)`` evaluated after every epoch; needed for ``patience``.
      goal: stop when the epoch's train loss is ``<= goal``.
      min_grad: stop when the epoch's mean gradient norm is ``<= min_grad``.
      patience: early stopping: stop after ``patience`` epochs without a
        validation loss lower than the best by more than ``min_delta``.
      restore_best: return the best validation epoch's params (default: when
        ``patience`` is set).
      checkpoint: path of a ``.npz`` checkpoint written atomically at the end,
        on Ctrl-C, on divergence, and every ``checkpoint_every`` epochs or,
        when that is ``None`` (the default), whenever ``CHECKPOINT_SECONDS``
        have passed since the last one (writing every epoch of a fast run
        would cost more than the training).
      resume: continue from ``checkpoint`` if it exists (``params`` is then
        only a template for the structure).
      callback: called after each epoch with a dict of that epoch's record;
        returning ``True`` stops training.
      progress: show a tqdm progress bar with the loss and validation loss.
      config: JSON-serialisable settings stored in the checkpoint.
      precision: ``"fp32"`` (default), ``"tf32"``, ``"bf16"`` or a
        ``fnn.precision.Policy`` (``None``: compute in the params' dtype at
        JAX's default matmul precision, which on recent NVIDIA GPUs rounds
        float32 matmul inputs to TF32). ``fp32`` keeps float32 matmuls exact
        float32 on GPUs too (PyTorch's default as well); on CPU it changes
        nothing. ``bf16`` computes the hidden layers in bfloat16 while the
        params, the optimizer state, the loss and softmax stay float32.
      devices: data parallelism (``fnn.distributed``): an int (that many of
        the default backend's local devices), a list of ``jax.Device``, or
        ``None``: all local devices, or the one default device when there is
        only one. With ``D > 1`` devices each minibatch is split over them,
        and ``batch_size`` must divide by ``D`` (otherwise ``ValueError``). In
        a multi-process run (``jax.distributed``) the mesh spans all processes.
      feed: ``"device"``: the training set lives on the device(s) and each
        step gathers its minibatch there; ``"host"``: each epoch's minibatches
        are gathered on the host and transferred, the next epoch's while the
        current one runs. Default: ``"device"`` when the data takes at most a
        quarter of the device's memory and the run has one process.
      peak_tflops: the device's peak, for the MFU shown in the progress bar.
      diagnostics: after every epoch, record per-layer gradient and delta norms,
        saturation, dead relus and update-to-weight ratios on a fixed probe
        batch (the first 256 training examples) in ``history.diagnostics``
        (see ``fnn.diagnostics``).
      opt_state: the optimizer state to start from instead of a fresh one:
        ``history.opt_state`` of an earlier ``fit`` with the same network and
        optimizer settings, so that a run continued in several calls keeps
        its momentum, Adam's moments and step count. ``history.opt_state`` is
        the state after the last epoch run (also when ``restore_best``
        returns the params of an earlier one).

    ``history.train_loss`` is the mean of the epoch's minibatch losses, each
    taken before its update (for full-batch methods: the loss at the start of
    the epoch). Ctrl-C raises ``fnn.train.Interrupted`` (a ``KeyboardInterrupt``)
    after saving the checkpoint.
    """
    from fnn import validation as checks

    checks.check_net(net)
    _check_positive_int("epochs", epochs)
    _check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    _check_positive_int("patience", patience, allow_none=True)
    x, y = _split_pair("train", train)
    x, y = checks.prepare(net, params, x, y, read_device=True)
    checks.check_finite(train_x=x, train_y=y)
    probe = diag.probe_batch(x, y) if diagnostics else None
    n = x.shape[0]
    has_val = validation is not None
    if has_val:
        xv, yv = _split_pair("validation", validation)
        xv, yv = checks.prepare(net, params, xv, yv, read_device=True)
        checks.check_finite(validation_x=xv, validation_y=yv)
    else:
        xv = yv = np.zeros((0,), x.dtype)
        if patience is not None:
            raise ValueError("patience (early stopping) needs validation data")
    if restore_best is None:
        restore_best = patience is not None
    key = _as_key(key)

    tx, name, default_batch = _optimizer(net, optimizer, learning_rate, momentum=momentum, nesterov=nesterov,
                                         weight_decay=weight_decay, clip_norm=clip_norm)
    if batch_size is None:
        batch_size = default_batch
    _check_positive_int("batch_size", batch_size, allow_none=True)
    batch = n if batch_size is None else min(int(batch_size), n)
    if name == "levenberg_marquardt":
        _check_lm_size(net, batch)

    policy = precisions.get(precision)
    local = _local_devices(devices)
    mesh_devices = distributed.global_devices(local)
    use_mesh = len(mesh_devices) > 1
    if use_mesh:
        distributed.check_batch(batch, len(mesh_devices))
    if feed is None:
        fits = distributed.fits_on_device(x.nbytes + y.nbytes, local[0])
        feed = "device" if fits and not distributed.multi_process() else "host"
    if feed not in ("device", "host"):
        raise ValueError(f"feed must be 'device' or 'host', got {feed!r}")
    mesh = distributed.make_mesh(mesh_devices)
    flops_per_step = throughput.step_flops(net.sizes, batch)

    flat = isinstance(optimizer, str)  # the built-in optimizers act per parameter: update one flat vector
    fresh_state = _opt_init(tx, flat)(params)
    opt_state = fresh_state if opt_state is None else _check_opt_state(opt_state, fresh_state)
    history = History()
    start = 0
    best = {"loss": math.inf, "epoch": None, "params": None, "bad": 0}
    checkpoint = None if checkpoint is None else os.fspath(checkpoint)
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs the checkpoint path")
        if os.path.exists(checkpoint):
            params, opt_state, key, start, history, best = _resume(checkpoint, net, name, params, opt_state, key)

    meta_base = {
        "net": {"sizes": list(net.sizes), "activation": list(net.activation), "output": net.output, "loss": net.loss},
        "optimizer": name,
        "config": config or {},
    }

    def save(epoch, params_, opt_state_):
        if checkpoint is None or not distributed.is_writer():  # one process writes
            return
        params_, opt_state_ = distributed.to_local((params_, opt_state_))
        meta = dict(meta_base, epoch=epoch, history=history.to_dict(),
                    best={"loss": None if math.isinf(best["loss"]) else best["loss"], "epoch": best["epoch"],
                          "bad": best["bad"]})
        trees = {"params": params_, "opt_state": opt_state_}
        if best["params"] is not None:
            trees["best_params"] = distributed.to_local(best["params"])
        ckpt_io.save(checkpoint, trees=trees, key=key, meta=meta)

    # Placement: params, optimizer state and the data on the run's devices,
    # replicated over the mesh; the minibatches are split inside the epoch.
    everywhere = distributed.replicated(mesh)
    seed = key_words(key)  # every epoch's shuffling derives from it, on the host
    params, opt_state = distributed.put_global((params, opt_state), everywhere)
    xv, yv = distributed.put_global((xv, yv), everywhere)
    if feed == "device":
        x, y = distributed.put_global((x, y), everywhere)
    else:
        x, y = np.asarray(x), np.asarray(y)
    epoch_fn = make_epoch(net, tx, n, batch, has_val, policy, mesh if use_mesh else None, feed, flat)

    def inputs(e):  # the epoch's order, and the data: all of it (device feed) or the minibatches (host feed)
        order = epoch_indices(seed, e, n, batch)
        data_ = (x, y) if feed == "device" else epoch_batches(order, x, y, mesh)
        return (distributed.put_global(order, everywhere), *data_)

    def launch(e, params_, opt_state_):
        """Start epoch ``e``; JAX returns at once while the epoch runs (asynchronous dispatch)."""
        with precisions.matmul_context(policy):
            return epoch_fn(params_, opt_state_, *inputs(e), xv, yv)

    bar = _progress_bar(epochs, start) if progress else None
    t_start = time.perf_counter()
    t_before = history.wall_time_s[-1] if history.wall_time_s else 0.0
    epoch = start
    saved_at, saved_time = start, time.monotonic()
    t0 = time.perf_counter()
    try:
        running = launch(epoch, params, opt_state) if epoch < epochs else None
        while running is not None:
            new_params, new_state, stats = running
            # Launch the next epoch before reading this one's statistics, so the
            # host's bookkeeping overlaps the next epoch's compute; if this
            # epoch ends the run, the next one is dropped unread. Not after the
            # first epoch of the call: the next one then starts once this one
            # is seen to end, so the epoch times after the first add up to the
            # time the epochs took.
            ahead = epoch > start and epoch + 1 < epochs
            running = launch(epoch + 1, new_params, new_state) if ahead else None
            stats = jax.device_get(distributed.to_local(stats))
            t1 = time.perf_counter()
            dt, t0 = t1 - t0, t1  # from the previous epoch's end (the first: from the start, compiling included)
            if not bool(stats["finite"]):
                history.diverged = True
                history.stop_reason = (
                    f"the training loss became non-finite ({float(stats['train_loss'])}) in epoch {epoch + 1}; "
                    f"kept the params of epoch {epoch}"
                )
                warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=2)
                if saved_at != epoch:
                    save(epoch, params, opt_state)
                break
            if probe is not None:
                diag.append(history.diagnostics, diag.record(net, params, new_params, *probe))
            params, opt_state = new_params, new_state
            epoch += 1
            record = _record(history, epoch, stats, dt, t_before + t1 - t_start,
                             throughput.rates(flops_per_step, -(-n // batch), batch, dt, peak_tflops))
            if has_val:
                v = record["val_loss"]
                if v < best["loss"] - min_delta:
                    best.update(loss=v, epoch=epoch, params=params if restore_best else None, bad=0)
                else:
                    best["bad"] += 1
                history.best_epoch = best["epoch"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(_postfix(record, peak_tflops), refresh=False)
            reason = _stop_reason(record, stats, best, goal=goal, min_grad=min_grad, patience=patience)
            if callback is not None and callback(record) is True and reason is None:
                reason = "stopped by callback"
            if reason is None and epoch >= epochs:
                reason = f"completed {epochs} epochs"
            if reason is not None:
                history.stop_reason = reason
            if checkpoint is not None and (reason is not None or _checkpoint_due(epoch, checkpoint_every, saved_time)):
                save(epoch, params, opt_state)
                saved_at, saved_time = epoch, time.monotonic()
            if reason is not None:
                break
            if running is None and epoch < epochs:
                running = launch(epoch, params, opt_state)
        if not history.stop_reason:
            history.stop_reason = f"completed {epochs} epochs"
    except KeyboardInterrupt:
        history.stop_reason = f"interrupted after epoch {epoch}"
        if checkpoint is not None and saved_at != epoch:
            save(epoch, params, opt_state)
        raise Interrupted(params, history, epoch, checkpoint) from None
    finally:
        if bar is not None:
            bar.close()
    history.opt_state = distributed.to_local(opt_state)
    if restore_best and best["params"] is not None:
        params = best["params"]
    return distributed.to_local(params), history


def _check_opt_state(given, fresh):
    """``given`` rebuilt on the structure of ``fresh``, after checking its leaves (``ValueError`` if they differ)."""
    flat = jax.tree_util.tree_flatten_with_path(given)[0]
    return validation.match_tree("opt_state", [jax.tree_util.keystr(p) for p, _ in flat], [a for _, a in flat], fresh,
                                 "pass history.opt_state of an earlier fit with the same network and optimizer settings")


def _check_same_run(meta, net, name):
    saved = meta.get("net", {})
    now = {"sizes": list(net.sizes), "activation": list(net.activation), "output": net.output, "loss": net.loss}
    if saved != now:
        raise ValueError(f"the checkpoint was written for network {saved}, not {now}")
    if meta.get("optimizer") != name:
        raise ValueError(f"the checkpoint was written with optimizer {meta.get('optimizer')!r}, not {name!r}")


def _record(history: History, epoch: int, stats: dict, dt: float, wall: float, speed: dict) -> dict:
    nan = float("nan")
    rec = {
        "epoch": epoch,
        "train_loss": float(stats["train_loss"]),
        "train_accuracy": float(stats["train_accuracy"]) if "train_accuracy" in stats else nan,
        "val_loss": float(stats["val_loss"]) if "val_loss" in stats else nan,
        "val_accuracy": float(stats["val_accuracy"]) if "val_accuracy" in stats else nan,
        "learning_rate": float(stats["learning_rate"]) if "learning_rate" in stats else nan,
        "mu": float(stats["mu"]) if "mu" in stats else nan,
        "grad_norm": [float(g) for g in stats["grad_norm"]],
        "epoch_time_s": dt,
        "wall_time_s": wall,
        "samples_per_s": speed["samples_per_s"],
        "tflops": speed["tflops"],
    }
    for k, v in rec.items():
        getattr(history, k).append(v)
    return rec


def _postfix(rec: dict, peak_tflops: float | None = None) -> dict:
    out = {"loss": f"{rec['train_loss']:.4g}"}
    if not math.isnan(rec["val_loss"]):
        out["val_loss"] = f"{rec['val_loss']:.4g}"
    if not math.isnan(rec["val_accuracy"]):
        out["val_acc"] = f"{rec['val_accuracy']:.3f}"
    if rec.get("samples_per_s"):
        out["samples/s"] = f"{rec['samples_per_s']:.3g}"
        out["TFLOP/s"] = f"{rec['tflops']:.3g}"
    if rec.get("tflops") and peak_tflops:
        out["MFU"] = f"{100 * rec['tflops'] / peak_tflops:.1f}%"
    return out


def _progress_bar(total: int, initial: int):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is an optional extra
        return None
    return tqdm(total=total, initial=initial, unit="epoch", desc="training", dynamic_ncols=True, leave=True)
