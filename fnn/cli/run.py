"""The run of ``fnn train``: from its ``Settings`` (``fnn.cli.train``) to the call of ``fnn.fit``.

``keep_compiled_programs`` and ``prepare_devices`` set up the process
(compile cache, multi-host, devices); ``build`` loads and splits the data,
builds the network and its params and checks them against the devices into a
``Plan``; ``fit`` trains it, with the stops, the progress bar, the diagnostics
and the checkpoint given to ``fnn.fit`` as ``fnn.callbacks`` objects.
``fnn.cli.outputs`` writes what came of it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np
import optax

import fnn
from fnn import optimizers
from fnn.core import losses, validation
from fnn.data import datasets
from fnn.scale import compile_cache, distributed, throughput
from fnn.training import loop


@dataclasses.dataclass
class Plan:
    """A built run: what ``fit`` is called with, and what the outputs describe."""

    settings: Any  # fnn.cli.train.Settings
    cfg: dict  # settings.cfg completed for the data: network defaults, sizes, batch size (None: full batch)
    ds: datasets.Dataset
    splits: Any  # the train, validation and test splits (fnn.data.prepare)
    net: fnn.MLP | fnn.Graph  # the chain, or the graph of --connect cascade/residual or --arch
    params: Any  # the initial params
    key: jax.Array  # fit's key
    devices: list  # the local devices
    speed: dict  # throughput constants: peak, FLOPs per step, steps per epoch, batch, devices
    writer: bool  # this process writes the run's files and messages (process 0 of a multi-host run)

    @property
    def out(self) -> str:
        """The output directory."""
        return self.settings.out

    @property
    def checkpoint(self) -> str:
        """The checkpoint's path."""
        return self.settings.checkpoint


# --------------------------------------------------------------------------- the host


