"""The compiled epoch of ``fnn.fit``: one ``jax.jit`` program per epoch.

``lax.scan`` runs over the minibatches of a permutation of the training set,
each step running the forward pass, the network's hand-written backward pass
(``net.backward``, see ``fnn.protocol``) and the optimizer's update; the
validation loss and accuracy are computed at the end of the same program. The
permutation of epoch ``e`` is drawn on the host from the key and ``e``
(``epoch_indices``), so a run is a deterministic function of its key.

Minibatches all have ``batch_size`` examples: when it does not divide the
training set, the last minibatch is filled up with the first examples of the
epoch's permutation, so every example is seen at least once per epoch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from fnn.core import protocol
from fnn.core.protocol import loss_from_cache
from fnn.scale import distributed, precision
from fnn.training import metrics
from fnn.training.objective import MinibatchObjective


# same configuration, same compiled epoch: fits after the first skip compiling
@functools.lru_cache(maxsize=32)
def make_epoch(
    net,
    tx,
    n: int,
    batch: int,
    has_val: bool,
    policy=None,
    mesh=None,
    feed: str = "device",
    flat: bool = False,
    report=None,
):
    """The jitted ``epoch(params, opt_state, order, x, y, xv, yv) -> (params, opt_state, stats)``.

    ``order``: the epoch's example indices, ``(steps, batch)`` int32, from
    ``epoch_indices`` (computed on the host, so that the compiled epoch holds
    no random-number generator and no sort).
    ``policy``: a ``fnn.Policy`` (``None``: compute in the params' dtype).
    ``mesh``: a ``fnn.scale.distributed`` mesh; each minibatch is then sharded over
    its ``data`` axis and XLA reduces the gradients (``None``: one device).
    ``feed``: ``"device"``, the whole training set is an argument and each
    step gathers its minibatch with ``order``; ``"host"``, ``x`` and ``y`` are
    the epoch's minibatches already gathered, ``(steps, batch, ...)`` (see
    ``epoch_batches``), and ``order`` is unused.
    ``key``: for a network with dropout (``net.stochastic``), the raw data of
    the epoch's PRNG key; step ``i`` draws its masks from ``split(key)[i]``.
    ``flat``: the optimizer sees the params as one vector
    (``jax.flatten_util.ravel_pytree``), so its update is one fused pass over
    all P parameters instead of one per array; for transforms that act on
    each parameter alone (every built-in optimizer). ``opt_state`` is then the
    state of ``tx.init(ravel_pytree(params)[0])``.
    ``report``: the method's ``state -> {name: scalar}`` (``fnn.optimizers.Method.report``), read from the
    state at the end of the epoch into ``stats["reports"]``; ``None``: nothing reported.
    """
    return jax.jit(epoch_body(net, tx, n, batch, has_val, policy, mesh, feed, flat, report))


def epoch_body(net, tx, n, batch, has_val, policy=None, mesh=None, feed="device", flat=False, report=None):
    """The Python function ``make_epoch`` compiles (and ``make_chunk`` scans), unjitted."""
    steps = -(-n // batch)
    classify = metrics.has_accuracy(net)
    host_fed = feed == "host"
    sharded = None if mesh is None else distributed.batch_sharding(mesh)

    def epoch_fn(params, opt_state, order, x, y, xv, yv, key=None):
        to_tree = ravel_pytree(params)[1] if flat else (lambda p: p)
        shuffle = order.shape[1] > 0  # epoch_indices gives no order when one full batch is the whole epoch

        def step(carry, over):
            p, opt_state = carry
            batch_or_idx, step_key = over if key is not None else (over, None)
            if host_fed:
                xb, yb = batch_or_idx
            else:
                xb, yb = (x[batch_or_idx], y[batch_or_idx]) if shuffle else (x, y)
            if sharded is not None:  # keep the minibatch split over the devices
                xb = jax.lax.with_sharding_constraint(xb, sharded)
                yb = jax.lax.with_sharding_constraint(yb, sharded)
            # fnn's hand-written backprop, under the precision policy
            loss, grads, cache = precision.backprop_step(net, policy, to_tree(p), xb, yb, step_key)
            out = {"loss": loss, "norms": protocol.group_norms(net, grads)}
            if classify:
                out["correct"] = metrics.correct(net, net.output_of(cache)[1], yb)
            if flat:
                grads = ravel_pytree(grads)[0]
            objective = MinibatchObjective(net, xb, yb, to_tree if flat else None, step_key)
            updates, opt_state = tx.update(grads, opt_state, p, value=loss, grad=grads, value_fn=objective)
            return (optax.apply_updates(p, updates), opt_state), out

        steps_over = (x, y) if host_fed else order
        if key is not None:  # dropout: each step its own key, drawn from the epoch's (its raw data)
            steps_over = (steps_over, jax.random.split(jax.random.wrap_key_data(key), steps))
        carry = (ravel_pytree(params)[0] if flat else params, opt_state)
        (p, opt_state), out = jax.lax.scan(step, carry, steps_over)
        params = to_tree(p)
        stats = {
            "train_loss": jnp.mean(out["loss"]),
            "grad_norm": jnp.mean(out["norms"], axis=0),
            "finite": jnp.all(
                jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(p)])
            )
            & jnp.all(jnp.isfinite(out["loss"])),
        }
        if classify:
            stats["train_accuracy"] = jnp.sum(out["correct"]) / (steps * batch)
        if has_val:
            cache = precision.forward_step(net, policy, params, xv)
            stats["val_loss"] = loss_from_cache(net, cache, yv)
            if classify:
                stats["val_accuracy"] = metrics.correct(net, net.output_of(cache)[1], yv) / xv.shape[0]
        lr = learning_rate(opt_state)
        if lr is not None:
            stats["learning_rate"] = lr
        stats["reports"] = {} if report is None else dict(report(opt_state))
        return params, opt_state, stats

    return epoch_fn


def learning_rate(state):
    """The learning rate of an optimizer state, as optax keeps it (``inject_hyperparams``), or ``None``."""
    for _, v in optax.tree_utils.tree_get_all_with_path(state, "learning_rate"):
        if hasattr(v, "shape") and v.shape == ():
            return v
    return None


@functools.lru_cache(maxsize=32)
def opt_init(tx, flat: bool):
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
    return np.concatenate([perm, perm[: steps * batch - n]]).reshape(steps, batch)


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
