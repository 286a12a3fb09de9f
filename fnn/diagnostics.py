"""``fnn.diagnostics``: why a network trains or does not: per-layer gradient and delta norms,
saturation, dead relus and update-to-weight ratios.

A public namespace: its names are defined in ``fnn.training.diagnostics``, where their
documentation lives.
"""

from fnn.training.diagnostics import *  # noqa: F401,F403
from fnn.training.diagnostics import __all__  # noqa: F401
