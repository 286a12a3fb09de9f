"""scikit-learn's training loops for its MLPs, on fnn's compiled objective.

The loops follow ``sklearn.neural_network``'s step for step: the same random
draws (initial weights, validation split, shuffles) from the same
``RandomState``, the same minibatches, the same learning-rate schedules, the
same stopping rules and messages. What runs in between is fnn: each epoch of
minibatch steps is one compiled ``lax.scan`` over fnn's hand-written backward
pass (``fnn.sklearn._objective``), and L-BFGS calls scipy with fnn's objective
and gradient, as scikit-learn calls scipy with its own.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import gen_batches

from fnn.scale import traced_cache
from fnn.sklearn import _data, _objective

STOCHASTIC = ("sgd", "adam")


def host_zeros(params):
    """Zeros shaped like ``params``, made by NumPy:
    JAX would compile a small program per shape to make them."""
    return jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), params)


class SgdState(NamedTuple):
    velocity: optax.Updates  # v, one per parameter


def sklearn_sgd(learning_rate, momentum, nesterov) -> optax.GradientTransformation:
    """scikit-learn's SGD with momentum::

        v <- momentum v - lr g,   step = v   (Nesterov's: step = momentum v - lr g)

    ``nesterov`` is a number, 1 or 0, rather than a flag, so that both
    variants run one compiled program. Each velocity keeps the rate it was
    taken with, as scikit-learn's does when the rate changes.
    """

    def init_fn(params):
        return SgdState(velocity=host_zeros(params))

    def update_fn(updates, state, params=None):
        velocity = jax.tree.map(lambda g, v: momentum * v - learning_rate * g, updates, state.velocity)
        steps = jax.tree.map(
            lambda g, v: jnp.where(nesterov > 0, momentum * v - learning_rate * g, v), updates, velocity
        )
        return steps, SgdState(velocity=velocity)

    return optax.GradientTransformation(init_fn, update_fn)


class AdamState(NamedTuple):
    count: jax.Array  # the step t
    mu: optax.Updates  # m, the first moment
    nu: optax.Updates  # v, the second moment


def sklearn_adam(learning_rate, b1, b2, eps) -> optax.GradientTransformation:
    """Adam as scikit-learn writes it (Kingma and Ba 2014, section 2's last paragraph)::

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        step = -lr_t m / (sqrt(v) + eps),   lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)

    ``optax.adam`` adds ``eps`` after the bias correction instead,
    ``m_hat / (sqrt(v_hat) + eps)``; the two differ where ``sqrt(v)`` is near
    ``eps``, as for the weights of an input that is always 0, whose only
    gradient is the L2 term.
    """

    def init_fn(params):
        zeros = host_zeros(params)
        return AdamState(count=np.zeros([], np.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
        nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_int32_increment(state.count)
        lr_t = learning_rate * jnp.sqrt(1 - b2**count) / (1 - b1**count)
        steps = jax.tree.map(lambda m, v: -lr_t * m / (jnp.sqrt(v) + eps), mu, nu)
        return steps, AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@functools.cache
def transform(solver: str) -> optax.GradientTransformation:
    """The optax transform of ``solver``, its learning rate (and other settings) in its state.

    One object per solver, so that a compiled epoch is reused by every fit
    that runs the same network and solver, whatever its settings.
    """
    if solver == "sgd":
        return optax.inject_hyperparams(sklearn_sgd)(learning_rate=0.1, momentum=0.9, nesterov=1.0)
    return optax.inject_hyperparams(sklearn_adam)(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)


# the optimizer's states in the structure of a traced program kept on disk
traced_cache.register_namedtuples(SgdState, AdamState, optax.InjectStatefulHyperparamsState)


class Optimizer:
    """The optimizer of a stochastic fit: scikit-learn's ``_optimizer``, holding fnn's optax state.

    ``learning_rate`` is the current rate; ``iteration_ends`` and
    ``trigger_stopping`` are scikit-learn's schedule rules (``invscaling``:
    ``lr = learning_rate_init / (t + 1) ** power_t`` with ``t`` the samples
    seen; ``adaptive``: divide by 5 instead of stopping, until below 1e-6).
    """

    def __init__(self, est, params):
        self.solver = est.solver
        self.learning_rate_init = float(est.learning_rate_init)
        self.learning_rate = float(est.learning_rate_init)
        self.lr_schedule = est.learning_rate if self.solver == "sgd" else "constant"
        self.power_t = float(est.power_t)
        # optax's init makes its scalars with JAX, a small program each; every leaf of the state starts at 0
        # (the step counts, the moments, the velocity) or is set here (the settings) and before each epoch
        # (the rate): NumPy's zeros in the state's structure, which eval_shape traces without compiling
        self.state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(self.tx.init, params))
        if self.solver == "sgd":
            settings = {"momentum": est.momentum, "nesterov": float(bool(est.nesterovs_momentum))}
        else:
            settings = {"b1": est.beta_1, "b2": est.beta_2, "eps": est.epsilon}
        for name, value in settings.items():  # NumPy's: JAX would compile a small program per conversion
            self.state.hyperparams[name] = np.asarray(value, self.state.hyperparams[name].dtype)

    @property
    def tx(self):
        return transform(self.solver)

    def state_for(self, dtype):
        """The optax state with the current learning rate, in the params' dtype."""
        self.state.hyperparams["learning_rate"] = np.asarray(self.learning_rate, dtype)
        return self.state

    def rates(self, count: int, time_step: int, n: int) -> list[float]:
        """The learning rates of the next ``count`` epochs of ``n`` rows, the first of which starts after
        ``time_step`` rows, as ``iteration_ends`` will set them (the adaptive rule changes a rate only on
        an event that ends a chunk of epochs)."""
        return [self.learning_rate] + [self.scheduled(time_step + e * n) for e in range(1, count)]

    def scheduled(self, time_step: int) -> float:
        if self.lr_schedule == "invscaling":
            return float(self.learning_rate_init) / (time_step + 1) ** self.power_t
        return self.learning_rate

    def iteration_ends(self, time_step: int) -> None:
        self.learning_rate = self.scheduled(time_step)

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.learning_rate:f}")
        return False

    def __getstate__(self):  # arrays as NumPy, so that the estimator pickles anywhere
        return {**self.__dict__, "state": jax.tree.map(np.asarray, self.state)}


