"""``fnn.fit``: the training loop, many epochs per compiled program, driving callbacks.

    params, history = fnn.fit(net, params, (x, y), optimizer="adam", epochs=50,
                              batch_size=64, key=jax.random.key(0), validation=(xv, yv),
                              callbacks=[fnn.callbacks.CSVLogger("log.csv")])

An epoch (``fnn.training.epoch``) is a scan over the minibatches of the
epoch's permutation, each step the network's forward pass, its hand-written
backward pass and the optimizer's update. ``fit`` runs a chunk of epochs in
one ``jax.jit`` program (``fnn.training.chunk``) and reads their statistics
back once; on a small network, where an epoch's arithmetic takes
microseconds, launching one program per epoch would cost more than the
epoch. The chunk rule: the call's first chunk is one epoch (it includes
compiling), then each chunk has at most ``GROWTH`` (8) times as many epochs
as the one before, as many as took about ``CHUNK_SECONDS`` (0.25 s) in the
last chunk,
at most ``MAX_CHUNK``, never past the run's end or an epoch a callback needs
the params of (``Callback.params_needed``: a checkpoint every ``k`` epochs
ends a chunk at each; a callback that does not say reads them every epoch,
and then one epoch is one program). So the progress bar, the callbacks and a
time-based checkpoint follow the run a few times a second. The chunk ends on
the device where a stopping rule fires (goal, min_grad, patience, the
method's rule, a non-finite loss: ``chunk.Goal``, ``chunk.Patience``, ...), and
the callbacks then see each of its epochs in order. ``chunk_epochs=k`` fixes
the chunk's length; ``1`` is one program per epoch. A run is a deterministic
function of its key, whatever its chunks, and a run resumed from a checkpoint
at any epoch ends with exactly the params of an uninterrupted one (on CPU,
where XLA is deterministic). Chunk ``c + 1`` is launched before the
statistics of chunk ``c`` are read, so the host's bookkeeping, the callbacks
included, overlaps the computation.

Throughput (``samples_per_s``, ``tflops`` in the history, and MFU in the
progress bar) is computed from completed work: the epochs of a chunk over the
wall time between the read of the chunk before and the read of this one,
never from the time one epoch's dispatch took (``fnn.scale.throughput``
refuses a time that would put the achieved FLOP/s above the peak).

After each epoch ``fit`` hands the ``Run`` to its callbacks (``fnn.callbacks``),
which record, write, show and decide when to stop: after ``epochs`` epochs;
when the train loss is ``<= goal`` or the gradient norm ``<= min_grad``
(``StopAt``); when the validation loss has not improved for ``patience``
epochs (``EarlyStopping``, which restores the best params); when the
method's own rule says so (``MethodStop``, e.g. Levenberg-Marquardt's ``mu``
passing its maximum); or when the loss becomes NaN/inf (``TerminateOnNaN``:
the params of the last finite epoch are kept, ``history.diverged`` is set and
a warning names the epoch). ``history.stop`` says which, as a value
(``fnn.Stop``: an ``fnn.StopKind`` and a message).

The loop knows no method by name: it reads the method's record
(``fnn.optimizers.Method``) for its defaults, whether it sees the params flat,
what it reports each epoch (the extra columns of the history) and its stop rule.

The network is anything that implements ``fnn.protocol.Network`` (an ``MLP``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn.scale.precision  # by its full name: fit's argument is named precision
from fnn.core import losses
from fnn.core.protocol import Network, loss_from_cache
from fnn.core.validation import check_finite, check_net, check_positive_int, match_tree, prepare
from fnn.optim import registry
from fnn.optim.method import Method
from fnn.scale import compile_cache, distributed, memory, throughput
from fnn.training import metrics
from fnn.training.callbacks import (
    Callback,
    Checkpoint,
    Diagnostics,
    EarlyStopping,
    Lambda,
    MethodStop,
    ProgressBar,
    StopAt,
    TerminateOnNaN,
)
from fnn.training.chunk import make_chunk
from fnn.training.epoch import epoch_batches, epoch_indices, key_words, make_epoch, opt_init
from fnn.training.history import History, Stop, StopKind

__all__ = ["History", "Interrupted", "Run", "evaluate", "fit", "epoch_indices", "key_words", "make_epoch"]

CHECKPOINT_SECONDS = 30.0  # fit(checkpoint=...) without checkpoint_every: a checkpoint at most this often


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: carries the last completed epoch's state (and checkpoint path)."""

    def __init__(self, params, history: History, epoch: int, checkpoint: str | None):
        super().__init__(f"interrupted after epoch {epoch}")
        self.params, self.history, self.epoch, self.checkpoint = params, history, epoch, checkpoint


