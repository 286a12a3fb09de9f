"""Bad input: a clear ValueError/TypeError naming the argument, before any operation is traced.

The public functions check host inputs before calling anything, and check
device arrays when JAX first traces their signature, as the first thing the
program does (fnn/core/dispatch.py): either way no operation of fnn's is traced,
lowered or compiled for a call that fails its checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.check.autodiff import autodiff_core
from fnn.check.finite_differences import compiled_finite_differences
from fnn.core.backprop import backprop_core
from fnn.core.forward import loss_core, predict_core
from fnn.core.manual_vjp import manual_loss

NET = fnn.MLP((3, 4, 2), "tanh", "identity", "mse")
CLF = fnn.MLP((3, 4, 3), "relu", "softmax", "cross_entropy")
PARAMS = fnn.init(jax.random.key(0), NET)
CLF_PARAMS = fnn.init(jax.random.key(0), CLF)
X = jnp.ones((5, 3))
Y = jnp.zeros((5, 2))

# fnn's programs, public (fnn.core.dispatch) and internal, are named after these functions
PROGRAMS = {
    f.__name__
    for f in (backprop_core, autodiff_core, loss_core, predict_core, manual_loss, compiled_finite_differences)
}
WITH_TARGETS = (fnn.backprop, fnn.autodiff, fnn.loss, fnn.loss_with_manual_vjp)


@pytest.fixture(autouse=True)
def nothing_is_lowered():
    """Each error must come from the checks: none of fnn's programs is lowered or compiled."""
    seen = []

    def listen(event, _duration, fun_name="", **_):
        if event.endswith(("jaxpr_to_mlir_module_duration", "backend_compile_duration")):
            seen.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield
    jax.monitoring.unregister_event_duration_listener(listen)
    assert not [name for name in seen if any(f"({p})" in name for p in PROGRAMS)]


def raises(kind, pattern):
    return pytest.raises(kind, match=pattern)


# --- the network description ---------------------------------------------------------------


def test_sizes_with_fewer_than_two_entries():
    with raises(ValueError, r"sizes needs at least 2 entries"):
        fnn.MLP((3,))


@pytest.mark.parametrize("sizes", [(3, 0, 1), (3, -2, 1)])
def test_sizes_with_a_non_positive_entry(sizes):
    with raises(ValueError, r"sizes must be positive"):
        fnn.MLP(sizes)


def test_sizes_that_are_not_ints():
    with raises(TypeError, r"sizes must contain ints"):
        fnn.MLP((3, 2.5, 1))
    with raises(TypeError, r"sizes must be a sequence of ints"):
        fnn.MLP("3,4,1")


def test_unknown_activation():
    with raises(ValueError, r"unknown activation 'swishy'; expected one of"):
        fnn.MLP((3, 4, 1), activation="swishy")


def test_unknown_output_activation():
    with raises(ValueError, r"unknown activation 'linear'"):
        fnn.MLP((3, 4, 1), output="linear")


def test_activation_tuple_of_the_wrong_length():
    with raises(ValueError, r"activation has 1 names but the network has 2 hidden layers"):
        fnn.MLP((3, 4, 4, 1), activation=("tanh",))


def test_softmax_in_a_hidden_layer():
    with raises(ValueError, r"'softmax' may only be used as the output activation"):
        fnn.MLP((3, 4, 1), activation="softmax")


def test_unknown_loss():
    with raises(ValueError, r"unknown loss 'nll'; expected one of"):
        fnn.MLP((3, 4, 1), loss="nll")


def test_loss_without_its_output_activation():
    with raises(ValueError, r"loss 'cross_entropy' needs output='softmax'"):
        fnn.MLP((3, 4, 2), output="identity", loss="cross_entropy")
    with raises(ValueError, r"loss 'bce' needs output='sigmoid'"):
        fnn.MLP((3, 4, 2), output="tanh", loss="bce")


def test_unknown_init_scheme():
    with raises(ValueError, r"unknown init scheme 'xavier'; expected one of"):
        fnn.init(jax.random.key(0), NET, scheme="xavier")


def test_init_with_an_integer_dtype():
    with raises(TypeError, r"dtype must be a floating dtype"):
        fnn.init(jax.random.key(0), NET, dtype=jnp.int32)


def test_net_that_is_not_an_mlp():
    with raises(TypeError, r"net must be an fnn.MLP"):
        fnn.backprop((3, 4, 2), PARAMS, X, Y)


