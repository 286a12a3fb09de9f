"""``fnn.datasets``: datasets by name (``fnn.datasets.load``): scikit-learn's bundled sets, the
synthetic problems, CSV files and the IDX files of MNIST.

A public namespace: its names are defined in ``fnn.data.datasets``, where their
documentation lives.
"""

from fnn.data.datasets import *  # noqa: F401,F403
from fnn.data.datasets import __all__  # noqa: F401
