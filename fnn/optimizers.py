"""``fnn.optimizers``: the training methods by name (``get``, ``NAMES``, ``spec``), the record each declares
(``Method``) and how to add one (``register``), and what a method may ask of the loss (``Objective``).

A public namespace: its names are defined in ``fnn.optim.registry``, ``fnn.optim.method``,
``fnn.optim.objective`` and the methods' own modules, where their documentation lives.
"""

from fnn.optim.conjugate_gradient import scg as scg
from fnn.optim.first_order import AdaptiveLRState as AdaptiveLRState
from fnn.optim.first_order import adaptive_lr as adaptive_lr
from fnn.optim.gauss_newton import BayesianRegularizationState as BayesianRegularizationState
from fnn.optim.gauss_newton import LevenbergMarquardtState as LevenbergMarquardtState
from fnn.optim.gauss_newton import bayesian_regularization as bayesian_regularization
from fnn.optim.gauss_newton import levenberg_marquardt as levenberg_marquardt
from fnn.optim.gauss_newton import residuals_and_jacobian as residuals_and_jacobian
from fnn.optim.hessian_free import HessianFreeState as HessianFreeState
from fnn.optim.hessian_free import hessian_free as hessian_free
from fnn.optim.kfac import KfacState as KfacState
from fnn.optim.kfac import kfac as kfac
from fnn.optim.method import Method as Method
from fnn.optim.method import Spec as Spec
from fnn.optim.method import find_state as find_state
from fnn.optim.objective import Objective as Objective
from fnn.optim.registry import ALIASES as ALIASES
from fnn.optim.registry import DEFAULT as DEFAULT
from fnn.optim.registry import NAMES as NAMES
from fnn.optim.registry import OPTIMIZERS as OPTIMIZERS
from fnn.optim.registry import default_batch as default_batch
from fnn.optim.registry import get as get
from fnn.optim.registry import register as register
from fnn.optim.registry import spec as spec

__all__ = [
    "ALIASES",
    "AdaptiveLRState",
    "BayesianRegularizationState",
    "HessianFreeState",
    "KfacState",
    "LevenbergMarquardtState",
    "DEFAULT",
    "Method",
    "NAMES",
    "OPTIMIZERS",
    "Objective",
    "Spec",
    "adaptive_lr",
    "bayesian_regularization",
    "default_batch",
    "find_state",
    "get",
    "hessian_free",
    "kfac",
    "levenberg_marquardt",
    "register",
    "residuals_and_jacobian",
    "scg",
    "spec",
]