# --- x and y ---------------------------------------------------------------------------------


def test_x_with_the_wrong_feature_count():
    with raises(ValueError, r"x must have shape \(batch, 3\) for sizes \(3, 4, 2\), got \(5, 4\)"):
        fnn.backprop(NET, PARAMS, jnp.ones((5, 4)), Y)


def test_x_with_the_wrong_rank():
    with raises(ValueError, r"x must have shape \(batch, 3\).*got \(5, 3, 1\)"):
        fnn.predict(NET, PARAMS, jnp.ones((5, 3, 1)))
    with raises(ValueError, r"x must have shape \(batch, 3\).*got \(3,\)"):
        fnn.predict(NET, PARAMS, jnp.ones(3))  # a single example is not guessed at


def test_empty_batch():
    with raises(ValueError, r"at least one example"):
        fnn.loss(NET, PARAMS, jnp.ones((0, 3)), jnp.ones((0, 2)))


def test_non_numeric_x():
    with raises(TypeError, r"x must be numeric"):
        fnn.predict(NET, PARAMS, np.array([["a", "b", "c"]]))


def test_y_with_the_wrong_shape():
    with raises(ValueError, r"y must have shape \(5, 2\), got \(5, 3\)"):
        fnn.backprop(NET, PARAMS, X, jnp.zeros((5, 3)))
    with raises(ValueError, r"y must have shape \(5, 2\), got \(4, 2\)"):
        fnn.autodiff(NET, PARAMS, X, jnp.zeros((4, 2)))


def test_one_dimensional_y_is_not_broadcast_against_several_outputs():
    with raises(ValueError, r"y must have shape \(5, 2\), got \(5,\)"):
        fnn.loss(NET, PARAMS, X, jnp.zeros(5))


def test_labels_with_the_wrong_shape():
    with raises(ValueError, r"integer labels y must have shape \(5,\), got \(5, 1\)"):
        fnn.backprop(CLF, CLF_PARAMS, X, jnp.zeros((5, 1), jnp.int32))


# --- values: read from host inputs on every call, from device arrays by fnn.check_inputs --------

BCE = fnn.MLP((3, 4, 2), output="sigmoid", loss="bce")
BCE_PARAMS = fnn.init(jax.random.key(0), BCE)
BAD_VALUES = {
    "label above the range": (
        CLF,
        CLF_PARAMS,
        [0, 1, 2, 3, 0],
        r"labels y must lie in \[0, 2\] for 3 outputs, got values in \[0, 3\]",
    ),
    "negative label": (
        CLF,
        CLF_PARAMS,
        [0, -1, 2, 1, 0],
        r"labels y must lie in \[0, 2\] for 3 outputs, got values in \[-1, 2\]",
    ),
    "rows not summing to 1": (CLF, CLF_PARAMS, np.ones((5, 3)), r"y rows for cross_entropy must sum to 1"),
    "cross_entropy target outside [0, 1]": (
        CLF,
        CLF_PARAMS,
        np.tile([1.5, -0.5, 0.0], (5, 1)),
        r"y for loss 'cross_entropy' must lie in \[0, 1\]",
    ),
    "bce target outside [0, 1]": (
        BCE,
        BCE_PARAMS,
        2 * np.ones((5, 2)),
        r"y for loss 'bce' must lie in \[0, 1\]",
    ),
}