def keep_compiled_programs() -> None:
    """Keep compiled programs on disk (``fnn.scale.compile_cache``); a note on stderr if that is not possible
    (a read-only home directory: train anyway, compiling as usual)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_cache.use_default_cache()
    for warning in caught:
        print(f"fnn train: {str(warning.message).removeprefix('fnn: ')}", file=sys.stderr)


def prepare_devices(hosts: tuple | None, kind: str, count: int | None) -> list:
    """Join the multi-host run ``hosts`` (``(coordinator, processes, id)``), if any;
    the local devices to use."""
    if hosts is not None:
        distributed.initialize(*hosts, None if kind == "auto" else kind)
    return run_devices(kind, count)


def run_devices(kind: str, count: int | None) -> list:
    """The local devices of ``--device`` (``auto``: GPUs if JAX sees any) and ``--devices``."""
    if kind == "auto":
        kind = "gpu" if _has("gpu") else "cpu"
    elif kind == "gpu" and not _has("gpu"):
        raise ValueError(
            f"--device gpu: JAX sees no GPU (backends: {distributed._platforms()}); "
            f"install JAX's CUDA build with pip install 'fnn[gpu]', or use --device cpu"
        )
    validation.check_positive_int("--devices", count, allow_none=True)
    return distributed.select_devices(kind, count)


def _has(kind: str) -> bool:
    """Whether JAX sees devices of ``kind``."""
    try:
        return bool(jax.devices(kind))
    except RuntimeError:
        return False


# --------------------------------------------------------------------------- building the run


def build(settings, devices: list) -> Plan:
    """Load the data, build the network and its params, and check them against the settings and the devices.

    Creates the output directory (in the writing process only).
    """
    cfg = dict(settings.cfg)
    ds, splits = load_data(cfg)
    net = build_net(cfg, ds, settings.task_defaults(ds.task))
    if not (settings.batch_given or settings.resume):
        cfg["batch_size"] = optimizers.default_batch(cfg["optimizer"], cfg["batch_size"])
    writer = distributed.is_writer()
    if writer:  # process 0 writes the run's files; the others create nothing
        os.makedirs(settings.out, exist_ok=True)
    k_init, k_fit = jax.random.split(jax.random.key(cfg["seed"]))
    params = fnn.init(k_init, net)
    if cfg["patience"] is not None and splits.val is None:
        raise ValueError("--patience needs a validation split (--val-size > 0)")
    speed = _speed(cfg, net, len(splits.train.x), devices)
    return Plan(settings, cfg, ds, splits, net, params, k_fit, devices, speed, writer)


def load_data(cfg):
    """The dataset of ``cfg`` (``--limit``: its first examples) and its splits;
    MNIST may fall back to synthetic."""
    if cfg["dataset"] == "csv":
        ds = datasets.load_csv(cfg["csv"], cfg["target"], task=cfg.get("task"))
    elif cfg["dataset"] in datasets.IDX:
        try:
            ds = datasets.load(
                cfg["dataset"], data_dir=cfg.get("data_dir"), download=bool(cfg.get("download"))
            )
        except (OSError, ValueError) as err:
            if not cfg.get("synthetic_fallback"):
                raise
            print(
                f"fnn train: {err}; training on SYNTHETIC data of {cfg['dataset']}'s shape instead",
                flush=True,
            )
            limit = cfg.get("limit")  # a smoke run need not generate all 70000 examples
            ds = synthetic_like_mnist(cfg["seed"], n=limit or 60000, n_test=min(limit or 10000, 10000))
    else:
        ds = datasets.load(cfg["dataset"])
    if cfg.get("limit") is not None:
        ds = ds._replace(x=ds.x[: cfg["limit"]], y=ds.y[: cfg["limit"]])
    splits = fnn.data.prepare(
        ds,
        test_size=cfg["test_size"],
        val_size=cfg["val_size"],
        seed=cfg["seed"],
        scale=cfg["scale"],
        impute=cfg["impute"],
        clip_outliers=cfg["clip_outliers"],
    )
    return ds, splits


def synthetic_like_mnist(seed: int, n: int = 60000, n_test: int = 10000):
    """Learnable stand-in for MNIST: 784 features in [0, 255], 10 classes.

    Each class is a random prototype image; an example is its class's
    prototype plus noise, so a network can fit it and the throughput of a
    run is that of real MNIST (same shapes, same dtype).
    """
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, (10, 784)).astype(np.float32)

    def make(m):
        y = rng.integers(0, 10, m)
        x = np.clip(protos[y] + rng.normal(0, 96, (m, 784)).astype(np.float32), 0, 255)
        return x.astype(np.float32), y.astype(np.int64)

    x, y = make(n)
    xt, yt = make(n_test)
    return datasets.Dataset("mnist (synthetic)", x, y, "classification", 10, test=datasets.Split(xt, yt))


def build_net(cfg, ds, base: dict):
    """The network for ``ds``; fills in ``cfg``'s missing settings from ``base``, and ``sizes``,
    checked on the data.

    ``--arch``'s graph takes the data's feature count as ``n_in`` (``sizes`` is then ``None``).
    """
    task = ds.task
    for k in ("hidden", "activation", "output", "loss", "optimizer", "epochs", "batch_size"):
        cfg.setdefault(k, base[k])
        if cfg[k] is None and k not in ("batch_size",):
            cfg[k] = base[k]
    n_in = ds.n_features
    n_out = ds.n_classes if task == "classification" else ds.y.shape[1]
    if task == "classification" and losses.kind(cfg["loss"]) is losses.Kind.BINARY and n_out == 2:
        n_out = 1
    what = "classes" if task == "classification" else "target columns"
    if cfg.get("arch") is not None:
        arch = cfg["arch"]
        _check_widths("--arch", arch.get("n_in", n_in), arch["nodes"][-1]["width"], n_in, n_out, what)
        cfg["sizes"] = None
    else:
        cfg["sizes"] = cfg.get("sizes") or [n_in, *cfg["hidden"], n_out]
        _check_widths("--sizes", cfg["sizes"][0], cfg["sizes"][-1], n_in, n_out, what)
    _check_loss(cfg, ds)
    return make_net(cfg, n_in)


def _check_loss(cfg, ds) -> None:
    """``ValueError`` for a loss that does not fit the data's task, or the optimizer."""
    kind = losses.kind(cfg["loss"])
    if ds.task == "classification" and not losses.classifies(cfg["loss"]):
        raise ValueError(
            f"{ds.name} is a classification dataset: use --loss cross_entropy (with --output softmax)"
        )
    if ds.task == "regression" and kind is losses.Kind.LABELS:
        raise ValueError(
            f"{ds.name} is a regression dataset: {cfg['loss']} needs class labels; use --loss mse"
        )
    if optimizers.spec(cfg["optimizer"]).least_squares and not losses.least_squares(cfg["loss"]):
        raise ValueError(
            f"{cfg['optimizer']} needs --loss mse (it minimises a sum of squares), got {cfg['loss']!r}"
        )


