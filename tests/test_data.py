"""fnn.data and fnn.datasets: splits, fit-on-train preprocessing, loaders, IDX files."""

import gzip
import os

import numpy as np
import pytest

import fnn


def test_scalers_fit_on_the_training_split_only():
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, size=(200, 4))
    x[:, 3] = 7.0  # a constant column
    y = rng.integers(0, 2, 200).astype(np.int32)
    s = fnn.data.prepare((x, y), test_size=0.25, val_size=0.2, seed=0, scale="standard")
    np.testing.assert_allclose(s.train.x[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s.train.x[:, :3].std(0), 1, atol=1e-4)
    np.testing.assert_array_equal(s.train.x[:, 3], 0)
    # the test split is transformed with the train statistics, not its own
    assert not np.allclose(s.test.x[:, :3].mean(0), 0, atol=1e-3)
    assert len(s.train.x) + len(s.val.x) + len(s.test.x) == 200
    m = fnn.data.prepare((x, y), seed=0, scale="minmax")
    assert m.train.x.min() == 0 and m.train.x.max() == pytest.approx(1)


def test_nan_rejected_unless_imputed_and_outliers_clipped():
    x = np.arange(40, dtype=float).reshape(20, 2)
    x[3, 0] = np.nan
    x[5, 1] = np.inf
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="2 NaN or inf values.*imputation"):
        fnn.data.prepare((x, y), seed=0)
    for strategy in ("mean", "median"):
        s = fnn.data.prepare((x, y), seed=0, impute=strategy, scale=None, test_size=0.0, val_size=0.0)
        assert np.isfinite(s.train.x).all()
    imp = fnn.data.Imputer("median").fit(np.array([[1.0], [np.nan], [3.0], [10.0]]))
    np.testing.assert_allclose(imp.transform(np.array([[np.nan]])), [[3.0]])
    c = fnn.data.OutlierClipper(1.0).fit(np.array([[0.0], [2.0]]))
    np.testing.assert_allclose(c.transform(np.array([[100.0], [-100.0], [1.0]])), [[2.0], [0.0], [1.0]])
    with pytest.raises(ValueError, match="unknown imputation"):
        fnn.data.Imputer("mode")


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    y = np.repeat(np.arange(3), [60, 30, 10]).astype(np.int32)
    x = np.arange(100, dtype=float)[:, None]
    tr, te = fnn.data.train_test_split(x, y, 0.2, seed=1, stratify=True)
    assert np.bincount(te.y).tolist() == [12, 6, 2]
    tr2, te2 = fnn.data.train_test_split(x, y, 0.2, seed=1, stratify=True)
    np.testing.assert_array_equal(te.x, te2.x)
    _, te3 = fnn.data.train_test_split(x, y, 0.2, seed=2, stratify=True)
    assert not np.array_equal(te.x, te3.x)
    assert len(set(tr.x.ravel()) & set(te.x.ravel())) == 0
    train, val, test = fnn.data.train_val_test_split(x, y, test_size=0.25, val_size=0.1, seed=0)
    assert (len(train.x), len(val.x), len(test.x)) == (67, 8, 25)


def test_one_hot():
    np.testing.assert_array_equal(fnn.data.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="labels must lie"):
        fnn.data.one_hot(np.array([3]), 3)


@pytest.mark.parametrize(
    "name,shape,task,n_out",
    [
        ("digits", (1797, 64), "classification", 10),
        ("iris", (150, 4), "classification", 3),
        ("wine", (178, 13), "classification", 3),
        ("breast_cancer", (569, 30), "classification", 2),
        ("diabetes", (442, 10), "regression", 1),
        ("xor", (4, 2), "regression", 1),
        ("sine", (200, 1), "regression", 1),
        ("spirals", (400, 2), "classification", 2),
    ],
)
def test_datasets(name, shape, task, n_out):
    ds = fnn.datasets.load(name)
    assert ds.x.shape == shape and ds.task == task and ds.n_outputs == n_out
    assert np.isfinite(ds.x).all()


def test_sine_is_noiseless_over_minus_pi_to_pi():
    ds = fnn.datasets.sine()
    assert ds.x.min() == pytest.approx(-np.pi) and ds.x.max() == pytest.approx(np.pi)
    np.testing.assert_allclose(ds.y, np.sin(ds.x), atol=1e-6)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        fnn.datasets.load("cifar")


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,label\n1,2,cat\n3,,dog\n5,6,cat\n")
    ds = fnn.datasets.load_csv(p, "label")
    assert ds.task == "classification" and ds.n_classes == 2
    assert np.isnan(ds.x[1, 1]) and ds.y.tolist() == [0, 1, 0]
    r = tmp_path / "r.csv"
    r.write_text("x,y\n0,0.5\n1,1.5\n2,2.25\n")
    assert fnn.datasets.load_csv(r, "y").task == "regression"
    with pytest.raises(ValueError, match="no column 'z'"):
        fnn.datasets.load_csv(p, "z")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,label\n1,0\nhello,1\n")
    with pytest.raises(ValueError, match="line 3, column 'a': non-numeric value 'hello'"):
        fnn.datasets.load_csv(bad, "label")
    with pytest.raises(OSError, match="not found"):
        fnn.datasets.load_csv(tmp_path / "missing.csv", "label")


def _write_mnist(directory, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        fnn.datasets.write_idx(
            os.path.join(directory, f"{part}-images-idx3-ubyte{ext}"),
            rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8),
        )
        fnn.datasets.write_idx(
            os.path.join(directory, f"{part}-labels-idx1-ubyte{ext}"), (np.arange(n) % 10).astype(np.uint8)
        )


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_local_idx_files(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    ds = fnn.datasets.load("mnist", data_dir=tmp_path)
    assert ds.x.shape == (12, 784) and ds.test.x.shape == (5, 784)
    assert 0 <= ds.x.min() and ds.x.max() <= 1 and ds.n_classes == 10
    s = fnn.data.prepare(ds, val_size=0.25, seed=0, stratify=False)
    assert len(s.test.x) == 5 and len(s.train.x) + len(s.val.x) == 12


def test_idx_reader_checks_the_format(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    fnn.datasets.write_idx(tmp_path / "a.idx", a)
    np.testing.assert_array_equal(fnn.datasets.read_idx(tmp_path / "a.idx"), a)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match="IDX data holds"):
        fnn.datasets.read_idx(tmp_path / "short.idx")
    with gzip.open(tmp_path / "junk.gz", "wb") as f:
        f.write(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an IDX file"):
        fnn.datasets.read_idx(tmp_path / "junk.gz")
    with pytest.raises(OSError, match="not found.*--download"):
        fnn.datasets.load("fashion_mnist", data_dir=tmp_path)


def test_download_checks_sha256(tmp_path, monkeypatch):
    """The download path, with urlopen replaced: a wrong checksum is refused and nothing is kept."""
    import io
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"not mnist"))
    with pytest.raises(OSError, match="SHA-256"):
        fnn.datasets.download_idx("mnist", tmp_path)
    assert os.listdir(tmp_path) == []
