"""``fnn.datasets``: datasets by name (``fnn.datasets.load``): scikit-learn's bundled sets, the
synthetic problems, CSV files and the IDX files of MNIST.

A public namespace: its names are defined in ``fnn.data.datasets``, where their
documentation lives.
"""

from fnn.data.datasets import IDX as IDX
from fnn.data.datasets import IDX_SOURCES as IDX_SOURCES
from fnn.data.datasets import NAMES as NAMES
from fnn.data.datasets import SKLEARN as SKLEARN
from fnn.data.datasets import SYNTHETIC as SYNTHETIC
from fnn.data.datasets import Dataset as Dataset
from fnn.data.datasets import download_idx as download_idx
from fnn.data.datasets import load as load
from fnn.data.datasets import load_csv as load_csv
from fnn.data.datasets import load_idx_dataset as load_idx_dataset
from fnn.data.datasets import load_sklearn as load_sklearn
from fnn.data.datasets import read_idx as read_idx
from fnn.data.datasets import sine as sine
from fnn.data.datasets import spirals as spirals
from fnn.data.datasets import write_idx as write_idx
from fnn.data.datasets import xor as xor

__all__ = [
    "Dataset",
    "IDX",
    "IDX_SOURCES",
    "NAMES",
    "SKLEARN",
    "SYNTHETIC",
    "download_idx",
    "load",
    "load_csv",
    "load_idx_dataset",
    "load_sklearn",
    "read_idx",
    "sine",
    "spirals",
    "write_idx",
    "xor",
]