class Deferred:
    """The params (or optimizer state) after an epoch inside a chunk, which ``fit`` did not read back
    (``fnn.training.chunk``). A callback that needs them says so (``Callback.params_needed``); ``fit``
    computes those a callback kept (``run.best_params``) or stopped at after the chunk, by running it
    again to that epoch."""

    __slots__ = ("epoch",)

    def __init__(self, epoch: int):
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"<the state after epoch {self.epoch}, inside a chunk: not read back>"


@dataclasses.dataclass(eq=False)
class Run:
    """A run in progress, as ``fit``'s callbacks see it (``fnn.callbacks``)."""

    net: Network
    params: Any
    opt_state: Any
    key: jax.Array
    epochs: int  # the run's total, a resumed run's earlier epochs included
    optimizer: str  # the optimizer's name (checked on resume)
    train: tuple  # (x, y), checked and converted
    validation: tuple | None
    config: dict = dataclasses.field(default_factory=dict)  # stored in checkpoints
    peak_tflops: float | None = None
    callbacks: list = dataclasses.field(default_factory=list)
    history: History = dataclasses.field(default_factory=History)
    epoch: int = 0  # epochs completed; in on_epoch_end, the one just completed (1-based)
    start: int = 0  # epochs completed before this call (those of the run resumed)
    record: dict | None = None  # the last epoch's record (a row of the history)
    stats: dict | None = None  # the last epoch's statistics as the compiled epoch returned them
    previous: tuple | None = None  # (params, opt_state) before the last epoch, during on_epoch_end
    best_params: Any = None  # set by EarlyStopping(restore_best=True): what fit returns
    resolve: Callable = lambda params: params  # a Deferred state as the real one (set by fit for each chunk)
    method: Method | None = None  # the method's record: its reports and stopping rule

    @property
    def params_known(self) -> bool:
        """Whether ``params`` and ``opt_state`` are those after this epoch, or ``Deferred`` (an epoch inside
        a chunk that was not read back: see ``fnn.callbacks.Callback.params_needed``)."""
        return not isinstance(self.params, Deferred) and not isinstance(self.opt_state, Deferred)

    @property
    def stop_reason(self) -> str:
        return self.history.stop_reason

    def stop(self, reason: str | Stop) -> bool:
        """Stop after this epoch for ``reason`` (a ``Stop``, or a sentence: a callback's), unless a reason was
        given before; returns ``True``."""
        if self.history.stop is None:
            self.history.stop = reason if isinstance(reason, Stop) else Stop(StopKind.CALLBACK, str(reason))
        return True

    def complete(self, params, opt_state, stats: dict, record: dict) -> None:
        """Take the results of the next epoch (``fit`` calls this before the callbacks)."""
        self.previous = (self.params, self.opt_state)
        self.params, self.opt_state, self.stats, self.record = params, opt_state, stats, record
        self.epoch += 1
        self.history.append(record)

    def undo_epoch(self) -> None:
        """Go back to the params, optimizer state and history before the last epoch."""
        self.params, self.opt_state = self.previous
        self.history.drop_last()
        self.epoch -= 1


CHUNK_SECONDS = 0.25  # a chunk of epochs lasts about this long: progress shows a few times a second
MAX_CHUNK = 1024  # epochs in one compiled program at most
GROWTH = 8  # a chunk has at most this many times the epochs of the one before
ORDER_BYTES = 16 * 2**20  # the example orders of one chunk, sent to the device, take at most this much


class _Launch(NamedTuple):
    """A chunk launched: what it started from (to run it again) and its results, still on the device."""

    first: int  # epochs completed before it
    limit: int  # epochs it runs at most
    start: tuple  # (params, opt_state, rule states, kept)
    out: tuple  # the program's outputs


class _Chunk(NamedTuple):
    """A chunk read back: each epoch's statistics (host values) and the state after its last finite one."""

    launch: _Launch
    stats: list  # one dict per epoch run
    final: tuple  # (params, opt_state) after epoch first + committed
    committed: int  # epochs of the chunk the final state is after
    halted: bool  # the device ended the chunk before its limit (non-finite, or a rule fired)
    next_start: tuple  # (params, opt_state, rule states, kept) to continue from
    seconds: float  # wall time between the previous read and this one
    kept_epoch: int | None  # the epoch (1-based) whose params the chunk kept, if any