def _check_widths(flag: str, first, last, n_in: int, n_out: int, what: str) -> None:
    """``ValueError`` unless the network's ``first`` and ``last`` widths are
    the data's ``n_in`` and ``n_out``."""
    if first != n_in:
        raise ValueError(f"{flag} starts with {first} inputs but the data has {n_in} features")
    if last != n_out:
        raise ValueError(f"{flag} ends with {last} outputs but the data has {n_out} {what}")


def make_net(cfg, n_in: int):
    """``cfg``'s network: the ``--arch`` graph, a ``--connect`` cascade or residual graph,
    or the chain (an MLP)."""
    if cfg.get("arch") is not None:
        try:
            return fnn.Graph.from_description({**cfg["arch"], "n_in": n_in, "loss": cfg["loss"]})
        except (ValueError, TypeError) as err:
            raise ValueError(f"--arch: {err}") from None
    sizes, act, out, loss = cfg["sizes"], cfg["activation"], cfg["output"], cfg["loss"]
    p = cfg.get("dropout") or 0.0
    if cfg.get("connect") in (None, "chain"):
        return fnn.MLP(tuple(sizes), activation=act, output=out, loss=loss, dropout=p)
    if cfg["connect"] == "cascade":
        net = fnn.Graph.cascade(sizes, act, out, loss)
    else:
        net = fnn.Graph.residual(sizes[0], _residual_width(sizes), len(sizes) - 2, sizes[-1], act, out, loss)
    hidden = [dataclasses.replace(node, dropout=p) for node in net.nodes[:-1]]
    return fnn.Graph(net.n_in, (*hidden, net.nodes[-1]), net.loss)


def _residual_width(sizes) -> int:
    """The hidden width of ``--connect residual``:
    ``ValueError`` unless there are hidden layers, all that wide."""
    hidden = set(sizes[1:-1])
    if len(hidden) != 1:
        raise ValueError(
            f"--connect residual needs hidden layers of one width, got sizes {','.join(map(str, sizes))}"
        )
    return hidden.pop()


