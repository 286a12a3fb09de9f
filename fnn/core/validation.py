"""Checks at the public boundary: clear ``ValueError``/``TypeError`` before any operation is traced.

``check`` makes every check: the net, the params' layout, shapes and dtypes of
``x`` and ``y`` and the names, which need no values, and, for inputs on the
host (NumPy arrays, Python lists), the values (labels in range, targets in
[0, 1], rows summing to 1). It never reads a device array (``jax.Array``)
unless asked (``read_device``): that would wait for the computation that
produces it, and copy it back. ``fnn.core.dispatch`` places these checks on the
per-call path of the public functions so that they cost nothing there;
``check_inputs`` (``fnn.check_inputs``) makes them all, on device arrays
too, when asked, and ``fnn.fit`` reads its data's values once.

Shapes are checked on tracers as well as on arrays, so the checks also run
when a user wraps the API in ``jax.jit``, ``jax.vmap`` or ``jax.grad``.

Reshapes that are made (``convert``), and documented:
  * ``x`` and float ``y`` are cast to the params' dtype;
  * a 1-D ``x`` (or float ``y``) is read as a column when the layer it meets
    has width 1, e.g. ``sine`` data of shape (N,) for a 1-input network;
  * with ``cross_entropy``, a 1-D integer ``y`` holds class labels and is
    one-hot encoded. On the device their range is not read: a label outside
    ``[0, n_out)`` makes the loss and every gradient NaN (``guard``).
Nothing else is broadcast: any other shape is an error.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import losses
from fnn.core.protocol import Network


def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def _readable(a, read_device: bool) -> bool:
    """Whether value checks read ``a``: host arrays always, device arrays when asked."""
    return (read_device and _is_concrete(a)) or not isinstance(a, jax.Array)


def check_net(net) -> None:
    if not isinstance(net, Network):
        raise TypeError(f"net must be an fnn.MLP or another fnn.protocol.Network, got {type(net).__name__}")


def check_params(net: Network, params):
    """Return the params' dtype after checking they match ``net`` (``net.check_params``)."""
    return net.check_params(params)


def check_tangent(net: Network, v, dtype) -> None:
    """``v``, a direction in parameter space, must be shaped as the params and share their ``dtype``."""
    try:
        got = net.check_params(v)
    except (TypeError, ValueError) as err:
        raise type(err)(f"v must be shaped like the params: {str(err).replace('params', 'v')}") from None
    if jnp.dtype(got) != jnp.dtype(dtype):
        raise TypeError(f"v must have the params' dtype {jnp.dtype(dtype).name}, got {jnp.dtype(got).name}")


def check_positive_int(name: str, v, allow_none: bool = False) -> int | None:
    """``v`` as an int; ``ValueError`` naming ``name`` unless it is a positive int
    (or ``None``, with ``allow_none``)."""
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def check_number(name: str, v, ok, expected: str) -> float:
    """``v`` as a float; ``ValueError`` naming ``name`` unless it is a real number, not a bool, for which
    ``ok(v)`` holds. ``expected`` says what ``ok`` asks: ``"in [0, 1)"`` gives
    ``momentum must be in [0, 1), got 1.0``."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not ok(v):
        raise ValueError(f"{name} must be {expected}, got {v!r}")
    return float(v)


def check_positive_number(name: str, v, *, allow_none: bool = False, finite: bool = True) -> float | None:
    """``v`` as a float; ``ValueError`` naming ``name`` unless it is a number ``> 0``, not a bool, and finite
    (``finite=False``: ``inf`` too), or ``None`` with ``allow_none``. NaN is never positive."""
    if v is None and allow_none:
        return None
    ok = (lambda u: u > 0 and math.isfinite(u)) if finite else (lambda u: u > 0)
    return check_number(name, v, ok, "a positive number or None" if allow_none else "a positive number")


def check_key(key):
    """``key`` as a typed PRNG key: a ``jax.random.key`` or the raw ``uint32`` data of one
    (``TypeError`` else)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return key
    if dtype is not None and jnp.dtype(dtype) == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        f"key must be a JAX PRNG key such as jax.random.key(0), got {type(key).__name__}"
        f"{'' if dtype is None else f' of dtype {dtype}'}"
    )


