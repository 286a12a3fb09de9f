"""fnn: feed-forward networks as pure JAX functions, with hand-written backprop.

A network, its params and the hand-written backward pass:

    net = fnn.MLP((4, 16, 3), activation="tanh", output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    loss, grads = fnn.backprop(net, params, x, y)
"""

# what backprop is proven against
from fnn.check.analytical import single_unit_gradient
from fnn.check.autodiff import autodiff
from fnn.check.curvature_check import CurvatureReport, check_curvature
from fnn.check.finite_differences import finite_differences
from fnn.check.gradcheck import GradientReport, check_gradients

# the network math and its hand-written derivatives
from fnn.core.activations import register_activation
from fnn.core.backprop import backprop
from fnn.core.curvature import Curvature, curvature, gnvp, hvp
from fnn.core.forward import loss, predict
from fnn.core.graph import Dense, Graph
from fnn.core.initializers import init
from fnn.core.manual_vjp import loss_with_manual_vjp
from fnn.core.mlp import MLP
from fnn.core.validation import check_inputs

# training, its precision policies, and the compile cache it keeps
from fnn.scale.compile_cache import disable_compile_cache, enable_compile_cache
from fnn.scale.precision import Policy
from fnn.training.history import Stop, StopKind
from fnn.training.loop import History, Interrupted, Run, evaluate, fit

# isort: split
# the public namespaces, imported after the names above them (hence the split), one per line as equinox
# re-exports: fnn.callbacks.Checkpoint, fnn.optimizers.get, fnn.data.prepare, fnn.datasets.load, ...
from fnn import callbacks as callbacks
from fnn import data as data
from fnn import datasets as datasets
from fnn import diagnostics as diagnostics
from fnn import optimizers as optimizers
from fnn import protocol as protocol

__version__ = "0.1.0"

__all__ = [
    "Dense",
    "Graph",
    "MLP",
    "Curvature",
    "CurvatureReport",
    "GradientReport",
    "History",
    "Interrupted",
    "Policy",
    "Run",
    "Stop",
    "StopKind",
    "autodiff",
    "backprop",
    "check_curvature",
    "check_gradients",
    "check_inputs",
    "curvature",
    "enable_compile_cache",
    "disable_compile_cache",
    "evaluate",
    "finite_differences",
    "fit",
    "gnvp",
    "hvp",
    "init",
    "loss",
    "loss_with_manual_vjp",
    "predict",
    "register_activation",
    "single_unit_gradient",
]
