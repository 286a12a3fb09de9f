"""``fnn.data``: preparation (``fnn.data.prepare``, scalers, splits, one-hot); datasets by name
are ``fnn.datasets``.

A public namespace: its names are defined in ``fnn.data.preparation``, where their
documentation lives. The package's modules, ``fnn.data.preparation`` and
``fnn.data.datasets`` (public as ``fnn.datasets``), are internal; they import
``fnn.core`` only.
"""

from fnn.data.preparation import SCALERS as SCALERS
from fnn.data.preparation import Imputer as Imputer
from fnn.data.preparation import MinMaxScaler as MinMaxScaler
from fnn.data.preparation import OutlierClipper as OutlierClipper
from fnn.data.preparation import Split as Split
from fnn.data.preparation import Splits as Splits
from fnn.data.preparation import StandardScaler as StandardScaler
from fnn.data.preparation import check_finite as check_finite
from fnn.data.preparation import encode_labels as encode_labels
from fnn.data.preparation import one_hot as one_hot
from fnn.data.preparation import prepare as prepare
from fnn.data.preparation import scaler as scaler
from fnn.data.preparation import split_indices as split_indices
from fnn.data.preparation import train_test_split as train_test_split
from fnn.data.preparation import train_val_test_split as train_val_test_split

__all__ = [
    "Imputer",
    "MinMaxScaler",
    "OutlierClipper",
    "SCALERS",
    "Split",
    "Splits",
    "StandardScaler",
    "check_finite",
    "encode_labels",
    "one_hot",
    "prepare",
    "scaler",
    "split_indices",
    "train_test_split",
    "train_val_test_split",
]