CHUNK_INDICES = 1 << 16  # row indices per chunk of epochs: a chunk holds at most MAX_CHUNK epochs of these
MAX_CHUNK = 32


class Epochs:
    """The minibatches of one training set: dense rows gathered on the device,
    sparse ones densified per batch.

    A dense set runs ``chunk`` epochs per call of one compiled program
    (``_objective.dense_epochs``), the number of rows permitting: on a small
    set an epoch costs less than a call from Python.
    """

    def __init__(self, X, y, w, batch_size: int, dtype):
        self.n, self.batch, self.dtype = X.shape[0], batch_size, dtype
        self.slices = list(gen_batches(self.n, self.batch))  # the same in every epoch, of shuffled rows
        self.sizes = np.array([s.stop - s.start for s in self.slices])
        self.sparse = sp.issparse(X)
        if self.sparse:
            self.X, self.y, self.w = X, y, w
            self.chunk = 1
        else:
            self.X, self.y, self.w = (jnp.asarray(a, dtype) for a in (X, y, w))
            shape = (len(self.slices), self.batch)
            self.chunk = int(np.clip(CHUNK_INDICES // (shape[0] * shape[1]), 1, MAX_CHUNK))
            # row i of an epoch's order goes to batch i // batch, slot i % batch; the last batch is padded
            self.mask = (np.arange(shape[1]) < self.sizes[:, None]).astype(dtype)

    def run(self, net, opt: Optimizer, params, orders: list, rates: list, alpha, report):
        """One epoch over the rows of each of ``orders`` (at most ``chunk``), at the learning rates ``rates``:
        the new params and each epoch's mean of the batch losses weighted by batch size (scikit-learn's
        ``loss_``)."""
        alpha, report = np.asarray(alpha, self.dtype), np.asarray(report, self.dtype)
        if self.sparse:
            losses = []
            for order, rate in zip(orders, rates):
                opt.learning_rate = rate
                params, loss = self._sparse_epoch(net, opt, params, order, alpha, report)
                losses.append(loss)
            return params, losses
        index = np.zeros((self.chunk, *self.mask.shape), np.int32)
        flat = index.reshape(self.chunk, -1)
        for e, order in enumerate(orders):
            flat[e, : self.n] = order  # batches are consecutive slices of the order, padded at the end
        epoch_rates = np.zeros(self.chunk, self.dtype)
        epoch_rates[: len(orders)] = rates
        (params, opt.state), losses = traced_cache.call(
            _objective.dense_epochs,
            (net, opt.tx),
            f"{net!r}, transform({opt.solver!r})",
            params,
            opt.state,
            self.X,
            self.y,
            self.w,
            index,
            self.mask,
            epoch_rates,
            np.int32(len(orders)),
            alpha,
            report,
        )
        per_batch = np.asarray(losses, np.float64)[: len(orders)]
        return params, list(per_batch @ self.sizes / self.n)

    def _sparse_epoch(self, net, opt, params, order, alpha, report):
        state, losses = opt.state_for(self.dtype), []
        for s in self.slices:
            rows = order[s]
            blocks = (
                _data.dense_rows(self.X, rows).astype(self.dtype, copy=False),
                self.y[rows],
                self.w[rows],
            )
            (params, state), loss = _objective.batch_step(
                net, opt.tx, params, state, *(_data.padded(b, self.batch) for b in blocks), alpha, report
            )
            losses.append(loss)
        opt.state = state
        return params, float(np.dot(np.asarray(losses, np.float64), self.sizes) / self.n)


def validation_split(est, X, y, w):
    """scikit-learn's split for early stopping (stratified for single-output classifiers): the training and
    the validation ``(X, y, w)``, targets as encoded for training."""
    stratify = y if est._stratify_split() else None
    X, X_val, y, y_val, w, w_val = train_test_split(
        X, y, w, random_state=est._random_state, test_size=est.validation_fraction, stratify=stratify
    )
    if X_val.shape[0] < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
        )
    return (X, y, w), (X_val, y_val, w_val)


def fit_stochastic(est, net, params, X, y, w, incremental: bool):
    """``_fit_stochastic`` of scikit-learn: epochs of minibatch steps with its stopping rules.

    Epochs run in chunks (``Epochs.chunk``), and scikit-learn's rules are then
    applied to each epoch's loss in turn. When a rule ends training, or the
    adaptive schedule lowers the rate, inside a chunk, the chunk runs again from
    its start up to that epoch: the same shuffles, the same program, the same
    bits. With early stopping (which scores the params of every epoch) and in
    ``partial_fit``, a chunk is one epoch.
    """
    if not incremental or not hasattr(est, "_optimizer"):
        est._optimizer = Optimizer(est, params)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    if est.early_stopping:
        (X, y, w), (X_val, y_val, w_val) = validation_split(est, X, y, w)
        validation = (X_val, est._decode(y_val), w_val)
    else:
        validation = None
    y = y.astype(est._dtype)
    n = X.shape[0]
    if est.batch_size == "auto":
        batch = min(200, n)
    else:
        if est.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                stacklevel=4,  # the caller of fit or partial_fit: it -> BaseMLP._fit -> fit_stochastic
            )
        batch = int(np.clip(est.batch_size, 1, n))
    epochs = Epochs(X, y, w, batch, est._dtype)
    order = np.arange(n, dtype=int)
    best = est._best_params() if validation else None
    try:
        est.n_iter_ = 0
        event = None
        while event != "stop" and est.n_iter_ < est.max_iter:
            count = 1 if incremental or validation else min(epochs.chunk, est.max_iter - est.n_iter_)
            start = (params, est._optimizer.state, est._random_state.get_state(), order)
            orders = shuffled(est, order, count)
            rates = est._optimizer.rates(count, est.t_, n)
            params, losses = epochs.run(
                net, est._optimizer, params, orders, rates, est.alpha, est._loss_report()
            )
            order = orders[-1]
            for done, est.loss_ in enumerate(losses, 1):  # noqa: B007  # done is read after the loop
                event, is_best = end_epoch(est, net, params, n, validation, incremental)
                best = params if is_best else best
                if event:
                    break
            if done < count:  # the rules changed course inside the chunk: its params up to there
                params, est._optimizer.state, rng, order = start
                est._random_state.set_state(rng)
                orders = shuffled(est, order, done)
                params, _ = epochs.run(
                    net, est._optimizer, params, orders, rates[:done], est.alpha, est._loss_report()
                )
                order = orders[-1]
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.", stacklevel=4)  # the caller of fit or partial_fit
    if validation:
        est._set_best(best)
        return best
    return params


