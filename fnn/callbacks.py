"""``fnn.callbacks``: what ``fnn.fit`` calls at the start and end of a run and of each epoch:
``fnn.callbacks.EarlyStopping``, ``Checkpoint``, ``ProgressBar``, ...

A public namespace: its names are defined in ``fnn.training.callbacks``, where their
documentation lives.
"""

from fnn.training.callbacks import Callback as Callback
from fnn.training.callbacks import Checkpoint as Checkpoint
from fnn.training.callbacks import CSVLogger as CSVLogger
from fnn.training.callbacks import Diagnostics as Diagnostics
from fnn.training.callbacks import DivergenceWarning as DivergenceWarning
from fnn.training.callbacks import EarlyStopping as EarlyStopping
from fnn.training.callbacks import Lambda as Lambda
from fnn.training.callbacks import LevenbergMarquardtStop as LevenbergMarquardtStop
from fnn.training.callbacks import MethodStop as MethodStop
from fnn.training.callbacks import ProgressBar as ProgressBar
from fnn.training.callbacks import StopAt as StopAt
from fnn.training.callbacks import TerminateOnNaN as TerminateOnNaN
from fnn.training.callbacks import postfix as postfix

__all__ = [
    "Callback",
    "CSVLogger",
    "Checkpoint",
    "Diagnostics",
    "DivergenceWarning",
    "EarlyStopping",
    "Lambda",
    "LevenbergMarquardtStop",
    "MethodStop",
    "ProgressBar",
    "StopAt",
    "TerminateOnNaN",
    "postfix",
]