def _speed(cfg, net, n_train: int, devices: list) -> dict:
    """The run's throughput constants (for the messages and metrics.json);
    checks the batch splits over the devices."""
    batch = min(cfg["batch_size"] or n_train, n_train)  # examples per step
    mesh_devices = distributed.global_devices(devices)
    if len(mesh_devices) > 1:
        distributed.check_batch(batch, len(mesh_devices))
    peak = throughput.peak_info(devices[0], cfg.get("precision"))  # the table's, or measured once and cached
    return {
        "peak_tflops": peak["peak_tflops"],
        "peak_source": peak["peak_source"],
        "peak_measurement": peak["peak_measurement"],
        "flops_per_step": net.step_flops(batch),
        "steps_per_epoch": -(-n_train // batch),
        "batch": batch,
        "devices": distributed.describe(mesh_devices),
        "device_kind": devices[0].device_kind,
    }


# --------------------------------------------------------------------------- fitting


def fit(plan: Plan) -> tuple:
    """Train: ``(params, history, seconds)``;
    ``fnn.Interrupted`` on Ctrl-C, after saving the checkpoint."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # divergence is reported by fnn.cli.outputs, once
        warnings.simplefilter("ignore", fnn.callbacks.DivergenceWarning)
        params, history = loop.fit(
            plan.net, plan.params, targets(plan.net, plan.splits.train), **fit_arguments(plan)
        )
    return params, history, time.perf_counter() - t0


def fit_arguments(plan: Plan) -> dict:
    """The keywords of ``fnn.fit`` for ``plan``, all but the network, the params and the training data."""
    cfg = plan.cfg
    return dict(
        optimizer=cfg["optimizer"],
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        key=plan.key,
        validation=targets(plan.net, plan.splits.val),
        learning_rate=_learning_rate(cfg, plan.speed["steps_per_epoch"]),
        momentum=cfg["momentum"],
        nesterov=bool(cfg["nesterov"]),
        weight_decay=cfg["weight_decay"],
        clip_norm=cfg["clip_norm"],
        resume=plan.settings.resume,
        config=_jsonable(cfg),
        precision=cfg.get("precision") or "fp32",
        devices=plan.devices,
        peak_tflops=plan.speed["peak_tflops"],
        callbacks=make_callbacks(plan),
    )


def make_callbacks(plan: Plan) -> list:
    """``fit``'s callbacks, in the order of their stop reasons' precedence
    (the first reason given is the run's).

    ``fit`` adds ``TerminateOnNaN`` before them and the method's ``MethodStop``
    (if it has a stopping rule) after them, and, with validation data but no ``--patience``, an
    ``EarlyStopping`` that records the best epoch without stopping.
    """
    cfg, settings = plan.cfg, plan.settings
    out = []
    if cfg["goal"] is not None or cfg["min_grad"] is not None:
        out.append(fnn.callbacks.StopAt(cfg["goal"], cfg["min_grad"]))
    if cfg["patience"] is not None and plan.splits.val is not None:
        out.append(fnn.callbacks.EarlyStopping(cfg["patience"]))
    if settings.diagnostics:
        out.append(fnn.callbacks.Diagnostics())
    if settings.progress and plan.writer:
        out.append(fnn.callbacks.ProgressBar())
    out.append(
        fnn.callbacks.Checkpoint(
            plan.checkpoint, every=settings.checkpoint_every, every_s=loop.CHECKPOINT_SECONDS
        )
    )
    return out


def targets(net, split):
    """``(x, y)`` of ``split`` (or ``None``) for ``net``.

    Integer labels stay labels for cross_entropy; a 0/1 label becomes a column for bce.
    """
    if split is None:
        return None
    y = split.y
    if losses.kind(net.loss) is losses.Kind.BINARY and y.ndim == 1:
        y = y.astype(np.float32)[:, None]
    return (split.x, y)


def _learning_rate(cfg, steps_per_epoch):
    """``--lr`` (``None``: the optimizer's default), or an optax schedule of it over the run's steps."""
    lr = cfg.get("lr")
    if cfg["schedule"] == "constant":
        return lr
    base = lr if lr is not None else optimizers.spec(cfg["optimizer"]).default_lr
    if base is None:
        raise ValueError(f"{cfg['optimizer']} takes no learning-rate schedule")
    total = steps_per_epoch * cfg["epochs"]
    if cfg["schedule"] == "cosine":
        return optax.cosine_decay_schedule(base, total)
    return optax.exponential_decay(base, transition_steps=max(total // 10, 1), decay_rate=0.7)


def _jsonable(cfg):
    """The entries of ``cfg`` that JSON can hold (the checkpoint's copy of the settings)."""
    return {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