@pytest.mark.parametrize("fn", WITH_TARGETS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("host", [np.asarray, lambda a: np.asarray(a).tolist()], ids=["numpy", "list"])
@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_on_the_host_are_refused_at_every_call(case, host, fn):
    net, params, y, message = BAD_VALUES[case]
    with raises(ValueError, message):
        fn(net, params, np.asarray(X), host(y))
    with raises(ValueError, message):  # device x, host y: the host array is read
        fn(net, params, X, host(y))


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_on_a_device_are_found_by_check_inputs(case):
    net, params, y, message = BAD_VALUES[case]
    with raises(ValueError, message):
        fnn.check_inputs(net, params, X, jnp.asarray(y))
    with raises(ValueError, message):
        fnn.check_inputs(net, params, np.asarray(X), np.asarray(y))


@pytest.mark.parametrize("case", BAD_VALUES)
def test_fit_reads_its_device_data_once(case):
    net, params, y, message = BAD_VALUES[case]
    with raises(ValueError, message):
        fnn.fit(net, params, (X, jnp.asarray(y)), optimizer="adam", epochs=1, key=jax.random.key(0))
    good = jnp.asarray(np.eye(net.sizes[-1])[np.arange(5) % net.sizes[-1]])
    with raises(ValueError, message):  # in the validation data too
        fnn.fit(
            net,
            params,
            (X, good),
            optimizer="adam",
            epochs=1,
            key=jax.random.key(0),
            validation=(X, jnp.asarray(y)),
        )


def test_check_inputs_makes_the_signature_checks_too():
    with raises(ValueError, r"y must have shape \(5, 2\), got \(5, 3\)"):
        fnn.check_inputs(NET, PARAMS, X, jnp.zeros((5, 3)))
    with raises(TypeError, r"net must be an fnn.MLP"):
        fnn.check_inputs((3, 4, 2), PARAMS, X, Y)
    assert fnn.check_inputs(NET, PARAMS, X, Y) is None
    assert fnn.check_inputs(CLF, CLF_PARAMS, X, jnp.array([0, 1, 2, 1, 0])) is None


def test_check_inputs_needs_concrete_values():
    with raises(TypeError, r"check_inputs reads the values of y: call it on concrete arrays"):
        jax.jit(lambda y: fnn.check_inputs(NET, PARAMS, X, y))(Y)


# --- params ----------------------------------------------------------------------------------


def test_params_with_the_wrong_number_of_layers():
    with raises(ValueError, r"params has 1 layers but net has 2"):
        fnn.backprop(NET, PARAMS[:1], X, Y)


def test_params_with_a_wrong_shape():
    bad = [PARAMS[0], {"W": jnp.ones((4, 3)), "b": jnp.ones(2)}]
    with raises(
        ValueError, r"params\[1\]\['W'\] must have shape \(4, 2\) for sizes \(3, 4, 2\), got \(4, 3\)"
    ):
        fnn.backprop(NET, bad, X, Y)


def test_params_with_missing_keys():
    with raises(ValueError, r"params\[0\] must be a dict with keys 'W' and 'b'"):
        fnn.loss(NET, [{"W": PARAMS[0]["W"]}, PARAMS[1]], X, Y)


def test_params_that_are_not_a_list():
    with raises(TypeError, r"params must be a list of"):
        fnn.loss(NET, {"W": 1}, X, Y)


def test_params_with_integer_or_mixed_dtypes():
    ints = [{"W": jnp.ones((3, 4), jnp.int32), "b": jnp.ones(4, jnp.int32)}, PARAMS[1]]
    with raises(TypeError, r"params\[0\]\['W'\] must be floating point"):
        fnn.loss(NET, ints, X, Y)
    mixed = [PARAMS[0], {"W": PARAMS[1]["W"].astype(jnp.bfloat16), "b": PARAMS[1]["b"]}]
    with raises(TypeError, r"params must share one dtype"):
        fnn.loss(NET, mixed, X, Y)


# --- finite differences and the check ----------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, -1e-3, float("nan"), "1e-3"])
def test_eps_that_is_not_positive(eps):
    with raises(ValueError, r"eps must be a positive number"):
        fnn.finite_differences(NET, PARAMS, X, Y, eps=eps)


def test_unknown_finite_difference_scheme():
    with raises(ValueError, r"unknown finite-difference scheme 'backward'"):
        fnn.finite_differences(NET, PARAMS, X, Y, scheme="backward")


@pytest.mark.parametrize("check", [fnn.check_inputs, fnn.check_gradients], ids=lambda f: f.__name__)
@pytest.mark.parametrize("where", ["x", "y", "params"])
def test_non_finite_inputs_are_refused(where, check):
    x, y, params = X, Y, PARAMS
    if where == "x":
        x = X.at[0, 0].set(jnp.nan)
    elif where == "y":
        y = Y.at[1, 1].set(jnp.inf)
    else:
        params = [{"W": PARAMS[0]["W"].at[0, 0].set(-jnp.inf), "b": PARAMS[0]["b"]}, PARAMS[1]]
    with raises(ValueError, rf"{where} contains NaN or inf"):
        check(NET, params, x, y)


def test_check_gradients_with_an_unsupported_dtype():
    with raises(ValueError, r"dtype must be 'float32' or 'float64'"):
        fnn.check_gradients(NET, PARAMS, X, Y, dtype="float16")


def test_cli_error_is_one_line_without_traceback(capsys):
    from fnn import cli

    assert cli.main(["demo", "--sizes", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fnn demo: error: sizes needs at least 2 entries (inputs, outputs), got (3,)"]
