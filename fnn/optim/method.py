"""``Method``: what ``fnn.fit`` needs to know of a training method, declared in the method's own module.

A method is an optax transform plus one record::

    Method(name="levenberg_marquardt", factory=lambda lr, **_: levenberg_marquardt(), default_lr=None,
           full_batch=True, own_step=True, least_squares=True, matrices=3,
           report=lambda state: {"mu": ..., "mu_max": ...}, stop=lambda r: ... or None)

The training loop, its history, the CSV writer, the progress bar and the
command line read only the record's fields, never a method by name:

* ``factory(learning_rate, *, momentum, nesterov)`` builds the transform
  (``learning_rate`` is ``default_lr`` when the caller gives none);
* ``default_lr``, ``full_batch`` and ``batch_size`` are its defaults;
* ``report(state) -> {name: scalar}`` reads, inside the compiled epoch, what
  the method adapts (Levenberg-Marquardt's ``mu``, K-FAC's ``damping``): each
  name becomes a column of ``fnn.History`` and of ``history.csv``;
* ``stop(reports) -> str | None`` is the method's own stopping rule, a
  function of one epoch's reports (host floats): a message ends the run;
  ``halt(reports) -> bool`` is the same rule on the traced reports, so that
  ``fit``'s compiled chunk of epochs ends at the epoch the rule stops at.

``find_state`` is the helper a ``report`` uses to find its own NamedTuple in
a chained optax state (``optax.tree_utils``), as optax asks a state for a
quantity by name.

Imports ``fnn.core`` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

from fnn.core import validation

__all__ = ["Method", "Spec", "find_state"]


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: its transform's factory, its defaults, its reports and its stopping rule.

    Attributes:
      name: the name ``fnn.fit(optimizer=...)``, ``fnn train --optimizer`` and
        the checkpoints know it by.
      factory: ``factory(learning_rate, *, momentum=0.9, nesterov=False) ->
        optax.GradientTransformation``; it may ignore what it does not use.
      default_lr: the learning rate when none is given (``None``: the method
        chooses its own steps, or takes none).
      full_batch: one step per epoch on the whole training set by default.
      batch_size: the default minibatch of a method that is not full-batch.
      own_step: the method chooses its steps for the loss itself (line search,
        trust region or model): it takes no learning rate, ``weight_decay`` or
        ``clip_norm``.
      least_squares: a Gauss-Newton method, minimising a sum of squared
        residuals: it needs a least-squares loss (``mse``).
      schedule: whether ``learning_rate`` may be an optax schedule (methods
        that adapt their own step size from a number do not take one).
      flat: the transform sees the params as one vector
        (``jax.flatten_util.ravel_pytree``, one fused pass over all of them:
        for transforms acting on each parameter alone); ``False``: the
        network's params tree (K-FAC's blocks follow its weight matrices).
      matrices: how many P x P matrices the method holds (``fnn.scale.memory``
        checks they fit the device); 0 for none.
      report: ``state -> {name: scalar}``, what the method adapts, recorded
        each epoch; ``None``: nothing.
      stop: ``reports -> message or None``, the method's own stopping rule.
      halt: ``reports -> bool``, that rule on the device, written with jnp
        on the traced reports (``None``: the host alone decides, and a chunk
        of epochs that went past the epoch it stops at is run again to it).
      aliases: other names the method answers to (``"lm"``).
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    default_lr: float | None = None
    full_batch: bool = False
    batch_size: int = 32
    own_step: bool = False
    least_squares: bool = False
    schedule: bool = True
    flat: bool = True
    matrices: int = 0
    report: Callable[[Any], dict] | None = None
    stop: Callable[[dict], str | None] | None = None
    halt: Callable[[dict], Any] | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Method.name must be a non-empty string, got {self.name!r}")
        for field in ("factory", "report", "stop", "halt"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(f"Method.{field} must be callable, got {type(value).__name__}")
        if self.factory is None:
            raise TypeError("Method.factory must be callable, got None")
        validation.check_positive_int("Method.batch_size", self.batch_size)


Spec = Method  # deprecated: the record's name before it declared its reports and its stopping rule


def find_state(state, cls):
    """The first ``cls`` NamedTuple inside an optax state (chained or not), or ``None``."""
    found = optax.tree_utils.tree_get_all_with_path(state, cls.__name__)
    return found[0][1] if found else None
