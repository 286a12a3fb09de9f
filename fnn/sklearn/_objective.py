"""scikit-learn's MLP objective on fnn's hand-written backward pass, compiled.

For a batch of examples ``n`` with sample weights ``w_n`` (1 when none are
given) and ``s = sum_n w_n``, scikit-learn's MLPs minimise

    J(theta) = (1/s) sum_n w_n l_n(theta) + (alpha / 2s) sum_l ||W_l||_F^2

    dJ/dW_l = (1/s) [sum_n w_n dl_n/dW_l + alpha W_l]     dJ/db_l = (1/s) sum_n w_n dl_n/db_l

with ``l_n`` fnn's per-example loss (``fnn.core.losses``). The sum of weighted
gradients is one backward pass of ``net.backward``, the delta recursion,
seeded at the output with ``w_n dl_n/dz_out``: the recursion is linear in its
seed. Rows of weight 0 contribute nothing, which is how the last minibatch and
the last chunk of a large input are padded to one fixed shape, so that one
compiled program serves every batch.

Everything here is pure and jitted with the network (and the optax transform)
static; the estimators in ``fnn.sklearn`` hold the loop, as scikit-learn does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from fnn.core import activations, losses

Array = jax.Array


def weighted_sums(net, params, x: Array, y: Array, w: Array) -> tuple[Array, list]:
    """``(sum_n w_n l_n, sum_n w_n dl_n/dtheta)`` for one batch: a forward and a backward pass."""
    cache = net.forward(params, x)
    z, a = net.output_of(cache)
    per_example = losses.per_example(net.output, net.loss, z, a, y)
    seed = losses.example_deltas(activations.get(net.output), net.output, net.loss, z, a, y) * w[:, None]
    grads, _ = net.backward(params, cache, seed)
    return jnp.sum(w * per_example), grads


def penalised(params, loss_sum: Array, grad_sum, s: Array, alpha: Array) -> tuple[Array, Array, list]:
    """``J``'s two terms, ``(1/s) sum_n w_n l_n`` and ``(alpha/2s) ||W||^2``, and ``dJ/dtheta``:
    the weighted sums divided by ``s``, with the L2 term on the weights only. A minibatch whose
    weights are all 0 is divided by 1 instead: it then moves the params by the L2 term alone."""
    s = jnp.where(s > 0, s, 1)
    squares = sum(jnp.sum(layer["W"] ** 2) for layer in params)
    grads = [{"W": (g["W"] + alpha * p["W"]) / s, "b": g["b"] / s} for g, p in zip(grad_sum, params)]
    return loss_sum / s, 0.5 * alpha * squares / s, grads


def step(net, tx, carry, batch, alpha, report):
    """One optimizer step on one minibatch: ``carry = (params, opt_state)``.

    Returns the batch's loss as scikit-learn reports it, ``report * data term +
    penalty``: ``report`` is 1 except for the squared error, which
    scikit-learn averages over the outputs (its gradient is that of the sum).
    """
    params, state = carry
    x, y, w = batch
    data, penalty, grads = penalised(params, *weighted_sums(net, params, x, y, w), jnp.sum(w), alpha)
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), report * data + penalty


def dense_epoch(net, tx, params, state, x, y, w, index, mask, alpha, report):
    """Every minibatch of one epoch in a ``lax.scan``: batch ``b`` is rows ``index[b]`` weighted by
    ``w[index[b]] * mask[b]`` (``mask`` is 0 on the padding of the last batch). Returns the new
    ``(params, state)`` and each batch's ``J``."""

    def body(carry, rows):
        idx, m = rows
        return step(net, tx, carry, (x[idx], y[idx], w[idx] * m), alpha, report)

    return jax.lax.scan(body, (params, state), (index, mask))


@functools.partial(jax.jit, static_argnums=(0, 1))
def dense_epochs(net, tx, params, state, x, y, w, index, mask, rates, count, alpha, report):
    """The first ``count`` of ``K`` epochs in one program: epoch ``e`` runs ``dense_epoch`` on
    ``index[e]`` (and the padding ``mask``, the same in every epoch) at the learning rate ``rates[e]``.

    ``K`` is fixed by the shapes and ``count`` is data, so that one compiled
    program runs any number of epochs up to ``K``: a small network's epoch
    costs less than a call from Python, and the host then pays one call per
    ``K`` epochs. Returns the new ``(params, state)`` and the ``[K, batches]``
    losses (0 after epoch ``count``).
    """

    def epoch(e, carry):
        params, state, losses = carry
        rate = rates[e].astype(state.hyperparams["learning_rate"].dtype)
        state = state._replace(hyperparams={**state.hyperparams, "learning_rate": rate})
        (params, state), batch_losses = dense_epoch(
            net, tx, params, state, x, y, w, index[e], mask, alpha, report
        )
        return params, state, losses.at[e].set(batch_losses)

    losses = jnp.zeros(index.shape[:2], x.dtype)
    params, state, losses = jax.lax.fori_loop(0, count, epoch, (params, state, losses))
    return (params, state), losses


@functools.partial(jax.jit, static_argnums=(0, 1))
def batch_step(net, tx, params, state, x, y, w, alpha, report):
    """One step on a minibatch already gathered on the host (sparse input, densified per batch)."""
    return step(net, tx, (params, state), (x, y, w), alpha, report)


def pack(params) -> Array:
    """The parameters as one vector in scikit-learn's order: every ``W`` (row-major), then every ``b``."""
    return jnp.concatenate([jnp.ravel(layer[k]) for k in ("W", "b") for layer in params])


def unpack(net, theta: Array) -> list[dict]:
    """The inverse of ``pack`` for the layers of ``net`` (an ``fnn.MLP``)."""
    shapes = list(zip(net.sizes[:-1], net.sizes[1:]))
    sizes = [a * b for a, b in shapes] + [b for _, b in shapes]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    part = [theta[offsets[i] : offsets[i + 1]] for i in range(len(sizes))]
    L = len(shapes)
    return [{"W": part[i].reshape(shapes[i]), "b": part[L + i]} for i in range(L)]


@functools.partial(jax.jit, static_argnums=0)
def packed_sums(net, theta, x, y, w):
    """``weighted_sums`` at the packed parameters ``theta``, the gradient packed: a full-batch
    objective adds these over the chunks of a sparse input."""
    loss_sum, grad_sum = weighted_sums(net, unpack(net, theta), x, y, w)
    return loss_sum, pack(grad_sum)


@functools.partial(jax.jit, static_argnums=0)
def packed_penalised(net, theta, loss_sum, grad_sum, s, alpha):
    """``penalised`` on packed parameters and gradient sums: ``(data term, penalty, packed dJ/dtheta)``."""
    params = unpack(net, theta)
    data, penalty, grads = penalised(params, loss_sum, unpack(net, grad_sum), s, alpha)
    return data, penalty, pack(grads)


@functools.partial(jax.jit, static_argnums=0)
def packed_objective(net, theta, x, y, w, alpha):
    """The whole objective of a batch on packed parameters, in one program (what L-BFGS calls)."""
    return packed_penalised.__wrapped__(
        net, theta, *packed_sums.__wrapped__(net, theta, x, y, w), jnp.sum(w), alpha
    )


@functools.partial(jax.jit, static_argnums=0)
def predict(net, params, x: Array) -> Array:
    """The network's output ``yhat`` for a batch of rows."""
    return net.output_of(net.forward(params, x))[1]