def _as_array(name: str, a):
    if not hasattr(a, "shape"):
        try:
            a = np.asarray(a)
        except Exception as err:
            raise TypeError(f"{name} must be an array, got {type(a).__name__}") from err
    if not (jnp.issubdtype(a.dtype, jnp.number) or a.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


def _shape(a, width: int) -> tuple:
    """``a``'s shape, a 1-D array read as a column where it meets a layer of width 1."""
    return (a.shape[0], 1) if a.ndim == 1 and width == 1 else tuple(a.shape)


def _labels(net: Network, y) -> bool:
    return losses.kind(net.loss) is losses.Kind.LABELS and jnp.issubdtype(y.dtype, jnp.integer)


def check_x(net: Network, x) -> None:
    n_in = net.n_in
    shape = _shape(x, n_in)
    if len(shape) != 2 or shape[1] != n_in:
        raise ValueError(f"x must have shape (batch, {n_in}) for {net.label}, got {tuple(x.shape)}")
    if shape[0] == 0:
        raise ValueError("x must hold at least one example, got batch size 0")


def _check_labels(net: Network, y, batch: int, read_device: bool) -> None:
    n_out = net.n_out
    if y.shape != (batch,):
        raise ValueError(f"integer labels y must have shape ({batch},), got {tuple(y.shape)}")
    if _readable(y, read_device) and y.size:
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= n_out:
            raise ValueError(
                f"labels y must lie in [0, {n_out - 1}] for {n_out} outputs, got values in [{lo}, {hi}]"
            )


def check_y(net: Network, y, batch: int, read_device: bool = False) -> None:
    if _labels(net, y):
        return _check_labels(net, y, batch, read_device)
    n_out, kind = net.n_out, losses.kind(net.loss)
    if _shape(y, n_out) != (batch, n_out):
        hint = " or integer labels of shape (batch,)" if kind is losses.Kind.LABELS else ""
        raise ValueError(f"y must have shape ({batch}, {n_out}){hint}, got {tuple(y.shape)}")
    if _readable(y, read_device) and y.size and losses.classifies(net.loss):
        v = np.asarray(y, dtype=np.float64).reshape(batch, n_out)
        if v.min() < 0 or v.max() > 1:
            raise ValueError(
                f"y for loss {net.loss!r} must lie in [0, 1], got values in [{v.min():.4g}, {v.max():.4g}]"
            )
        if kind is losses.Kind.LABELS and not np.allclose(v.sum(axis=1), 1, atol=1e-5):
            raise ValueError("y rows for cross_entropy must sum to 1 (one-hot or probabilities)")
    if _readable(y, read_device) and y.size and kind is losses.Kind.COUNTS and np.min(y) < 0:
        raise ValueError(
            f"y for loss 'poisson' must be >= 0 (counts or rates), got a minimum of {np.min(y):.4g}"
        )


def check(net: Network, params, x, y=None, *, read_device: bool = False):
    """Check every argument, reading no values but those of host inputs (and of
    device arrays with ``read_device``; never of tracers). Returns ``(dtype, x, y)``:
    the params' dtype and ``x``, ``y`` as arrays (NumPy for host inputs)."""
    check_net(net)
    dtype = check_params(net, params)
    x = _as_array("x", x)
    check_x(net, x)
    if y is None:
        return dtype, x, None
    y = _as_array("y", y)
    check_y(net, y, _shape(x, net.n_in)[0], read_device)
    return dtype, x, y


def _convert(a, width: int, dtype):
    """``a`` in the params' ``dtype`` and (batch, width) shape: NumPy work for host arrays."""
    return jnp.asarray(a.reshape(_shape(a, width)), dtype)


def _one_hot(y, n_out: int, dtype):
    """Labels as one-hot rows; on the device, a label outside ``[0, n_out)`` as a row of NaN (``guard``)."""
    if not isinstance(y, jax.Array):  # NumPy, checked: no compilation for a one-off encoding
        return jnp.asarray(np.eye(n_out, dtype=dtype)[np.asarray(y)])
    return jnp.where(((y >= 0) & (y < n_out))[:, None], jax.nn.one_hot(y, n_out, dtype=dtype), jnp.nan)


def convert(net: Network, dtype, x, y=None):
    """The documented reshapes of checked inputs: ``(x, y)`` in ``dtype``, (batch, n)
    shaped, labels one-hot. NumPy work for host arrays; inside a compiled
    program, no operation at all for inputs already so shaped and typed."""
    x = _convert(x, net.n_in, dtype)
    if y is None:
        return x, None
    if _labels(net, y):
        return x, _one_hot(y, net.n_out, dtype)
    return x, _convert(y, net.n_out, dtype)


def device_labels(net: Network, y) -> bool:
    """Whether ``y`` holds integer labels whose values the call does not read (a device array, a tracer)."""
    return y is not None and isinstance(y, jax.Array) and _labels(net, y)


def guard(result):
    """``result`` (a loss, ``(loss, grads, ...)`` or an object with a ``.loss``)
    made NaN throughout when its loss is NaN.

    A device array's labels are not read on the per-call path (see the module
    docstring), so a label outside ``[0, n_out)`` cannot raise there; ``_one_hot``
    encodes it as a row of NaN, which makes the loss NaN. Its gradient would
    still be finite wherever a relu between cut the NaN row off, so every leaf
    is multiplied by ``where(isnan(loss), nan, 1)``: NaN throughout, and for a
    finite loss ``t * 1 == t``, bit for bit. Under ``jax.grad`` the factor
    multiplies the cotangent too (``isnan`` has no derivative), so what is
    differentiated through the program gives NaN gradients as well.
    """
    loss = result[0] if isinstance(result, tuple) else getattr(result, "loss", result)
    factor = jnp.where(jnp.isnan(loss), jnp.nan, 1.0)
    return jax.tree_util.tree_map(
        lambda t: t * factor.astype(t.dtype) if jnp.issubdtype(t.dtype, jnp.floating) else t, result
    )


def prepare(net: Network, params, x, y=None, *, read_device: bool = False):
    """Check every argument (see ``check``); return ``(x, y)`` ready for the compiled core."""
    return convert(net, *check(net, params, x, y, read_device=read_device))


def check_inputs(net: Network, params, x, y=None) -> None:
    """Every check of the public functions, on device arrays too: shapes, dtypes,
    names, label range, targets in [0, 1], rows summing to 1, and no NaN or inf.

    ``fnn.backprop`` and its siblings never read a device array's values,
    which would wait for the work that produces it; call this once on data
    whose values are in doubt. It reads them (and so waits for them). Raises
    ``ValueError``/``TypeError`` naming the argument; needs concrete arrays.
    """
    for name, a in (("params", params), ("x", x), ("y", y)):
        if any(not _is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(a)):
            raise TypeError(
                f"check_inputs reads the values of {name}: call it on concrete arrays, "
                "outside jax.jit, jax.vmap and jax.grad"
            )
    check(net, params, x, y, read_device=True)
    check_finite(params=params, x=x, **({} if y is None else {"y": y}))


def _on_accelerator(a) -> bool:
    return isinstance(a, jax.Array) and any(d.platform != "cpu" for d in a.devices())


def _all_finite(a) -> bool:
    if _on_accelerator(a):  # check where the data is
        return bool(jnp.all(jnp.isfinite(a)))
    return bool(np.isfinite(np.asarray(a)).all())  # host memory: NumPy, nothing to compile


def check_finite(**arrays) -> None:
    """``ValueError`` naming the first argument holding NaN or inf (concrete values only)."""
    for name, tree in arrays.items():
        for leaf in jax.tree_util.tree_leaves(tree):
            if _is_concrete(leaf) and not _all_finite(leaf):
                raise ValueError(f"{name} contains NaN or inf")


def match_tree(name: str, paths: list[str], leaves: list, template, hint: str):
    """``leaves`` rebuilt on ``template``'s structure, after checking them against ``template``.

    ``paths`` are the leaves' ``jax.tree_util.keystr`` key paths. A ``ValueError``
    names ``name`` when the paths differ from the template's (with ``hint``),
    and names the first leaf whose shape or dtype differs.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [jax.tree_util.keystr(p) for p, _ in flat]
    if list(paths) != want:
        raise ValueError(
            f"{name} does not match this run's structure ({len(paths)} leaves given, "
            f"{len(want)} expected): {hint}"
        )
    for p, a, t in zip(want, leaves, (t for _, t in flat)):
        got, expected = (jnp.result_type(a), jnp.shape(a)), (jnp.result_type(t), jnp.shape(t))
        if got != expected:
            raise ValueError(
                f"{name}{p} is {got[0]}{list(got[1])}, this run expects {expected[0]}{list(expected[1])}"
            )
    return jax.tree_util.tree_unflatten(treedef, list(leaves))
