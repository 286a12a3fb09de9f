"""Data: preparation (``fnn.data.prepare``, scalers, splits, one-hot) and
datasets by name (``fnn.data.datasets``, public as ``fnn.datasets``).

Imports ``fnn.core`` only.
"""

from fnn.data.preparation import *  # noqa: F401,F403
from fnn.data.preparation import __all__  # noqa: F401
