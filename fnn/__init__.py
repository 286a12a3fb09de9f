"""fnn: feed-forward networks as pure JAX functions, with hand-written backprop.

    net = fnn.MLP((4, 16, 3), activation="tanh", output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    loss, grads = fnn.backprop(net, params, x, y)
"""

from fnn.activations import register_activation
from fnn.analytical import single_unit_gradient
from fnn.autodiff import autodiff, loss_with_manual_vjp
from fnn.backprop import backprop
from fnn.compile_cache import enable_compile_cache
from fnn.finite_differences import finite_differences
from fnn.forward import loss, predict
from fnn.gradcheck import GradientReport, check_gradients
from fnn.graph import Dense, Graph
from fnn.initializers import init
from fnn.network import MLP
from fnn.validation import check_inputs
from fnn.train import History, fit
from fnn import callbacks, data, datasets, diagnostics, optimizers, protocol  # noqa: E402  (modules: fnn.callbacks.Checkpoint, ...)

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Graph",
    "MLP",
    "GradientReport",
    "History",
    "autodiff",
    "backprop",
    "check_gradients",
    "check_inputs",
    "enable_compile_cache",
    "finite_differences",
    "fit",
    "init",
    "loss",
    "loss_with_manual_vjp",
    "predict",
    "register_activation",
    "single_unit_gradient",
]