class _Epochs:
    """The run's compiled chunks of epochs: the data and state placed on the devices, each chunk launched,
    read back and, when a callback needs an epoch inside it, run again to that epoch."""

    def __init__(self, run: Run, tx, batch: int, policy, mesh_devices: list, feed: str, chunk_epochs):
        x, y = run.train
        xv, yv = run.validation or (np.zeros((0,), x.dtype),) * 2
        self.n, self.batch, self.policy, self.feed = x.shape[0], batch, policy, feed
        self.mesh = distributed.make_mesh(mesh_devices)
        # params, optimizer state and the data replicated over the mesh;
        # each minibatch is split inside the epoch
        # (one device: the device itself, as XLA compiles a program without a mesh faster to run)
        self.everywhere = (
            distributed.replicated(self.mesh)
            if len(mesh_devices) > 1
            else jax.sharding.SingleDeviceSharding(mesh_devices[0])
        )
        self.seed = key_words(run.key)  # every epoch's shuffling derives from it, on the host
        self.key, self.stochastic = run.key, run.net.stochastic  # and its dropout
        run.params, run.opt_state = distributed.put_global((run.params, run.opt_state), self.everywhere)
        self.val = distributed.put_global((xv, yv), self.everywhere)
        self.data = (
            distributed.put_global((x, y), self.everywhere)
            if feed == "device"
            else (np.asarray(x), np.asarray(y))
        )
        mesh = self.mesh if len(mesh_devices) > 1 else None
        decided = [cb.device_rule(run) for cb in run.callbacks]
        self.rules = tuple(d[0] for d in decided if d is not None)
        self.keeps = any(getattr(rule, "keep", False) for rule in self.rules)
        self.steps = -(-self.n // batch)
        self.fixed = chunk_epochs  # epochs per chunk (None: about CHUNK_SECONDS of them)
        self.single = feed == "host" or chunk_epochs == 1  # one epoch per program: make_epoch's
        order_bytes = epoch_indices(self.seed, 0, self.n, batch).nbytes
        self.capacity = 1 if self.single else _capacity(chunk_epochs or run.epochs - run.epoch, order_bytes)
        args = (run.net, tx, self.n, batch, run.validation is not None, policy, mesh)
        if self.single:
            self.fn = make_epoch(*args, feed, run.method.flat, run.method.report)
        else:
            self.fn = make_chunk(*args, run.method.flat, run.method.report, self.capacity, self.rules)
        self.flops = run.net.step_flops(batch)
        self.peak_tflops = run.peak_tflops
        self.t_start = self.t_last = time.perf_counter()
        self.wall_before = run.history.wall_time_s[-1] if run.history.wall_time_s else 0.0
        self.per_epoch = None  # seconds per epoch of the last chunk read (None: not known yet)

    def start_state(self, run: Run) -> tuple:
        """``(params, opt_state, rule states, kept)`` from the run as its callbacks hold it."""
        decided = [cb.device_rule(run) for cb in run.callbacks]
        states = tuple(d[1] for d in decided if d is not None)
        kept = (np.int32(-1), run.params) if self.keeps else ()
        return run.params, run.opt_state, distributed.put_global(states, self.everywhere), kept

    def limit(self, run: Run, first: int, previous: int) -> int:
        """Epochs in the chunk that begins after ``first``: about ``CHUNK_SECONDS`` of them, at most
        ``GROWTH`` times the previous chunk's, never past an epoch a callback needs to see the params of, nor
        the run's end."""
        if self.fixed is not None:
            want = self.fixed
        elif self.per_epoch is None:
            want = 1
        else:
            want = max(1, min(GROWTH * previous, int(CHUNK_SECONDS / self.per_epoch)))
        needed = [cb.params_needed(first) for cb in run.callbacks]
        return max(1, min(want, self.capacity, run.epochs - first, *(k for k in needed if k is not None)))

    def launch(self, first: int, limit: int, start: tuple) -> _Launch:
        """Start ``limit`` epochs after epoch ``first``; JAX returns at once while they run (asynchronous
        dispatch)."""
        params, opt_state, states, kept = start
        put = functools.partial(distributed.put_global, sharding=self.everywhere)
        with fnn.scale.precision.matmul_context(self.policy):
            if self.single:
                order = epoch_indices(self.seed, first, self.n, self.batch)
                dropout = (put(self._epoch_key(first)),) if self.stochastic else ()
                data = epoch_batches(order, *self.data, self.mesh) if self.feed == "host" else self.data
                out = self.fn(params, opt_state, put(order), *data, *self.val, *dropout)
            else:
                orders = self._orders(first, limit)
                key = (put(jax.random.key_data(self.key)),) if self.stochastic else ()
                scalars = put((np.int32(first), np.int32(limit)))
                out = self.fn(
                    params, opt_state, put(orders), *scalars, *self.data, *self.val, states, kept, *key
                )
        return _Launch(first, limit, start, out)

    def _orders(self, first: int, limit: int) -> np.ndarray:
        """The example orders of epochs ``first .. first + limit - 1``, in the chunk's slots."""
        shape = epoch_indices(self.seed, first, self.n, self.batch).shape
        orders = np.zeros((self.capacity, *shape), np.int32)
        if orders.size:  # (a whole-set batch has no order)
            for i in range(limit):
                orders[i] = epoch_indices(self.seed, first + i, self.n, self.batch)
        return orders

    def _epoch_key(self, e: int):
        return jax.random.key_data(jax.random.fold_in(self.key, e))

    def read(self, launch: _Launch) -> _Chunk:
        """The chunk's results, waiting for its statistics."""
        if self.single:
            params, opt_state, stats = launch.out
            stats = _unstack(
                jax.tree_util.tree_map(lambda a: a[None], jax.device_get(distributed.to_local(stats))), 1
            )
            final, committed, halted, kept_epoch = (params, opt_state), 1, False, None
            next_start = _outputs_start(launch)
        else:
            params, opt_state, stacked, ran, halted, _, kept = launch.out
            stacked, ran, halted = jax.device_get(distributed.to_local((stacked, ran, halted)))
            ran, halted = int(ran), bool(halted)
            stats = _unstack(stacked, ran)
            committed = ran - (0 if stats[-1]["finite"] else 1)
            final, next_start = (params, opt_state), _outputs_start(launch)
            kept_epoch = int(jax.device_get(distributed.to_local(kept[0]))) + 1 if self.keeps else None
        now = time.perf_counter()
        # since the previous read; the call's first chunk is one epoch, its time compiling too when the
        # program is new: an overestimate, which the next chunks correct
        seconds, self.t_last = now - self.t_last, now
        self.per_epoch = seconds / len(stats)
        return _Chunk(launch, stats, final, committed, halted, next_start, seconds, kept_epoch)

    def again(self, chunk: _Chunk, epochs: int) -> tuple:
        """``(params, opt_state)`` after ``epochs`` epochs of ``chunk``: the same program run again from the
        same state to that epoch (the same bits)."""
        if epochs == chunk.committed:
            return chunk.final
        if epochs == 0:
            return chunk.launch.start[:2]
        return self.launch(chunk.launch.first, epochs, chunk.launch.start).out[:2]

    def records(self, chunk: _Chunk, t_before: float) -> list[dict]:
        """The history's rows of the chunk's epochs: each epoch the chunk's mean time and throughput."""
        ran = len(chunk.stats)
        dt = chunk.seconds / ran
        speed = throughput.rates(self.flops, self.steps * ran, self.batch, chunk.seconds, self.peak_tflops)
        wall = self.wall_before + t_before - self.t_start
        return [
            _record(chunk.launch.first + j + 1, stats, dt, wall + dt * (j + 1), speed)
            for j, stats in enumerate(chunk.stats)
        ]


def _capacity(epochs: int, order_bytes: int) -> int:
    """Slots of the chunk program: a power of two (few programs to compile over many fits) up to the run's
    epochs, at most ``MAX_CHUNK``, and few enough that the chunk's example orders (``order_bytes`` an
    epoch) fit ``ORDER_BYTES``."""
    fits = max(1, ORDER_BYTES // max(1, order_bytes))
    want = 1 << max(0, epochs - 1).bit_length()
    return max(1, min(want, MAX_CHUNK, 1 << (fits.bit_length() - 1)))


def _unstack(stacked: dict, ran: int) -> list[dict]:
    """Per-epoch dicts of host values from the chunk's stacked statistics (the first ``ran`` slots), each
    leaf turned into Python values at once (a chunk of a small network holds many epochs)."""
    leaves, tree = jax.tree_util.tree_flatten(stacked)
    columns = [np.asarray(leaf[:ran]).tolist() for leaf in leaves]
    return [jax.tree_util.tree_unflatten(tree, row) for row in zip(*columns)]


def _record(epoch: int, stats: dict, dt: float, wall: float, speed: dict) -> dict:
    """One epoch's row of the history: the generic columns, and the method's reports by their own names."""
    nan = float("nan")
    return {
        "epoch": epoch,
        "train_loss": float(stats["train_loss"]),
        "train_accuracy": float(stats.get("train_accuracy", nan)),
        "val_loss": float(stats.get("val_loss", nan)),
        "val_accuracy": float(stats.get("val_accuracy", nan)),
        "learning_rate": float(stats.get("learning_rate", nan)),
        **{name: float(v) for name, v in stats.get("reports", {}).items()},
        "grad_norm": [float(g) for g in stats["grad_norm"]],
        "epoch_time_s": dt,
        "wall_time_s": wall,
        "samples_per_s": speed["samples_per_s"],
        "tflops": speed["tflops"],
    }


def _epoch_end(run: Run, callbacks: list) -> bool:
    """Hand the epoch to every callback; whether one of them stops the run."""
    stop = False
    for cb in callbacks:
        stop = (cb.on_epoch_end(run) is True) or stop
        if run.history.diverged:  # TerminateOnNaN undid the epoch: no later callback sees it
            return True
    if stop and run.history.stop is None:
        run.stop("stopped by callback")
    run.previous = None  # needed while the callbacks see the epoch; then its memory is the device's again
    return stop


def _replay(run: Run, epochs: _Epochs, chunk: _Chunk, t_before: float) -> bool:
    """Hand the chunk's epochs to the callbacks, in order; whether one of them stopped the run. Then the
    state after the epoch the run stopped at, and the params a callback kept, are computed if the chunk
    did not return them."""
    stopped = False
    run.resolve = functools.partial(_resolve, epochs, chunk)
    try:
        for j, record in enumerate(epochs.records(chunk, t_before)):
            state = chunk.final if j + 1 == chunk.committed else (Deferred(record["epoch"]),) * 2
            run.complete(*state, chunk.stats[j], record)
            if _epoch_end(run, run.callbacks):
                stopped = True
                break
    finally:  # also when a callback raises (Ctrl-C): what is saved and returned is the epoch's real state
        _settle(run, epochs, chunk)
    return stopped


def _settle(run: Run, epochs: _Epochs, chunk: _Chunk) -> None:
    """Replace the run's ``Deferred`` states (inside ``chunk``) with the real ones."""
    if not run.params_known:
        run.params, run.opt_state = epochs.again(chunk, run.epoch - chunk.launch.first)
    run.best_params = _resolve(epochs, chunk, run.best_params)


def _resolve(epochs: _Epochs, chunk: _Chunk, params):
    """``params``, or, for a ``Deferred`` epoch of ``chunk``, that epoch's params: those the chunk kept,
    or the chunk run again to it."""
    if not isinstance(params, Deferred):
        return params
    if chunk.kept_epoch == params.epoch:
        return chunk.next_start[3][1]
    return epochs.again(chunk, params.epoch - chunk.launch.first)[0]


def _run_epochs(run: Run, epochs: _Epochs) -> None:
    """Run the chunks of epochs, handing each epoch to the callbacks, until one of them stops the run or
    all are done.

    The next chunk is launched before this one is read, from the state this
    one will end with, so the host's bookkeeping and the callbacks overlap
    the device's work; if this chunk ends the run, or ends before its limit,
    the next one is dropped unread. Not after the call's first chunk (one
    epoch, mostly compiling): the next then starts once it is seen to end, so
    the epoch times after the first add up to the time the epochs took.
    """
    if run.epoch >= run.epochs:
        run.stop(Stop(StopKind.COMPLETED, f"completed {run.epochs} epochs"))
        return
    running = epochs.launch(run.epoch, epochs.limit(run, run.epoch, 1), epochs.start_state(run))
    t_before = epochs.t_start
    while running is not None:
        end = running.first + running.limit
        ahead = running.first > run.start and end < run.epochs
        following = (
            epochs.launch(end, epochs.limit(run, end, running.limit), _outputs_start(running))
            if ahead
            else None
        )
        chunk = epochs.read(running)
        stopped = _replay(run, epochs, chunk, t_before)
        t_before = epochs.t_last
        if stopped or run.epoch >= run.epochs:
            break
        if following is None or chunk.halted:  # not launched, or launched from a chunk that ended early
            following = epochs.launch(
                run.epoch, epochs.limit(run, run.epoch, running.limit), epochs.start_state(run)
            )
        running = following
    run.stop(Stop(StopKind.COMPLETED, f"completed {run.epochs} epochs"))


def _outputs_start(launch: _Launch) -> tuple:
    """The state a launched chunk will end with, to launch the next one from (still on the device)."""
    if len(launch.out) == 3:  # one epoch fed from the host
        return (*launch.out[:2], *launch.start[2:])
    params, opt_state, _, _, _, states, kept = launch.out
    return params, opt_state, states, kept


def _fit_end(run: Run, callbacks: list) -> None:
    for cb in callbacks:
        cb.on_fit_end(run)


# --------------------------------------------------------------------------- evaluation


def evaluate(net: Network, params, x, y) -> dict:
    """``{"loss": ..., "accuracy": ...}`` of ``params`` on a whole split (accuracy for classifiers only).

    ``x`` and ``y`` as ``fnn.loss`` takes them (integer labels or one-hot rows
    for cross-entropy). One compiled program per network and shapes: the
    forward pass, the batch-mean loss and the count of correct predictions
    (``fnn.training.metrics.correct``). The values are read back, so device
    data are checked as host data are (labels in range included)."""
    x, y = prepare(net, params, x, y, read_device=True)
    loss, correct = _scores(net, params, x, y)
    out = {"loss": float(loss)}
    if metrics.has_accuracy(net):
        out["accuracy"] = int(correct) / x.shape[0]
    return out


@functools.partial(jax.jit, static_argnums=0)
def _scores(net: Network, params, x, y):
    """The batch-mean loss and the number of correct predictions (0 for regression), from one forward pass."""
    cache = net.forward(params, x)
    correct = metrics.correct(net, net.output_of(cache)[1], y)
    return loss_from_cache(net, cache, y), jnp.zeros((), jnp.int32) if correct is None else correct


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


def _optimizer(net, optimizer, learning_rate, **options):
    """``(tx, method)`` for an optimizer given by name, as a ``Method`` record or as an optax transform
    (built as it is: the options are for the methods fit builds)."""
    method = registry.resolve(optimizer)
    if method.least_squares and not losses.least_squares(net.loss):
        raise ValueError(
            f"{method.name} minimises a sum of squared residuals and needs loss='mse', got {net.loss!r}"
        )
    if isinstance(optimizer, optax.GradientTransformation):
        return optax.with_extra_args_support(optimizer), method
    return registry.get(method, learning_rate, **options), method


def _local_devices(devices) -> list:
    """This process's devices for ``fit(devices=...)``: ``None``, a count, or a list of devices."""
    if devices is None:
        local = distributed.select_devices()
        return local if len(local) > 1 or distributed.multi_process() else local[:1]
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        return distributed.select_devices(count=int(devices))
    return list(devices)


def _devices(devices, method: Method, net, params, batch: int) -> tuple[list, list]:
    """``(this process's devices, the mesh's)``, checked against what the method holds and the minibatch."""
    local = _local_devices(devices)
    if method.matrices:  # P x P matrices: they must fit the device
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        memory.check(method.name, net.n_params, dtype, local[0], method.matrices)
    mesh_devices = distributed.global_devices(local)
    if len(mesh_devices) > 1:
        distributed.check_batch(batch, len(mesh_devices))
    return local, mesh_devices


def _prepare_data(net, params, train, validation):
    """``(train, validation)`` as checked and converted ``(x, y)`` pairs (``validation`` may be ``None``)."""
    out = []
    for name, data in (("train", train), ("validation", validation)):
        if data is None:
            out.append(None)
            continue
        x, y = prepare(net, params, *_split_pair(name, data), read_device=True)
        check_finite(**{f"{name}_x": x, f"{name}_y": y})
        out.append((x, y))
    return tuple(out)


def _batch(batch_size, method: Method, n: int) -> int:
    """Examples per step: ``batch_size`` (at most ``n``), ``n`` when ``None`` (full batch), and the method's
    own default for ``"auto"``."""
    if isinstance(batch_size, str) and batch_size == "auto":
        batch_size = None if method.full_batch else method.batch_size
    check_positive_int("batch_size", batch_size, allow_none=True)
    return n if batch_size is None else min(int(batch_size), n)


def _feed(feed, train, device) -> str:
    if feed is None:
        x, y = train
        fits = distributed.fits_on_device(x.nbytes + y.nbytes, device)
        feed = "device" if fits and not distributed.multi_process() else "host"
    if feed not in ("device", "host"):
        raise ValueError(f"feed must be 'device' or 'host', got {feed!r}")
    return feed


def _check_callbacks(callbacks) -> list:
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fnn.callbacks.Callback objects, got {type(cb).__name__}")
    return callbacks


def _callbacks(
    given: list,
    has_val: bool,
    method: Method,
    *,
    goal,
    min_grad,
    patience,
    min_delta,
    restore_best,
    checkpoint,
    checkpoint_every,
    callback,
    progress,
    diagnostics,
) -> list:
    """The run's callbacks: ``TerminateOnNaN`` first, then those the keywords stand for, then ``given``, then
    ``MethodStop`` when the method has a stopping rule. Stop reasons take precedence in this order."""
    kinds = {type(cb) for cb in given}
    for keyword, set_, kind in (
        ("goal/min_grad", goal is not None or min_grad is not None, StopAt),
        ("patience", patience is not None, EarlyStopping),
        ("checkpoint", checkpoint is not None, Checkpoint),
        ("progress", progress, ProgressBar),
        ("diagnostics", diagnostics, Diagnostics),
    ):
        if set_ and kind in kinds:
            raise ValueError(f"give {keyword}= or a {kind.__name__} callback, not both")
    first = [cb for cb in given if isinstance(cb, TerminateOnNaN)][:1] or [TerminateOnNaN()]
    out = first + ([StopAt(goal, min_grad)] if goal is not None or min_grad is not None else [])
    if has_val and EarlyStopping not in kinds:  # the best epoch is recorded whenever there is validation data
        out.append(
            EarlyStopping(patience, min_delta, patience is not None if restore_best is None else restore_best)
        )
    out += [Lambda(callback)] if callback is not None else []
    out += [Diagnostics()] if diagnostics else []
    out += [ProgressBar()] if progress else []
    if checkpoint is not None:
        out.append(Checkpoint(checkpoint, every=checkpoint_every, every_s=CHECKPOINT_SECONDS))
    out += [cb for cb in given if cb not in first]
    has_rule = method.stop is not None and not any(isinstance(cb, MethodStop) for cb in given)
    return out + ([MethodStop()] if has_rule else [])


def _reported(method: Method, opt_state) -> list[str]:
    """The names ``method`` reports from its state, in the order its ``report`` gives them (it only reads the
    state: nothing is computed)."""
    return [] if method.report is None else list(method.report(opt_state))


def _check_opt_state(given, fresh):
    """``given`` rebuilt on the structure of ``fresh``, after checking its leaves
    (``ValueError`` if they differ)."""
    flat = jax.tree_util.tree_flatten_with_path(given)[0]
    return match_tree(
        "opt_state",
        [jax.tree_util.keystr(p) for p, _ in flat],
        [a for _, a in flat],
        fresh,
        "pass history.opt_state of an earlier fit with the same network and optimizer settings",
    )


def fit(
    net: Network,
    params,
    train,
    *,
    optimizer: str | Method | optax.GradientTransformation = registry.DEFAULT,
    epochs: int = 100,
    batch_size: int | str | None = "auto",
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
    callbacks=(),
    chunk_epochs: int | None = None,
) -> tuple[Any, History]:
    """Train ``net`` from ``params`` on ``train = (x, y)``; return ``(params, history)``.

    Args:
      optimizer: a name from ``fnn.optimizers.NAMES`` (or one added by
        ``fnn.optimizers.register``), an ``fnn.optimizers.Method`` record
        (either built with ``learning_rate``, ``momentum``, ``nesterov``,
        ``weight_decay``, ``clip_norm``, see ``fnn.optimizers.get``), or any
        optax transform, which is called as ``update(grads, state, params,
        value=, grad=, value_fn=)`` (``value_fn``: an
        ``fnn.optimizers.Objective``). The record's ``flat`` decides how the
        method sees the params: as one flat vector (the built-in methods
        acting per parameter: one fused pass; the state is shaped like
        ``ravel_pytree(params)[0]``) or as the params' own tree (``kfac``, and
        a transform given as an object, so that masks and per-layer transforms
        work). Its ``report`` adds columns to the history, and its ``stop``
        rule ends the run.
      epochs: the total number of epochs (a resumed run counts those already done).
      batch_size: examples per step; ``None`` is the whole training set
        (full-batch); ``"auto"`` (the default) is the method's own: the whole
        set for ``gd``, ``adaptive_*``, ``rprop``, ``lbfgs``,
        ``levenberg_marquardt`` and the other full-batch methods, 32 for the
        minibatch methods (``kfac``: 256).
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
        returning ``True`` stops training (``fnn.callbacks.Lambda``).
      callbacks: ``fnn.callbacks.Callback`` objects, called after the ones
        the keywords build, in order (see ``fnn.callbacks``).
      progress: show a tqdm progress bar with the loss and validation loss.
      config: JSON-serialisable settings stored in the checkpoint.
      precision: ``"fp32"`` (default), ``"tf32"``, ``"bf16"`` or a
        ``fnn.Policy`` (``None``: compute in the params' dtype at
        JAX's default matmul precision, which on recent NVIDIA GPUs rounds
        float32 matmul inputs to TF32). ``fp32`` keeps float32 matmuls exact
        float32 on GPUs too (PyTorch's default as well); on CPU it changes
        nothing. ``bf16`` computes the hidden layers in bfloat16 while the
        params, the optimizer state, the loss and softmax stay float32.
      devices: data parallelism (``fnn.scale.distributed``): an int (that many of
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
      chunk_epochs: how many epochs run in one compiled program
        (``fnn.training.chunk``; Keras's ``steps_per_execution`` for epochs):
        ``None`` (the default), as many as take about ``CHUNK_SECONDS``
        (0.25 s: the progress bar and the callbacks follow a few times a
        second), growing from one; ``k``, ``k`` at a time; ``1``, one epoch
        per program, as with ``feed="host"``. Never past an epoch a callback
        needs the params of (``Callback.params_needed``: every epoch for a
        callback that does not say otherwise), nor the run's end. The results
        are the same, bit for bit, whatever the chunks.

    The keywords ``goal``/``min_grad``, ``patience``, ``checkpoint``,
    ``progress``, ``diagnostics`` and ``callback`` are shortcuts for the
    callbacks ``StopAt``, ``EarlyStopping``, ``Checkpoint``, ``ProgressBar``,
    ``Diagnostics`` and ``Lambda``; ``TerminateOnNaN`` is always there, and
    ``MethodStop`` for a method with a stopping rule. Give each either way,
    not both.

    ``history.train_loss`` is the mean of the epoch's minibatch losses, each
    taken before its update (for full-batch methods: the loss at the start of
    the epoch). Ctrl-C raises ``fnn.Interrupted`` (a ``KeyboardInterrupt``)
    after saving the checkpoint.
    """
    check_net(net)
    for name, value in (
        ("epochs", epochs),
        ("checkpoint_every", checkpoint_every),
        ("patience", patience),
        ("chunk_epochs", chunk_epochs),
    ):
        check_positive_int(name, value, allow_none=name != "epochs")
    train, validation = _prepare_data(net, params, train, validation)
    if patience is not None and validation is None:
        raise ValueError("patience (early stopping) needs validation data")
    key = _as_key(key)
    compile_cache.use_default_cache()  # a later run of the same fit loads its programs instead of compiling
    tx, method = _optimizer(
        net,
        optimizer,
        learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        clip_norm=clip_norm,
    )
    batch = _batch(batch_size, method, train[0].shape[0])
    policy = fnn.scale.precision.get(precision)
    local, mesh_devices = _devices(devices, method, net, params, batch)
    feed = _feed(feed, train, local[0])
    fresh_state = opt_init(tx, method.flat)(params)
    opt_state = fresh_state if opt_state is None else _check_opt_state(opt_state, fresh_state)

    run = Run(
        net,
        params,
        opt_state,
        key,
        epochs,
        method.name,
        train,
        validation,
        config or {},
        peak_tflops,
        method=method,
    )
    given = _check_callbacks(callbacks)
    run.callbacks = _callbacks(
        given,
        validation is not None,
        method,
        goal=goal,
        min_grad=min_grad,
        patience=patience,
        min_delta=min_delta,
        restore_best=restore_best,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
        progress=progress,
        diagnostics=diagnostics,
    )
    saver = next((cb for cb in run.callbacks if isinstance(cb, Checkpoint)), None)
    if resume:
        if saver is None:
            raise ValueError("resume needs the checkpoint path")
        saver.restore(run)
    run.history.expect(_reported(method, opt_state))
    epochs_ = _Epochs(run, tx, batch, policy, mesh_devices, feed, chunk_epochs)
    for cb in run.callbacks:
        cb.on_fit_start(run)
    try:
        _run_epochs(run, epochs_)
    except KeyboardInterrupt:
        run.history.stop = Stop(StopKind.INTERRUPTED, f"interrupted after epoch {run.epoch}")
        raise Interrupted(run.params, run.history, run.epoch, saver and saver.path) from None
    finally:
        _fit_end(run, run.callbacks)
    run.history.opt_state = distributed.to_local(run.opt_state)
    return distributed.to_local(run.params if run.best_params is None else run.best_params), run.history
