"""``fnn.protocol``: the network protocol: what every part of fnn needs from a network
(``fnn.protocol.Network``), and the helpers built on it.

A public namespace: its names are defined in ``fnn.core.protocol``, where their
documentation lives.
"""

from fnn.core.protocol import *  # noqa: F401,F403
from fnn.core.protocol import __all__  # noqa: F401
