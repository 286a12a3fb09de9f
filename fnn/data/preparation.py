"""Internal: data preparation, public as ``fnn.data``: splits, scaling, imputation, outlier clipping, one-hot.

Everything here is NumPy and deterministic for a given seed. Scalers, imputers
and clippers follow the fit-on-train rule: ``fit`` on the training split only,
then ``transform`` every split with what was learnt there::

    ds = fnn.datasets.load("digits")
    splits = fnn.data.prepare(ds, test_size=0.25, val_size=0.1, seed=0, scale="standard")
    splits.train.x, splits.train.y, splits.val, splits.test

Non-finite values (NaN, inf) in features are rejected with a ``ValueError``
unless imputation is asked for (``impute="mean"`` or ``"median"``), which
replaces them, with the training split's statistic of each column.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from fnn.core import validation

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


class Split(NamedTuple):
    """Features ``x`` (n, features) and targets ``y``: (n,) integer labels or (n, outputs)."""

    x: np.ndarray
    y: np.ndarray


class Splits(NamedTuple):
    train: Split
    val: Split | None
    test: Split | None
    scaler: object | None = None
    imputer: object | None = None
    clipper: object | None = None


# --------------------------------------------------------------------------- checks


def check_finite(x, name: str = "x") -> None:
    """``ValueError`` naming the count and first position of NaN/inf values."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or inf values (first at index {where}); "
            f"ask for imputation (impute='mean' or 'median', --impute) or clean the data"
        )


def _as_2d_float(x, name="x") -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64) if not np.issubdtype(x.dtype, np.floating) else x
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (examples, features), got shape {x.shape}")
    return x


# --------------------------------------------------------------------------- scaling


@dataclasses.dataclass
class StandardScaler:
    """``(x - mean) / std`` per column; constant columns get std 1."""

    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, x):
        x = _as_2d_float(x)
        check_finite(x)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x):
        if self.mean is None:
            raise ValueError("StandardScaler is not fitted; call fit(train_x) first")
        return (_as_2d_float(x) - self.mean) / self.scale

    def fit_transform(self, x):
        return self.fit(x).transform(x)


@dataclasses.dataclass
class MinMaxScaler:
    """Map each column's training range to ``[lo, hi]`` (default [0, 1]); constant columns to ``lo``."""

    lo: float = 0.0
    hi: float = 1.0
    min: np.ndarray | None = None
    range: np.ndarray | None = None

    def fit(self, x):
        x = _as_2d_float(x)
        check_finite(x)
        self.min = x.min(axis=0)
        r = x.max(axis=0) - self.min
        self.range = np.where(r > 0, r, 1.0)
        return self

    def transform(self, x):
        if self.min is None:
            raise ValueError("MinMaxScaler is not fitted; call fit(train_x) first")
        return self.lo + (self.hi - self.lo) * (_as_2d_float(x) - self.min) / self.range

    def fit_transform(self, x):
        return self.fit(x).transform(x)


SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler}


def scaler(name: str | None):
    if name in (None, "none"):
        return None
    try:
        return SCALERS[name]()
    except KeyError:
        raise ValueError(f"unknown scaling {name!r}; expected one of {['none', *SCALERS]}") from None


# --------------------------------------------------------------------------- missing values, outliers


@dataclasses.dataclass
class Imputer:
    """Replace NaN/inf by the column's mean or median over the (finite) training values."""

    strategy: str = "mean"
    fill: np.ndarray | None = None

    def __post_init__(self):
        if self.strategy not in ("mean", "median"):
            raise ValueError(f"unknown imputation {self.strategy!r}; expected 'mean' or 'median'")

    def fit(self, x):
        x = _as_2d_float(x)
        masked = np.where(np.isfinite(x), x, np.nan)
        if np.isnan(masked).all(axis=0).any():
            col = int(np.argmax(np.isnan(masked).all(axis=0)))
            raise ValueError(f"column {col} has no finite training value to impute from")
        self.fill = np.nanmean(masked, axis=0) if self.strategy == "mean" else np.nanmedian(masked, axis=0)
        return self

    def transform(self, x):
        if self.fill is None:
            raise ValueError("Imputer is not fitted; call fit(train_x) first")
        x = _as_2d_float(x).copy()
        bad = ~np.isfinite(x)
        x[bad] = np.broadcast_to(self.fill, x.shape)[bad]
        return x

    def fit_transform(self, x):
        return self.fit(x).transform(x)


@dataclasses.dataclass
class OutlierClipper:
    """Clip each column to ``mean +- n_std * std`` of the training split."""

    n_std: float = 3.0
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    def __post_init__(self):
        validation.check_positive_number("n_std", self.n_std)

    def fit(self, x):
        x = _as_2d_float(x)
        check_finite(x)
        m, s = x.mean(axis=0), x.std(axis=0)
        self.lo, self.hi = m - self.n_std * s, m + self.n_std * s
        return self

    def transform(self, x):
        if self.lo is None:
            raise ValueError("OutlierClipper is not fitted; call fit(train_x) first")
        return np.clip(_as_2d_float(x), self.lo, self.hi)

    def fit_transform(self, x):
        return self.fit(x).transform(x)


# --------------------------------------------------------------------------- encoding