def shuffled(est, order: np.ndarray, count: int) -> list[np.ndarray]:
    """The row orders of the next ``count`` epochs: each a shuffle of the one before
    (unless ``shuffle=False``), drawn from the estimator's ``RandomState`` as scikit-learn draws them.

    ``sklearn.utils.shuffle(order, random_state=rs)`` is ``order[p]`` with ``p``
    the permutation ``rs.shuffle(arange(n))``; drawn here directly, without its
    checks of the input, which cost more than a small network's epoch.
    """
    orders = []
    for _ in range(count):
        if est.shuffle:
            permutation = np.arange(order.shape[0])
            est._random_state.shuffle(permutation)
            order = order[permutation]
        orders.append(order)
    return orders


def end_epoch(est, net, params, n: int, validation, incremental: bool) -> tuple[str | None, bool]:
    """scikit-learn's bookkeeping after an epoch whose loss is ``est.loss_``, in its order.

    Returns ``(event, is_best)``: ``event`` is ``"stop"`` when training stops
    here, ``"rate"`` when the adaptive schedule lowered the learning rate, else
    ``None``; ``is_best`` when ``params`` score best on validation so far.
    """
    est.n_iter_ += 1
    est.t_ += n
    est.loss_curve_.append(est.loss_)
    if est.verbose:
        print(f"Iteration {est.n_iter_:d}, loss = {est.loss_:.8f}")
    is_best = update_no_improvement_count(est, net, params, validation)
    est._optimizer.iteration_ends(est.t_)
    event = None
    if est._no_improvement_count > est.n_iter_no_change:
        watched = "Validation score" if validation else "Training loss"
        msg = (
            f"{watched} did not improve more than tol={est.tol:f} for {est.n_iter_no_change:d} "
            "consecutive epochs."
        )
        if est._optimizer.trigger_stopping(msg, est.verbose):
            return "stop", is_best
        est._no_improvement_count = 0
        event = "rate"
    if incremental:
        return "stop", is_best
    if est.n_iter_ == est.max_iter:
        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({est.max_iter:d}) reached and the optimization "
            "hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=5,  # the caller of fit or partial_fit: it -> _fit -> fit_stochastic -> end_epoch
        )
    return event, is_best


