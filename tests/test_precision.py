"""Precision policies: bf16 backprop against float32 and against jax.grad; bf16 training.

Tolerances (relative to each gradient leaf's norm, ``||g - r|| / ||r||``):

* bf16 backprop vs ``jax.grad`` of the same bf16-policy loss: ``<= 3e-2``.
  Both round the same values to bfloat16 (8-bit mantissa, eps ``2^-8`` per
  rounding), only in a different order of operations.
* bf16 backprop vs float32 backprop: ``<= 1.5e-1`` for each leaf and
  ``<= 5e-2`` averaged over the leaves. The inputs, weights, activations and
  deltas are all rounded to bfloat16 (~0.4% each), and a weight gradient
  ``a^T delta`` sums over the batch with cancellation, which magnifies the
  relative error; relu also flips its 0/1 slope where ``z`` rounds across 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_norm_error, targets

import fnn
from fnn.scale import precision


def _case(act, out, loss, seed=0):
    net = fnn.MLP((12, 48, 48, 4), activation=act, output=out, loss=loss)
    k = jax.random.split(jax.random.key(seed), 3)
    params = fnn.init(k[0], net)
    x = jax.random.normal(k[1], (96, 12))
    y = targets(k[2], loss, 96, 4, jnp.float32, labels=False)
    return net, params, x, y


CASES = [("relu", "softmax", "cross_entropy"), ("tanh", "identity", "mse"), ("gelu", "sigmoid", "bce")]


@pytest.mark.parametrize("act,out,loss", CASES)
def test_bf16_backprop_matches_float32_and_jax_grad(act, out, loss):
    net, params, x, y = _case(act, out, loss)
    bf16 = precision.get("bf16")
    step = jax.jit(precision.backprop_step, static_argnums=(0, 1))
    loss32, g32, _ = step(net, None, params, x, y)
    loss16, g16, cache = step(net, bf16, params, x, y)
    # master params stay float32: gradients come back float32; the hidden layers ran in bf16,
    # the logits, softmax and loss in float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(g16))
    assert cache["layer1"].z.dtype == jnp.bfloat16 and net.output_of(cache)[0].dtype == jnp.float32
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
    auto = jax.grad(lambda p: precision.policy_loss(net, bf16, p, x, y))(params)
    leaves = lambda t: jax.tree_util.tree_leaves(t)
    vs_auto = [leaf_norm_error(a, b) for a, b in zip(leaves(g16), leaves(auto))]
    vs_f32 = [leaf_norm_error(a, b) for a, b in zip(leaves(g16), leaves(g32))]
    assert max(vs_auto) <= 3e-2, vs_auto
    assert max(vs_f32) <= 1.5e-1 and np.mean(vs_f32) <= 5e-2, vs_f32


@pytest.mark.exact
def test_full_precision_policies_are_the_plain_step():
    net, params, x, y = _case("tanh", "softmax", "cross_entropy")
    plain = fnn.backprop(net, params, x, y)
    for name in ("fp32", "tf32"):
        policy = precision.get(name)
        with precision.matmul_context(policy):
            loss, grads, _ = jax.jit(precision.backprop_step, static_argnums=(0, 1))(
                net, policy, params, x, y
            )
        np.testing.assert_array_equal(loss, plain[0])  # on CPU the matmul precision changes nothing
        for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(plain[1])):
            np.testing.assert_array_equal(a, b)


def test_fit_traces_exact_float32_matmuls_by_default(monkeypatch):
    """``fit``'s default is ``fp32``, whose matmuls are exact float32 on GPUs too (XLA's default there
    is TF32)."""
    seen, real = [], precision.matmul_context
    monkeypatch.setattr(precision, "matmul_context", lambda policy: seen.append(policy) or real(policy))
    net, params, x, y = _case("tanh", "softmax", "cross_entropy")
    fnn.fit(net, params, (x, y), optimizer="gd", epochs=1, key=jax.random.key(0))
    fnn.fit(net, params, (x, y), optimizer="gd", epochs=1, key=jax.random.key(0), precision=None)
    assert [p and p.matmul_precision for p in seen] == ["highest", None]


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        precision.get("fp8")


def test_bf16_training_on_digits_keeps_float32_state_and_learns():
    splits = fnn.data.prepare(
        fnn.datasets.load("digits"), test_size=0.25, val_size=0.0, seed=0, scale="standard"
    )
    net = fnn.MLP((64, 64, 10), activation="relu", output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    params, history = fnn.fit(
        net,
        params,
        (splits.train.x, splits.train.y),
        epochs=8,
        batch_size=64,
        key=jax.random.key(1),
        precision="bf16",
    )
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))
    acc = fnn.evaluate(net, params, splits.test.x, splits.test.y)["accuracy"]
    assert acc > 0.90, acc
