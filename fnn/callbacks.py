"""``fnn.callbacks``: what ``fnn.fit`` calls at the start and end of a run and of each epoch:
``fnn.callbacks.EarlyStopping``, ``Checkpoint``, ``ProgressBar``, ...

A public namespace: its names are defined in ``fnn.training.callbacks``, where their
documentation lives.
"""

from fnn.training.callbacks import *  # noqa: F401,F403
from fnn.training.callbacks import __all__  # noqa: F401
