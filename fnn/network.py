"""``MLP``: a frozen, hashable description of a feed-forward network.

It holds names and sizes only, never arrays, so it can be a static argument
of ``jax.jit``: the same description traces once and compiles once.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from fnn import activations, losses


def _as_activation_tuple(activation, n_hidden: int) -> tuple[str, ...]:
    if isinstance(activation, str):
        return (activation,) * n_hidden
    if isinstance(activation, (tuple, list)):
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation has {len(activation)} names but the network has "
                f"{n_hidden} hidden layers; give one name, or one per hidden layer"
            )
        return tuple(activation)
    raise TypeError(f"activation must be a str or a tuple of str, got {type(activation).__name__}")


def _as_sizes(sizes) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints such as (4, 8, 1), got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 entries (inputs, outputs), got {tuple(sizes)}")
    out = []
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) and not hasattr(s, "__index__"):
            raise TypeError(f"sizes must contain ints, got {s!r} in {tuple(sizes)}")
        if int(s) <= 0:
            raise ValueError(f"sizes must be positive, got {tuple(sizes)}")
        out.append(int(s))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Args:
      sizes: layer widths, inputs first and outputs last, e.g. ``(64, 128, 10)``.
      activation: one name for every hidden layer, or a tuple with one name per
        hidden layer (see ``fnn.activations``).
      output: the output layer's activation; ``softmax`` is allowed only here.
      loss: one of ``mse``, ``mae``, ``huber``, ``bce`` (after ``sigmoid``),
        ``cross_entropy`` (after ``softmax``); see ``fnn.losses``.

    Raises ``ValueError``/``TypeError`` at construction for anything invalid.
    """

    sizes: tuple[int, ...]
    activation: tuple[str, ...] | str = "tanh"
    output: str = "identity"
    loss: str = "mse"

    def __post_init__(self):
        sizes = _as_sizes(self.sizes)
        hidden = _as_activation_tuple(self.activation, len(sizes) - 2)
        for name in hidden:
            if not activations.get(name).hidden_ok:
                raise ValueError(f"activation {name!r} may only be used as the output activation")
        activations.get(self.output)
        if self.loss not in losses.LOSS_NAMES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {list(losses.LOSS_NAMES)}")
        needed = losses.FUSED_ONLY.get(self.loss)
        if needed is not None and self.output != needed:
            raise ValueError(
                f"loss {self.loss!r} needs output={needed!r} (its stable fused form), got output={self.output!r}"
            )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "activation", hidden)

    def __getstate__(self):
        # fnn.dispatch keeps the compiled programs of the public functions on the
        # net; they are a cache, not part of the description, and do not pickle.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + the output layer)."""
        return len(self.sizes) - 1

    @property
    def layer_activations(self) -> tuple[str, ...]:
        """The activation of each weight layer, output layer last."""
        return (*self.activation, self.output)

    @property
    def fused(self) -> bool:
        """Whether (output, loss) is a canonical pair with delta ``(yhat - y)/B``."""
        return losses.is_fused(self.output, self.loss)

    @property
    def n_params(self) -> int:
        return sum((n_in + 1) * n_out for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def classifier(self) -> bool:
        return self.loss == "cross_entropy"
