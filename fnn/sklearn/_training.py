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
from sklearn.utils import gen_batches, shuffle

from fnn.sklearn import _data, _objective

STOCHASTIC = ("sgd", "adam")


def _sklearn_sgd(learning_rate, momentum, nesterov):
    """scikit-learn's SGD: ``v <- momentum v - lr g``, step ``v`` (Nesterov: ``momentum v - lr g``).

    Scaling by the rate before the momentum trace keeps each velocity at the
    rate it was taken with, as scikit-learn does when the rate changes.
    """
    return optax.chain(optax.scale_by_learning_rate(learning_rate), optax.trace(decay=momentum, nesterov=nesterov))


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
        zeros = optax.tree_utils.tree_zeros_like(params)
        return AdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
        nu = optax.tree_utils.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_int32_increment(state.count)
        lr_t = learning_rate * jnp.sqrt(1 - b2**count) / (1 - b1**count)
        steps = jax.tree.map(lambda m, v: -lr_t * m / (jnp.sqrt(v) + eps), mu, nu)
        return steps, AdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@functools.lru_cache(maxsize=32)
def transform(solver: str, nesterov: bool) -> optax.GradientTransformation:
    """The optax transform of ``solver``, its learning rate (and other settings) in its state.

    One object per configuration, so that a compiled epoch is reused by every
    fit that runs the same network and solver.
    """
    if solver == "sgd":
        return optax.inject_hyperparams(_sklearn_sgd, static_args=("nesterov",))(
            learning_rate=0.1, momentum=0.9, nesterov=nesterov)
    return optax.inject_hyperparams(sklearn_adam)(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)


class Optimizer:
    """The optimizer of a stochastic fit: scikit-learn's ``_optimizer``, holding fnn's optax state.

    ``learning_rate`` is the current rate; ``iteration_ends`` and
    ``trigger_stopping`` are scikit-learn's schedule rules (``invscaling``:
    ``lr = learning_rate_init / (t + 1) ** power_t`` with ``t`` the samples
    seen; ``adaptive``: divide by 5 instead of stopping, until below 1e-6).
    """

    def __init__(self, est, params):
        self.solver = est.solver
        self.nesterov = bool(est.nesterovs_momentum)
        self.learning_rate_init = float(est.learning_rate_init)
        self.learning_rate = float(est.learning_rate_init)
        self.lr_schedule = est.learning_rate if self.solver == "sgd" else "constant"
        self.power_t = float(est.power_t)
        self.state = self.tx.init(params)
        settings = {"momentum": est.momentum} if self.solver == "sgd" else {
            "b1": est.beta_1, "b2": est.beta_2, "eps": est.epsilon}
        for name, value in settings.items():
            self.state.hyperparams[name] = jnp.asarray(value, self.state.hyperparams[name].dtype)

    @property
    def tx(self):
        return transform(self.solver, self.nesterov)

    def state_for(self, dtype):
        """The optax state with the current learning rate, in the params' dtype."""
        self.state.hyperparams["learning_rate"] = jnp.asarray(self.learning_rate, dtype)
        return self.state

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

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
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False

    def __getstate__(self):  # arrays as NumPy, so that the estimator pickles anywhere
        return {**self.__dict__, "state": jax.tree.map(np.asarray, self.state)}


class Epochs:
    """The minibatches of one training set: dense rows gathered on the device, sparse ones densified per batch."""

    def __init__(self, X, y, w, batch_size: int, dtype):
        self.n, self.batch, self.dtype = X.shape[0], batch_size, dtype
        self.slices = list(gen_batches(self.n, self.batch))  # the same in every epoch, of shuffled rows
        self.sizes = np.array([s.stop - s.start for s in self.slices])
        self.sparse = sp.issparse(X)
        if self.sparse:
            self.X, self.y, self.w = X, y, w
        else:
            self.X, self.y, self.w = (jnp.asarray(a, dtype) for a in (X, y, w))

    def run(self, net, opt: Optimizer, params, order: np.ndarray, alpha, report):
        """One epoch over the rows in ``order``: the new params and the mean of the batch losses
        weighted by batch size (scikit-learn's ``loss_``)."""
        slices, sizes = self.slices, self.sizes
        state = opt.state_for(self.dtype)
        alpha, report = jnp.asarray(alpha, self.dtype), jnp.asarray(report, self.dtype)
        if self.sparse:
            losses = []
            for s in slices:
                rows = order[s]
                blocks = (_data.dense_rows(self.X, rows).astype(self.dtype, copy=False), self.y[rows], self.w[rows])
                (params, state), loss = _objective.batch_step(
                    net, opt.tx, params, state, *(_data.padded(b, self.batch) for b in blocks), alpha, report)
                losses.append(loss)
        else:
            index = np.zeros((len(slices), self.batch), np.int32)
            mask = np.zeros((len(slices), self.batch), self.dtype)
            for b, s in enumerate(slices):
                index[b, : sizes[b]] = order[s]
                mask[b, : sizes[b]] = 1
            (params, state), losses = _objective.dense_epoch(
                net, opt.tx, params, state, self.X, self.y, self.w, index, mask, alpha, report)
        opt.state = state
        return params, float(np.dot(np.asarray(losses, np.float64), sizes) / self.n)


