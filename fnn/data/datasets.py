"""Internal: datasets by name, public as ``fnn.datasets``:
scikit-learn's, synthetic, CSV, MNIST / Fashion-MNIST.

==============  ==================================================  ================  ==========
name            what                                                task              source
==============  ==================================================  ================  ==========
digits          8x8 handwritten digits, 1797 x 64, 10 classes       classification    scikit-learn
iris            150 x 4, 3 classes                                  classification    scikit-learn
wine            178 x 13, 3 classes                                 classification    scikit-learn
breast_cancer   569 x 30, 2 classes                                 classification    scikit-learn
diabetes        442 x 10, disease progression                       regression        scikit-learn
xor             the four points of XOR, target 0/1                  regression (0/1)  synthetic
sine            y = sin(x), x evenly spread over [-pi, pi], 200 x 1  regression        synthetic
spirals         two interleaved spirals, 2 classes                  classification    synthetic (seeded)
mnist           28x28 digits, 60000 + 10000 test, 10 classes        classification    IDX files
fashion_mnist   28x28 clothes, 60000 + 10000 test, 10 classes       classification    IDX files
==============  ==================================================  ================  ==========

scikit-learn ships its sets inside the package (nothing is downloaded); it is
an optional dependency (``pip install fnn[data]``). MNIST and Fashion-MNIST are
read from the four standard IDX files (``.gz`` or not) in a local directory;
``download=True`` fetches them into that directory first and checks each
file's SHA-256. Nothing is ever downloaded unless asked.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import urllib.request
from typing import NamedTuple

import numpy as np

from fnn.data.preparation import Split, encode_labels

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


class Dataset(NamedTuple):
    """Features ``x`` (n, features), targets ``y`` ((n,) int labels, or (n, outputs) floats).

    ``test`` holds a fixed test split when the dataset comes with one (MNIST).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: str  # "classification" or "regression"
    n_classes: int | None = None
    feature_names: tuple | None = None
    test: Split | None = None

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.task == "classification" else self.y.shape[1]


SKLEARN = ("digits", "iris", "wine", "breast_cancer", "diabetes")
SYNTHETIC = ("xor", "sine", "spirals")
IDX = ("mnist", "fashion_mnist")
NAMES = SKLEARN + SYNTHETIC + IDX


def load(name: str, **kwargs) -> Dataset:
    """Load a dataset by name (see the table above); ``kwargs`` go to its loader."""
    if name in SKLEARN:
        return load_sklearn(name)
    if name == "xor":
        return xor()
    if name == "sine":
        return sine(**kwargs)
    if name == "spirals":
        return spirals(**kwargs)
    if name in IDX:
        return load_idx_dataset(name, **kwargs)
    raise ValueError(
        f"unknown dataset {name!r}; expected one of {list(NAMES)}, or a CSV file (--csv PATH --target COLUMN)"
    )


# --------------------------------------------------------------------------- scikit-learn


def load_sklearn(name: str) -> Dataset:
    try:
        from sklearn import datasets as skd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError(f"dataset {name!r} needs scikit-learn: pip install 'fnn[data]'") from None
    bunch = getattr(skd, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float32)
    names = tuple(
        str(n)
        for n in (
            getattr(bunch, "feature_names", None) if getattr(bunch, "feature_names", None) is not None else ()
        )
    )
    if name == "diabetes":
        y = np.asarray(bunch.target, dtype=np.float32)[:, None]
        return Dataset(name, x, y, "regression", None, names)
    y = np.asarray(bunch.target, dtype=np.int32)
    return Dataset(name, x, y, "classification", int(y.max()) + 1, names)


# --------------------------------------------------------------------------- synthetic


def xor() -> Dataset:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    return Dataset("xor", x, y, "regression")


def sine(n: int = 200) -> Dataset:
    """``y = sin(x)`` without noise at ``n`` points evenly spread over ``[-pi, pi]``."""
    x = np.linspace(-math.pi, math.pi, n, dtype=np.float64)
    return Dataset("sine", x[:, None].astype(np.float32), np.sin(x)[:, None].astype(np.float32), "regression")


