"""``fnn.optimizers``: the training methods by name (``fnn.optimizers.get``, ``NAMES``, ``spec``) and
the interface they share with the loss (``Objective``).

A public namespace: its names are defined in ``fnn.optim.registry``, where their
documentation lives.
"""

from fnn.optim.registry import *  # noqa: F401,F403
from fnn.optim.registry import __all__  # noqa: F401