def validation_split(est, X, y, w):
    """scikit-learn's split for early stopping (stratified for single-output classifiers): the training and
    the validation ``(X, y, w)``, targets as encoded for training."""
    stratify = y if est._stratify_split() else None
    X, X_val, y, y_val, w, w_val = train_test_split(
        X, y, w, random_state=est._random_state, test_size=est.validation_fraction, stratify=stratify)
    if X_val.shape[0] < 2:
        raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")
    return (X, y, w), (X_val, y_val, w_val)


def fit_stochastic(est, net, params, X, y, w, incremental: bool):
    """``_fit_stochastic`` of scikit-learn: epochs of minibatch steps with its stopping rules."""
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
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        batch = int(np.clip(est.batch_size, 1, n))
    epochs = Epochs(X, y, w, batch, est._dtype)
    order = np.arange(n, dtype=int)
    best = est._best_params() if validation else None
    try:
        est.n_iter_ = 0
        for _ in range(est.max_iter):
            if est.shuffle:
                order = shuffle(order, random_state=est._random_state)
            params, est.loss_ = epochs.run(net, est._optimizer, params, order, est.alpha, est._loss_report())
            est.n_iter_ += 1
            est.t_ += n
            est.loss_curve_.append(est.loss_)
            if est.verbose:
                print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
            if update_no_improvement_count(est, net, params, validation):
                best = params
            est._optimizer.iteration_ends(est.t_)
            if est._no_improvement_count > est.n_iter_no_change:
                watched = "Validation score" if validation else "Training loss"
                msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
                    watched, est.tol, est.n_iter_no_change)
                if est._optimizer.trigger_stopping(msg, est.verbose):
                    break
                est._no_improvement_count = 0
            if incremental:
                break
            if est.n_iter_ == est.max_iter:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                              "converged yet." % est.max_iter, ConvergenceWarning)
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    if validation:
        est._set_best(best)
        return best
    return params


def update_no_improvement_count(est, net, params, validation) -> bool:
    """scikit-learn's ``_update_no_improvement_count``; True when ``params`` are the best so far on validation."""
    if validation:
        score = est._score_params(net, params, *validation)
        est.validation_scores_.append(score)
        if est.verbose:
            print("Validation score: %f" % score)
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
    """``_fit_lbfgs`` of scikit-learn: scipy's L-BFGS-B on the packed parameters, fnn's objective and gradient."""
    y = y.astype(est._dtype)
    data = (X, y, w) if sp.issparse(X) else tuple(jnp.asarray(a, est._dtype) for a in (X, y, w))
    theta = np.asarray(_objective.pack(params), np.float64)
    result = scipy.optimize.minimize(
        est._loss_grad_lbfgs, theta, args=data, method="L-BFGS-B", jac=True,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    est.n_iter_ = min(result.nit, est.max_iter)
    if result.status != 0:
        warnings.warn(
            "lbfgs failed to converge after %d iteration(s) (status=%d):\n%s\n\nIncrease the number of "
            "iterations to improve the convergence (max_iter=%d).\nYou might also want to scale the data."
            % (result.nit, result.status, result.message, est.max_iter), ConvergenceWarning)
    theta = jnp.asarray(result.x, est._dtype)
    data_term, penalty, _ = _data.full_batch(net, theta, *data, jnp.asarray(est.alpha, est._dtype), est._dtype)
    est.loss_ = float(est._loss_report() * data_term + penalty)
    return _objective.unpack(net, theta)