def update_no_improvement_count(est, net, params, validation) -> bool:
    """scikit-learn's ``_update_no_improvement_count``;
    True when ``params`` are the best so far on validation."""
    if validation:
        score = est._score_params(net, params, *validation)
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            return True
        return False
    if est.loss_curve_[-1] > est.best_loss_ - est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])
    return False


def fit_lbfgs(est, net, params, X, y, w):
    """``_fit_lbfgs`` of scikit-learn: scipy's L-BFGS-B on the packed parameters,
    fnn's objective and gradient."""
    y = y.astype(est._dtype)
    data = (X, y, w) if sp.issparse(X) else tuple(jnp.asarray(a, est._dtype) for a in (X, y, w))
    theta = np.asarray(_objective.pack(params), np.float64)
    result = scipy.optimize.minimize(
        est._loss_grad_lbfgs,
        theta,
        args=data,
        method="L-BFGS-B",
        jac=True,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol},
    )
    est.n_iter_ = min(result.nit, est.max_iter)
    if result.status != 0:
        warnings.warn(
            f"lbfgs failed to converge after {result.nit:d} iteration(s) (status={result.status:d}):\n"
            f"{result.message}\n\nIncrease the number of iterations to improve the convergence "
            f"(max_iter={est.max_iter:d}).\nYou might also want to scale the data.",
            ConvergenceWarning,
            stacklevel=4,  # the caller of fit: fit -> BaseMLP._fit -> fit_lbfgs
        )
    theta = jnp.asarray(result.x, est._dtype)
    data_term, penalty, _ = _data.full_batch(
        net, theta, *data, jnp.asarray(est.alpha, est._dtype), est._dtype
    )
    est.loss_ = float(est._loss_report() * data_term + penalty)
    return _objective.unpack(net, theta)
