"""The per-call path of the public functions: one jitted program per network, checked when traced.

A user's loop calls ``fnn.backprop(net, params, x, y)`` thousands of times;
on a small network the call costs more than the arithmetic, so what the call
adds is what the user pays. This module keeps it to what a jitted function of
the user's own costs:

* **One program per function and network.** ``program(core, net)`` is
  ``jax.jit`` of ``core`` with ``net`` closed over (and named after ``core``), a function of
  ``(params, x[, y])`` alone: its dispatch is JAX's C++ path, as for a
  ``jax.jit`` the user writes, with no static argument to hash. It is made
  once, kept on the ``net`` object for the next call, and shared by equal
  networks, so that a network built anew in a loop does not compile anew.
* **Signature checks where JAX caches signatures.** The program's first act
  when JAX traces it for a new signature (net, params layout, shapes,
  dtypes: the first call with them) is ``fnn.core.validation.check``, before any
  operation is traced. A bad argument raises its ``ValueError``/``TypeError``
  there, and nothing is lowered or compiled; every later call with the same
  signature finds its program in JAX's cache and pays nothing for the checks.
  Then ``fnn.core.validation.convert`` makes the documented reshapes, which are no
  operation at all for inputs already of the right shape and dtype.
* **Labels out of range: NaN, never a plausible number.** Integer labels on
  the device are not read; the program encodes one outside ``[0, n_out)`` as a
  row of NaN and makes every result NaN with it (``validation.guard``).
* **Values: read on the host only.** Device arrays (``jax.Array``) and
  tracers go straight to the program: no value is read, so the call neither
  waits for the computation that produces its inputs nor copies them back.
  Host inputs (NumPy arrays, Python lists) are checked in Python at every
  call, values included (labels in range, targets in [0, 1], rows summing to
  1), and converted. ``fnn.check_inputs`` makes every check on device arrays
  too, when asked.
"""

from __future__ import annotations

import functools
import inspect

import jax

from fnn.core import validation
from fnn.core.protocol import Network

# The concrete type of JAX's device arrays (``jax.Array`` is abstract), for a check cheaper than
# isinstance(a, jax.Array); JAX names it only in private modules, so ``call`` learns it from the first
# device array that passes through it (until then every call takes the general path).
_ARRAY = None

_SHARED: dict = {}  # (core, net) -> program, so that equal networks share one
_MAX_SHARED = 512
_ATTRIBUTE = "_fnn_programs"  # where a net keeps its programs (see Network.__getstate__)


def _checked(core, net: Network, keyed: bool):
    """``(params, [v,] *data[, key]) -> core(net, params, [v,] *data[, key])`` on checked, converted inputs,
    named after ``core``. A core marked ``tangent`` (``takes_tangent``) takes a params-shaped direction ``v``
    after the params (``fnn.hvp``, ``fnn.gnvp``), checked as the params are."""
    tangent = getattr(core, "takes_tangent", False)

    def checked(params, *data):
        key = data[-1] if keyed else None
        data = data[:-1] if keyed else data
        v, data = (data[0], data[1:]) if tangent else (None, data)
        dtype, *data = validation.check(net, params, *data)
        if tangent:
            validation.check_tangent(net, v, dtype)
        guarded = len(data) > 1 and validation.device_labels(net, data[1])
        data = [a for a in validation.convert(net, dtype, *data) if a is not None]
        args = (params, v, *data) if tangent else (params, *data)
        result = core(net, *args, key) if keyed else core(net, *args)
        return validation.guard(result) if guarded else result

    checked.__name__ = checked.__qualname__ = core.__name__ + ("_with_key" if keyed else "")
    return checked


def takes_tangent(core):
    """Mark ``core(net, params, v, x, y[, key])`` as taking a direction ``v`` (see ``_checked``)."""
    core.takes_tangent = True
    return core


def program(core, net: Network, keyed: bool = False):
    """The jitted ``(params, x[, y][, key]) -> core(net, params, x[, y][, key])``,
    checking its inputs when traced."""
    slot = (core, "key") if keyed else core
    programs = getattr(net, _ATTRIBUTE, None)
    if programs is not None and slot in programs:
        return programs[slot]
    validation.check_net(net)
    fn = _SHARED.get((slot, net))
    if fn is None:
        if len(_SHARED) >= _MAX_SHARED:
            _SHARED.clear()
        fn = _SHARED[(slot, net)] = jax.jit(_checked(core, net, keyed))
    net.__dict__.setdefault(_ATTRIBUTE, {})[slot] = fn  # a frozen dataclass: not through setattr
    return fn


def call(core, net: Network, params, *data, key=None, tangent=None):
    """``core(net, params, *data)`` as a public function calls it, ``data`` being ``(x,)`` or ``(x, y)``.

    Tracers go to the program as device arrays do; host inputs are checked
    here first, values included, and converted. ``fast_path`` skips this
    function for device arrays once the net has its program. A ``key`` (dropout
    on) goes to a second program of ``core`` that takes it as its last argument.
    ``tangent``: the direction ``v`` of a ``takes_tangent`` core, passed after the params.
    """
    fn = program(core, net, keyed=key is not None)
    if not all(isinstance(a, jax.Array) for a in data):
        data = [a for a in validation.prepare(net, params, *data) if a is not None]
    extra = () if key is None else (validation.check_key(key),)
    first = (params,) if tangent is None else (params, tangent)
    try:
        result = fn(*first, *data, *extra)
    except TypeError:
        validation.check_params(net, params)  # a leaf JAX cannot take as an array: name it
        raise
    if _ARRAY is None:
        _learn_array_type(data[0])
    return result


def _learn_array_type(x) -> None:
    """Keep the type of ``x`` as ``_ARRAY`` if it is a device array (not a tracer) that a program took."""
    global _ARRAY
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        _ARRAY = type(x)


def fast_path(core):
    """Decorate a public function ``(net, params, x[, y, key])`` that returns ``call(core, ...)``.

    The decorated function goes straight to the net's program when every
    input is a device array and the program exists (and ``call`` has seen a
    device array, whose concrete type it keeps as ``_ARRAY``): one Python frame on top
    of JAX's own dispatch (a frame costs about 0.2 us, 3% of a call to the
    smallest networks' programs). Anything else takes the function itself.
    """

    def decorate(public):
        if "y" not in inspect.signature(public).parameters:

            @functools.wraps(public)
            def with_x(net, params, x):
                if type(x) is _ARRAY:
                    try:
                        return net.__dict__[_ATTRIBUTE][core](params, x)
                    except (AttributeError, KeyError, TypeError):  # no program yet, not an MLP, a bad leaf
                        pass
                return public(net, params, x)

            return with_x

        @functools.wraps(public)
        def with_xy(net, params, x, y, key=None):
            if type(x) is _ARRAY and type(y) is _ARRAY and key is None:
                try:
                    return net.__dict__[_ATTRIBUTE][core](params, x, y)
                except (AttributeError, KeyError, TypeError):
                    pass
            return public(net, params, x, y, key)

        return with_xy

    return decorate
