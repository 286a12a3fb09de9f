"""Precision policies: which dtype each part of a training step computes in.

A ``Policy`` names two dtypes and a matmul precision, in the manner of
mixed-precision libraries (jmp, Haiku):

==========  ===============  ============  ====================
name        compute_dtype    output_dtype  matmul_precision
==========  ===============  ============  ====================
fp32        (the params')    (the params') highest
tf32        (the params')    (the params') tensorfloat32
bf16        bfloat16         float32       (JAX's default)
==========  ===============  ============  ====================

* ``compute_dtype``: the hidden layers' matmuls, activations and deltas. Under
  ``bf16`` the params are copied to bfloat16 for the step (the float32 params
  stay the master copy) and the inputs are cast to bfloat16.
* ``output_dtype``: the output layer's logits ``z_L`` are cast to it before
  the output activation, so softmax, its log-sum-exp, the loss and the output
  delta ``delta_L = (yhat - y)/B`` are float32 even under ``bf16``; the delta
  is then cast to the compute dtype for the recursion through the hidden layers.
* The gradients are cast back to the params' own dtype (the master copy's)
  before the optimizer, whose state is therefore float32 as the params are.
* ``matmul_precision``: ``jax.default_matmul_precision`` while the step is
  traced. ``highest`` makes float32 matmuls exact float32 on GPUs, where XLA
  may otherwise use TF32; ``tensorfloat32`` asks for TF32 (10-bit mantissa
  inputs, float32 accumulation) on GPUs that have it. Both are no-ops on CPU.

bfloat16 keeps float32's exponent range but only 8 bits of mantissa (about 3
significant decimal digits, ``eps = 2^-7 = 0.0078``), so gradients under
``bf16`` agree with float32 ones to about ``1e-2`` relative to each leaf's
norm (``tests/test_precision.py`` checks ``<= 3e-2`` on small networks), not to
float32's ``1e-6``.
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp

from fnn.core.protocol import loss_from_cache, output_delta

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Policy:
    """A frozen, hashable precision policy (see the module docstring)."""

    name: str
    compute_dtype: str | None = None  # None: compute in the params' own dtype
    output_dtype: str | None = None  # None: the output layer stays in the compute dtype
    matmul_precision: str | None = None  # for jax.default_matmul_precision; None: JAX's default

    @property
    def mixed(self) -> bool:
        """Whether the step casts anything (``False``: the plain full-precision step)."""
        return self.compute_dtype is not None


POLICIES = {
    "fp32": Policy("fp32", matmul_precision="highest"),
    "tf32": Policy("tf32", matmul_precision="tensorfloat32"),
    "bf16": Policy("bf16", compute_dtype="bfloat16", output_dtype="float32"),
}
NAMES = tuple(POLICIES)


def get(policy) -> Policy | None:
    """A ``Policy`` from a name, a ``Policy`` or ``None`` (``None``: no policy at all)."""
    if policy is None or isinstance(policy, Policy):
        return policy
    try:
        return POLICIES[policy]
    except (KeyError, TypeError):
        raise ValueError(f"unknown precision {policy!r}; expected one of {list(NAMES)}") from None


def matmul_context(policy: Policy | None):
    """The ``jax.default_matmul_precision`` context of ``policy`` (nothing when unset)."""
    if policy is None or policy.matmul_precision is None:
        return contextlib.nullcontext()
    return jax.default_matmul_precision(policy.matmul_precision)


def cast(tree, dtype):
    """Every floating leaf of ``tree`` as ``dtype`` (integer leaves, e.g. labels, unchanged)."""

    def one(a):
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(one, tree)


def _mixed(policy: Policy | None) -> bool:
    return policy is not None and policy.mixed


def forward_step(net, policy: Policy | None, params, x, key=None):
    """The forward cache under ``policy``: bf16 copies of params and ``x``,
    float32 logits (``key``: dropout)."""
    if not _mixed(policy):
        return net.forward(params, x, key=key)
    return net.forward(
        cast(params, policy.compute_dtype),
        x.astype(policy.compute_dtype),
        output_dtype=policy.output_dtype,
        key=key,
    )


def backprop_step(net, policy: Policy | None, params, x, y, key=None):
    """``(loss, grads, cache)`` of one step under ``policy``, by the hand-written backward pass.

    Without a mixed policy this is exactly ``fnn.backprop``'s forward and
    backward pass (``net.forward``, ``net.backward``: any ``fnn.protocol`` network).
    Under ``bf16`` the backward pass runs on the bf16 copy of
    the params and the gradients are cast back to the params' dtype.
    """
    step_params = cast(params, policy.compute_dtype) if _mixed(policy) else params
    cache = forward_step(net, policy, step_params, x, key)  # casting bf16 params again is a no-op
    if _mixed(policy):
        y = cast(y, policy.output_dtype)
    grads, _ = net.backward(step_params, cache, output_delta(net, cache, y))
    grads = cast(grads, jax.tree_util.tree_leaves(params)[0].dtype)  # a no-op in full precision
    return loss_from_cache(net, cache, y), grads, cache


def policy_loss(net, policy: Policy | None, params, x, y) -> Array:
    """The batch-mean loss computed exactly as ``backprop_step`` computes it (for ``jax.grad`` checks)."""
    if _mixed(policy):
        y = cast(y, policy.output_dtype)
    return loss_from_cache(net, forward_step(net, policy, params, x), y)
