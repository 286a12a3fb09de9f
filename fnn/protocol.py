"""``fnn.protocol``: the network protocol: what every part of fnn needs from a network
(``fnn.protocol.Network``), and the helpers built on it.

A public namespace: its names are defined in ``fnn.core.protocol``, where their
documentation lives.
"""

from fnn.core.protocol import Network as Network
from fnn.core.protocol import group_norms as group_norms
from fnn.core.protocol import loss_from_cache as loss_from_cache
from fnn.core.protocol import norm as norm
from fnn.core.protocol import output_delta as output_delta
from fnn.core.protocol import weights as weights

__all__ = [
    "Network",
    "group_norms",
    "loss_from_cache",
    "norm",
    "output_delta",
    "weights",
]