def one_hot(labels, n_classes: int | None = None, dtype=np.float32) -> np.ndarray:
    """(n,) integer labels in ``[0, n_classes)`` -> (n, n_classes) one-hot rows."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    n = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"labels must lie in [0, {n - 1}], got values in [{labels.min()}, {labels.max()}]")
    return np.eye(n, dtype=dtype)[labels]


def encode_labels(values) -> tuple[np.ndarray, list]:
    """Arbitrary class values -> (integer labels 0..K-1, the sorted classes)."""
    classes, labels = np.unique(np.asarray(values), return_inverse=True)
    return labels.astype(np.int32), list(classes)


# --------------------------------------------------------------------------- splitting


def _check_fraction(name, f):
    if not 0 <= f < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {f}")


def split_indices(n: int, test_size: float, *, seed: int = 0, stratify=None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` from scikit-learn's ``train_test_split``.

    The split is exactly scikit-learn's with ``random_state=seed`` (and
    ``stratify`` the labels, when given), so ``fnn train --seed s`` trains and
    tests on the same examples as a scikit-learn run with ``random_state=s``.
    ``test_size=0`` holds nothing out and needs no scikit-learn.
    """
    _check_fraction("test_size", test_size)
    idx = np.arange(n)
    if test_size == 0:
        return idx, idx[:0]
    if stratify is not None and np.shape(stratify) != (n,):
        raise ValueError(f"stratify must hold one label per example ({n}), got shape {np.shape(stratify)}")
    try:
        from sklearn.model_selection import train_test_split as sklearn_split
    except ImportError:
        raise ValueError("splitting data needs scikit-learn: pip install 'fnn[data]'") from None
    keep, held = sklearn_split(idx, test_size=test_size, random_state=seed, stratify=stratify)
    return keep, held


def train_test_split(x, y, test_size: float = 0.25, *, seed: int = 0, stratify: bool = False):
    """``(Split(train), Split(test))``; ``stratify=True`` keeps class proportions of integer ``y``."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and {len(y)}")
    keep, held = split_indices(len(x), test_size, seed=seed, stratify=y if stratify else None)
    return Split(x[keep], y[keep]), Split(x[held], y[held])


def train_val_test_split(x, y, *, test_size=0.25, val_size=0.1, seed=0, stratify=False):
    """Test first (``test_size`` of all), then validation (``val_size`` of what is left)."""
    _check_fraction("val_size", val_size)
    train, test = train_test_split(x, y, test_size, seed=seed, stratify=stratify)
    train, val = train_test_split(train.x, train.y, val_size, seed=seed + 1, stratify=stratify)
    return train, (val if len(val.x) else None), (test if len(test.x) else None)


def prepare(
    dataset,
    *,
    test_size: float = 0.25,
    val_size: float = 0.1,
    seed: int = 0,
    stratify: bool | None = None,
    scale: str | None = "standard",
    impute: str | None = None,
    clip_outliers: float | None = None,
    dtype=np.float32,
) -> Splits:
    """Split a ``Dataset`` (or ``(x, y)``), then impute, clip and scale fit on the train split.

    Order: split (stratified by default for classification); impute (if asked;
    otherwise NaN/inf raise ``ValueError``); clip outliers to ``mean +-
    clip_outliers * std`` (if asked); scale (``standard``, ``minmax`` or ``None``).
    Every statistic comes from the training split alone, without the
    validation split carved from it.
    """
    if hasattr(dataset, "x"):
        x, y, task = dataset.x, dataset.y, getattr(dataset, "task", None)
    else:
        x, y = dataset
        task = None
    x = _as_2d_float(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got {len(x)} and {len(y)}")
    if impute is None:
        check_finite(x, "the features")
    if np.issubdtype(y.dtype, np.floating):
        check_finite(y, "the targets")
    if stratify is None:
        stratify = task == "classification" or (task is None and np.issubdtype(y.dtype, np.integer))
    fixed_test = getattr(dataset, "test", None)
    if fixed_test is not None:  # the dataset's own test split (MNIST): carve validation only
        _check_fraction("val_size", val_size)
        train, val = train_test_split(x, y, val_size, seed=seed + 1, stratify=stratify)
        val = val if len(val.x) else None
        test = Split(_as_2d_float(fixed_test.x), np.asarray(fixed_test.y))
        if impute is None:
            check_finite(test.x, "the test features")
    else:
        train, val, test = train_val_test_split(
            x, y, test_size=test_size, val_size=val_size, seed=seed, stratify=stratify
        )
    steps = []
    imp = Imputer(impute).fit(train.x) if impute else None
    if imp:
        steps.append(imp)
    clip = None
    if clip_outliers is not None:
        clip = OutlierClipper(clip_outliers).fit(imp.transform(train.x) if imp else train.x)
        steps.append(clip)
    sc = scaler(scale)
    if sc is not None:
        t = train.x
        for s in steps:
            t = s.transform(t)
        sc.fit(t)
        steps.append(sc)

    def apply(split):
        if split is None:
            return None
        t = split.x
        for s in steps:
            t = s.transform(t)
        yy = split.y.astype(dtype) if np.issubdtype(split.y.dtype, np.floating) else split.y.astype(np.int32)
        return Split(t.astype(dtype), yy)

    return Splits(apply(train), apply(val), apply(test), sc, imp, clip)