def spirals(n: int = 400, noise: float = 0.1, turns: float = 1.5, seed: int = 0) -> Dataset:
    """Two interleaved spirals, ``n`` points in all, labels 0 and 1, seeded Gaussian noise."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t = np.sqrt(rng.uniform(0.05, 1, size=(2, half))) * turns * 2 * math.pi
    xs, ys = [], []
    for c in range(2):
        r = t[c]
        angle = r + c * math.pi
        pts = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1) / (turns * 2 * math.pi)
        xs.append(pts + noise * rng.normal(size=pts.shape) / 4)
        ys.append(np.full(half, c, dtype=np.int32))
    return Dataset("spirals", np.concatenate(xs).astype(np.float32), np.concatenate(ys), "classification", 2)


# --------------------------------------------------------------------------- CSV


def load_csv(path, target: str, *, task: str | None = None, max_classes: int = 20) -> Dataset:
    """A CSV file with a header row; ``target`` names the target column.

    Every other column must be numeric; empty cells and ``NA``/``NaN`` read as
    NaN (rejected later unless imputation is asked for). The task, unless given,
    is classification when the target is non-numeric, or integer-valued with at
    most ``max_classes`` distinct values; regression otherwise.
    """
    if task not in (None, "auto", "classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"CSV file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ValueError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ValueError(f"{path} has no column {target!r}; its columns are {header}")
    body = rows[1:]
    if not body:
        raise ValueError(f"{path} has a header but no data rows")
    t = header.index(target)
    feats = [i for i in range(len(header)) if i != t]
    if not feats:
        raise ValueError(f"{path} has no feature column besides the target {target!r}")
    x = np.empty((len(body), len(feats)), dtype=np.float64)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path} line {r + 2} has {len(row)} fields, the header has {len(header)}")
        for j, i in enumerate(feats):
            x[r, j] = _number(row[i], path, r + 2, header[i])
    raw_target = [row[t].strip() for row in body]
    numeric = True
    values = []
    for _r, v in enumerate(raw_target):
        try:
            values.append(float(v))
        except ValueError:
            numeric = False
            break
    if task in (None, "auto"):
        if not numeric:
            task = "classification"
        else:
            arr = np.asarray(values)
            integral = np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
            task = "classification" if integral and len(np.unique(arr)) <= max_classes else "regression"
    if task == "regression":
        if not numeric:
            bad = next(v for v in raw_target if not _is_float(v))
            raise ValueError(
                f"{path}: target column {target!r} has non-numeric value {bad!r} for a regression"
            )
        y = np.asarray(values, dtype=np.float32)[:, None]
        return Dataset(
            os.path.basename(path),
            x.astype(np.float32),
            y,
            "regression",
            None,
            tuple(header[i] for i in feats),
        )
    if any(v == "" for v in raw_target):
        raise ValueError(f"{path}: target column {target!r} has empty cells")
    labels, classes = encode_labels(np.asarray(values) if numeric else np.asarray(raw_target))
    return Dataset(
        os.path.basename(path),
        x.astype(np.float32),
        labels,
        "classification",
        len(classes),
        tuple(header[i] for i in feats),
    )


_MISSING = {"", "na", "nan", "null", "none", "?"}


def _is_float(v) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _number(cell: str, path, line: int, column: str) -> float:
    s = cell.strip()
    if s.lower() in _MISSING:
        return math.nan
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{path} line {line}, column {column!r}: non-numeric value {cell!r}") from None


# --------------------------------------------------------------------------- IDX (MNIST)

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the distributed .gz files.
IDX_SOURCES = {
    "mnist": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic ``00 00 type ndim``, big-endian dims, data."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    n = int(np.prod(dims)) if dims else 1
    if len(raw) != header + n * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX data holds {len(raw) - header} bytes, dims {dims} need {n * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}")
    data = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data += array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def _find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return p
    return None


def download_idx(name: str, data_dir) -> None:
    """Fetch the four IDX ``.gz`` files of ``name`` into ``data_dir``, checking SHA-256."""
    base, files = IDX_SOURCES[name]
    os.makedirs(data_dir, exist_ok=True)
    for fname, sha in files.items():
        dest = os.path.join(data_dir, fname)
        if os.path.isfile(dest) and _sha256(dest) == sha:
            continue
        tmp = dest + ".part"
        with urllib.request.urlopen(base + fname, timeout=60) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = _sha256(tmp)
        if got != sha:
            os.remove(tmp)
            raise OSError(f"{fname} from {base} has SHA-256 {got}, expected {sha}; not kept")
        os.replace(tmp, dest)


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_idx_dataset(name: str, data_dir=None, download: bool = False) -> Dataset:
    """MNIST or Fashion-MNIST from ``data_dir`` (default ``~/.cache/fnn/<name>``); pixels scaled to [0, 1]."""
    if data_dir is None:
        data_dir = os.path.join(os.path.expanduser("~"), ".cache", "fnn", name)
    data_dir = os.fspath(data_dir)
    if download:
        download_idx(name, data_dir)
    paths = {k: _find(data_dir, stem) for k, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise OSError(
            f"{name}: IDX files {missing} not found in {data_dir} (plain or .gz); "
            f"pass --data-dir DIR holding them, or --download to fetch them"
        )
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for part in ("train", "test"):
        xs, ys = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if xs.shape[0] != ys.shape[0] or ys.ndim != 1:
            raise ValueError(f"{name}: {part} images {xs.shape} and labels {ys.shape} do not match")
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float32) / 255.0
    y_train = arrays["train_y"].astype(np.int32)
    y_test = arrays["test_y"].astype(np.int32)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return Dataset(
        name,
        flat(arrays["train_x"]),
        y_train,
        "classification",
        n_classes,
        None,
        Split(flat(arrays["test_x"]), y_test),
    )
