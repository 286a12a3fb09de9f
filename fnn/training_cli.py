"""``fnn train``: train a network on a dataset, write metrics, history, plot and checkpoint.

    fnn train --dataset digits                     # 64,128,128,10 relu/softmax, adam, 50 epochs
    fnn train --csv data.csv --target label --epochs 100 --out runs/mine
    fnn train --dataset sine --optimizer levenberg_marquardt
    fnn train --dataset digits --out runs/digits --resume --epochs 80

Outputs in ``--out DIR`` (default ``runs/<dataset>``): ``metrics.json``,
``history.csv``, ``loss_curve.png`` and ``checkpoint.npz`` (rewritten
atomically after every epoch; ``--resume`` continues from it with the settings
stored in it, ``--epochs`` excepted, and ends with the params an uninterrupted
run would have had). Ctrl-C saves the checkpoint and exits with status 130.
``--diagnostics`` adds ``diagnostics.csv`` and ``gradient_norms.png`` (per-layer
gradient norm, update-to-weight ratio and saturated/dead fraction per epoch,
see ``fnn.diagnostics``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

# Settings for each task, overridden by dataset presets and then by flags.
CLASSIFICATION = dict(hidden=[128, 128], activation="relu", output="softmax", loss="cross_entropy",
                      optimizer="adam", epochs=50, batch_size=64)
REGRESSION = dict(hidden=[64, 64], activation="tanh", output="identity", loss="mse",
                  optimizer="adam", epochs=200, batch_size=32)
PRESETS = {
    "xor": dict(hidden=[2], activation="sigmoid", output="sigmoid", loss="mse", optimizer="momentum",
                lr=0.5, epochs=2000, batch_size=None, test_size=0.0, val_size=0.0, scale="none"),
    "sine": dict(hidden=[10], activation="tanh", output="identity", loss="mse",
                 optimizer="levenberg_marquardt", epochs=100, batch_size=None, scale="none"),
}
GENERAL = dict(lr=None, test_size=0.25, val_size=0.1, scale="standard", patience=None, seed=0,
               impute=None, clip_outliers=None, weight_decay=0.0, clip_norm=None, momentum=0.9,
               nesterov=False, schedule="constant", goal=None, min_grad=None, task=None)
KEYS = ("dataset", "csv", "target", "task", "data_dir", "download", "sizes", "activation", "output", "loss",
        "optimizer", "lr", "epochs", "batch_size", "patience", "seed", "test_size", "val_size", "scale", "impute",
        "clip_outliers", "weight_decay", "clip_norm", "momentum", "nesterov", "schedule", "goal", "min_grad",
        "precision", "preset", "limit")
# Named runs (--preset), applied before the flags. mnist-large is the GPU
# workload: three 4096-wide layers in bf16 (about 37 M params, 0.9 TFLOP per
# step of 4096 examples); without MNIST IDX files in --data-dir it trains on
# synthetic data of MNIST's shape and says so.
RUN_PRESETS = {
    "mnist-large": dict(dataset="mnist", sizes=[784, 4096, 4096, 4096, 10], activation="relu", output="softmax",
                        loss="cross_entropy", optimizer="adam", lr=1e-3, batch_size=4096, epochs=10,
                        precision="bf16", test_size=0.0, val_size=0.0, synthetic_fallback=True),
}


def _one_line_error(parser, message):
    parser.exit(2, f"fnn train: error: {message}\n")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a network on a dataset (progress bar, metrics, plot, resumable checkpoint)",
        description=__doc__.split("\n\n")[0],
    )
    p.error = lambda message: _one_line_error(p, message)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", help="digits (default), iris, wine, breast_cancer, diabetes, xor, sine, spirals, "
                                     "mnist, fashion_mnist")
    d.add_argument("--csv", metavar="PATH", help="a CSV file with a header row (with --target)")
    d.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    d.add_argument("--task", choices=["classification", "regression"], help="CSV task (default: inferred)")
    d.add_argument("--data-dir", metavar="DIR", help="directory of the MNIST IDX files")
    d.add_argument("--download", action="store_true", default=None, help="download MNIST IDX files (SHA-256 checked)")
    d.add_argument("--test-size", type=float, help="test fraction (default 0.25; stratified for classification)")
    d.add_argument("--val-size", type=float, help="validation fraction of what is left (default 0.1)")
    d.add_argument("--scale", help="standard (default), minmax or none; fit on the training split")
    d.add_argument("--impute", help="mean or median: fill NaN/inf (otherwise they are an error)")
    d.add_argument("--clip-outliers", type=float, metavar="K", help="clip features to mean +- K std")
    n = p.add_argument_group("network")
    n.add_argument("--sizes", help="layer widths, e.g. 64,128,128,10 (default: inferred from the data)")
    n.add_argument("--activation", help="hidden activation")
    n.add_argument("--output", help="output activation")
    n.add_argument("--loss", help="mse, mae, huber, bce or cross_entropy")
    t = p.add_argument_group("training")
    t.add_argument("--optimizer", help="gd, sgd, momentum, adaptive_lr, adaptive_momentum, adam (default), "
                                       "rmsprop, rprop, lbfgs, levenberg_marquardt")
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    t.add_argument("--schedule", help="constant (default), cosine or exponential learning-rate schedule")
    t.add_argument("--momentum", type=float, help="momentum (default 0.9)")
    t.add_argument("--nesterov", action="store_true", default=None)
    t.add_argument("--weight-decay", type=float, help="L2 weight decay")
    t.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    t.add_argument("--epochs", type=int, help="maximum epochs (default 50 for classification)")
    t.add_argument("--batch-size", type=int, help="minibatch size (default 64; full batch for full-batch methods)")
    t.add_argument("--patience", type=int, help="early stopping patience on the validation loss (default: none)")
    t.add_argument("--goal", type=float, help="stop when the train loss is <= GOAL")
    t.add_argument("--min-grad", type=float, help="stop when the gradient norm is <= MIN_GRAD")
    t.add_argument("--seed", type=int, help="seed of the split, the init and the shuffling (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output directory (default runs/<dataset>)")
    o.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    o.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="checkpoint every N epochs (default: every 30 s, and always at the end and on Ctrl-C)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--no-compile-cache", action="store_true",
                   help="do not keep compiled programs on disk (default: keep them in $FNN_CACHE_DIR or "
                        "~/.cache/fnn/xla, so that a later run of the same configuration skips compiling)")
    o.add_argument("--diagnostics", action="store_true",
                   help="record per-layer gradient/delta norms, saturation, dead relus and update ratios each epoch; "
                        "write diagnostics.csv and gradient_norms.png")
    h = p.add_argument_group("devices and precision")
    h.add_argument("--preset", choices=sorted(RUN_PRESETS), help="a named run (mnist-large: 784,4096,4096,4096,10 "
                                                                   "bf16 on MNIST, or synthetic data of its shape)")
    h.add_argument("--device", choices=["cpu", "gpu", "auto"], default="auto",
                   help="device kind (default auto: a GPU if JAX sees one, else the CPU)")
    h.add_argument("--devices", type=int, metavar="N", help="data parallelism over N local devices (default: all); "
                                                            "the batch size must divide by N")
    h.add_argument("--precision", choices=["fp32", "tf32", "bf16"],
                   help="fp32 (default), tf32 matmuls, or bf16 compute with float32 params and loss")
    h.add_argument("--limit", type=int, metavar="N", help="train on the first N training examples only (smoke runs)")
    h.add_argument("--coordinator", metavar="HOST:PORT", help="multi-host: address of process 0's coordinator")
    h.add_argument("--num-processes", type=int, metavar="N", help="multi-host: number of processes")
    h.add_argument("--process-id", type=int, metavar="I", help="multi-host: this process's index, 0..N-1")
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------- configuration


def _given(args) -> dict:
    return {k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None}


def resolve(given: dict) -> dict:
    """Full settings from the flags that were given (checks that need no data)."""
    from fnn import datasets, optimizers

    if given.get("csv") is not None:
        if given.get("dataset") is not None:
            raise ValueError("give either --dataset or --csv, not both")
        if given.get("target") is None:
            raise ValueError("--csv needs --target COLUMN")
        name = "csv"
    else:
        if given.get("target") is not None:
            raise ValueError("--target goes with --csv PATH")
        name = given.get("dataset", "digits")
        if name not in datasets.NAMES:
            raise ValueError(f"unknown dataset {name!r}; expected one of {list(datasets.NAMES)}, or --csv PATH --target COLUMN")
    cfg = dict(GENERAL)
    preset = given.get("preset")
    if preset is not None:
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown --preset {preset!r}; expected one of {sorted(RUN_PRESETS)}")
        if given.get("csv") is None and given.get("dataset") is None:
            name = RUN_PRESETS[preset]["dataset"]
        cfg.update(RUN_PRESETS[preset])
    if name in PRESETS:
        cfg.update(CLASSIFICATION if name == "spirals" else REGRESSION)
        cfg.update(PRESETS[name])
    cfg.update({k: v for k, v in given.items()})
    cfg["dataset"] = name
    optimizers.spec(cfg.get("optimizer", "adam"))  # unknown optimizer: ValueError before any work
    lr = cfg.get("lr")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr must be a positive number, got {lr}")
    for k in ("epochs", "batch_size", "patience"):
        if cfg.get(k) is not None and cfg[k] < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be a positive integer, got {cfg[k]}")
    if cfg.get("optimizer") == "levenberg_marquardt" and cfg.get("loss") not in (None, "mse"):
        raise ValueError(f"levenberg_marquardt needs --loss mse, got {cfg['loss']!r}")
    if cfg["schedule"] not in ("constant", "cosine", "exponential"):
        raise ValueError(f"unknown --schedule {cfg['schedule']!r}; expected constant, cosine or exponential")
    if cfg.get("sizes") is not None:
        cfg["sizes"] = _parse_sizes(cfg["sizes"])
    return cfg


def _parse_sizes(text):
    if isinstance(text, list):
        return text
    try:
        sizes = [int(s) for s in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers such as 64,128,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"--sizes needs at least two positive widths, got {text!r}")
    return sizes


def load_data(cfg):
    from fnn import data, datasets

    if cfg["dataset"] == "csv":
        ds = datasets.load_csv(cfg["csv"], cfg["target"], task=cfg.get("task"))
    elif cfg["dataset"] in datasets.IDX:
        try:
            ds = datasets.load(cfg["dataset"], data_dir=cfg.get("data_dir"), download=bool(cfg.get("download")))
        except (OSError, ValueError) as err:
            if not cfg.get("synthetic_fallback"):
                raise
            print(f"fnn train: {err}; training on SYNTHETIC data of {cfg['dataset']}'s shape instead", flush=True)
            limit = cfg.get("limit")  # a smoke run need not generate all 70000 examples
            ds = synthetic_like_mnist(cfg["seed"], n=limit or 60000, n_test=min(limit or 10000, 10000))
    else:
        ds = datasets.load(cfg["dataset"])
    if cfg.get("limit") is not None:
        ds = ds._replace(x=ds.x[:cfg["limit"]], y=ds.y[:cfg["limit"]])
    splits = data.prepare(ds, test_size=cfg["test_size"], val_size=cfg["val_size"], seed=cfg["seed"],
                          scale=cfg["scale"], impute=cfg["impute"], clip_outliers=cfg["clip_outliers"])
    return ds, splits


def synthetic_like_mnist(seed: int, n: int = 60000, n_test: int = 10000):
    """Learnable stand-in for MNIST: 784 features in [0, 255], 10 classes.

    Each class is a random prototype image; an example is its class's
    prototype plus noise, so a network can fit it and the throughput of a
    run is that of real MNIST (same shapes, same dtype).
    """
    import numpy as np

    from fnn import datasets

    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, (10, 784)).astype(np.float32)

    def make(m):
        y = rng.integers(0, 10, m)
        x = np.clip(protos[y] + rng.normal(0, 96, (m, 784)).astype(np.float32), 0, 255)
        return x.astype(np.float32), y.astype(np.int64)

    x, y = make(n)
    xt, yt = make(n_test)
    return datasets.Dataset("mnist (synthetic)", x, y, "classification", 10,
                            test=datasets.Split(xt, yt))


def build_net(cfg, ds):
    import fnn

    task = ds.task
    base = CLASSIFICATION if task == "classification" else REGRESSION
    for k in ("hidden", "activation", "output", "loss", "optimizer", "epochs", "batch_size"):
        cfg.setdefault(k, base[k])
        if cfg[k] is None and k not in ("batch_size",):
            cfg[k] = base[k]
    n_in = ds.n_features
    n_out = ds.n_classes if task == "classification" else ds.y.shape[1]
    if task == "classification" and cfg["loss"] == "bce" and n_out == 2:
        n_out = 1
    sizes = cfg.get("sizes") or [n_in, *cfg["hidden"], n_out]
    what = "classes" if task == "classification" else "target columns"
    if sizes[0] != n_in:
        raise ValueError(f"--sizes starts with {sizes[0]} inputs but the data has {n_in} features")
    if sizes[-1] != n_out:
        raise ValueError(f"--sizes ends with {sizes[-1]} outputs but the data has {n_out} {what}")
    cfg["sizes"] = sizes
    if task == "classification" and cfg["loss"] not in ("cross_entropy", "bce"):
        raise ValueError(f"{ds.name} is a classification dataset: use --loss cross_entropy (with --output softmax)")
    if task == "regression" and cfg["loss"] in ("cross_entropy",):
        raise ValueError(f"{ds.name} is a regression dataset: cross_entropy needs class labels; use --loss mse")
    if cfg["optimizer"] == "levenberg_marquardt" and cfg["loss"] != "mse":
        raise ValueError(f"levenberg_marquardt needs --loss mse, got {cfg['loss']!r}")
    return fnn.MLP(tuple(sizes), activation=cfg["activation"], output=cfg["output"], loss=cfg["loss"])


def _targets(net, split):
    """Integer labels stay labels for cross_entropy; a 0/1 label becomes a column for bce."""
    import numpy as np

    if split is None:
        return None
    y = split.y
    if net.loss == "bce" and y.ndim == 1:
        y = y.astype(np.float32)[:, None]
    return (split.x, y)


def _learning_rate(cfg, steps_per_epoch):
    import optax

    from fnn import optimizers

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


# --------------------------------------------------------------------------- the command


def run(args) -> int:
    import jax

    import fnn
    from fnn import checkpoint as ckpt_io
    from fnn import train

    from fnn import distributed

    if not args.no_compile_cache:
        from fnn.compile_cache import enable_compile_cache

        try:
            enable_compile_cache()
        except OSError as err:  # a read-only home directory: train anyway, compiling as usual
            print(f"fnn train: no compile cache ({err})", file=sys.stderr)
    if args.coordinator is not None or args.num_processes is not None or args.process_id is not None:
        if None in (args.coordinator, args.num_processes, args.process_id):
            raise ValueError("multi-host needs all of --coordinator HOST:PORT --num-processes N --process-id I")
        distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                               None if args.device == "auto" else args.device)
    devices = run_devices(args.device, args.devices)
    writer = distributed.is_writer()
    given = _given(args)
    out_given = args.out
    if args.resume:
        out = out_given or f"runs/{given.get('dataset') or ('csv' if given.get('csv') else 'digits')}"
        path = os.path.join(out, "checkpoint.npz")
        saved = ckpt_io.load(path)
        cfg = dict(saved.meta.get("config", {}))
        if not cfg:
            raise ValueError(f"{path} holds no fnn train settings to resume from")
        if "epochs" in given:
            cfg["epochs"] = given["epochs"]
        cfg = resolve({k: v for k, v in cfg.items() if v is not None})
    else:
        cfg = resolve(given)
        out = out_given or f"runs/{cfg['dataset']}"
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be a positive integer, got {args.checkpoint_every}")

    ds, splits = load_data(cfg)
    net = build_net(cfg, ds)
    from fnn import optimizers

    full = optimizers.spec(cfg["optimizer"]).full_batch
    if "batch_size" not in given and not args.resume and full:
        cfg["batch_size"] = None
    n_train = len(splits.train.x)
    batch = cfg["batch_size"] or n_train
    steps = -(-n_train // min(batch, n_train))
    if writer:  # process 0 writes the run's files; the others create nothing
        os.makedirs(out, exist_ok=True)
    k_init, k_fit = jax.random.split(jax.random.key(cfg["seed"]))
    params = fnn.init(k_init, net)
    val = _targets(net, splits.val)
    patience = cfg["patience"] if val is not None else None
    if cfg["patience"] is not None and val is None:
        raise ValueError("--patience needs a validation split (--val-size > 0)")
    mesh_devices = distributed.global_devices(devices)
    if len(mesh_devices) > 1:
        distributed.check_batch(min(batch, n_train), len(mesh_devices))
    from fnn import throughput

    peak, peak_source = throughput.peak_tflops(devices[0], cfg.get("precision"))
    cfg_speed = {"peak_tflops": peak, "peak_source": peak_source,
                 "flops_per_step": throughput.step_flops(net.sizes, min(batch, n_train)), "steps_per_epoch": steps, "batch": min(batch, n_train),
                 "devices": distributed.describe(mesh_devices), "device_kind": devices[0].device_kind}
    if not writer:
        args.quiet = True
    else:
        print(f"fnn train: {ds.name} ({n_train} train, {len(splits.val.x) if splits.val else 0} validation, "
          f"{len(splits.test.x) if splits.test else 0} test), network {','.join(map(str, net.sizes))} "
          f"{'/'.join(net.layer_activations)} {net.loss}, {cfg['optimizer']}, batch {cfg['batch_size'] or 'full'}, "
          f"up to {cfg['epochs']} epochs, {cfg.get('precision') or 'fp32'} on {cfg_speed['devices']} "
          f"({devices[0].device_kind})", flush=True)
    checkpoint = os.path.join(out, "checkpoint.npz")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # divergence is reported below, once
            warnings.filterwarnings("ignore", message="the training loss became non-finite", category=RuntimeWarning)
            params, history = train.fit(
                net, params, _targets(net, splits.train), optimizer=cfg["optimizer"], epochs=cfg["epochs"],
                batch_size=cfg["batch_size"], key=k_fit, validation=val, learning_rate=_learning_rate(cfg, steps),
                momentum=cfg["momentum"], nesterov=bool(cfg["nesterov"]), weight_decay=cfg["weight_decay"],
                clip_norm=cfg["clip_norm"], goal=cfg["goal"], min_grad=cfg["min_grad"], patience=patience,
                checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
                progress=not args.quiet, config=_jsonable(cfg), precision=cfg.get("precision") or "fp32",
                devices=devices, peak_tflops=peak, diagnostics=bool(getattr(args, "diagnostics", False)),
            )
    except train.Interrupted as stop:
        print(f"fnn train: interrupted after epoch {stop.epoch}; checkpoint saved to {checkpoint} "
              f"(continue with: fnn train --out {out} --resume)", file=sys.stderr)
        return 130
    fit_time = time.perf_counter() - t0
    if not writer:  # process 0 writes the run's files
        return 0
    result = summarize(net, params, history, splits, cfg, fit_time)
    result.update(speed_summary(history, cfg_speed, cfg))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    history.to_csv(os.path.join(out, "history.csv"))
    if history.diagnostics:
        from fnn import diagnostics

        diagnostics.to_csv(history, os.path.join(out, "diagnostics.csv"))
    plot_note = ""
    try:
        from fnn import plots

        plots.loss_curve(history, os.path.join(out, "loss_curve.png"),
                         title=f"{ds.name}: {','.join(map(str, net.sizes))}, {cfg['optimizer']}")
        if history.diagnostics:
            plots.gradient_norms(history, os.path.join(out, "gradient_norms.png"),
                                 title=f"{ds.name}: {','.join(map(str, net.sizes))} {'/'.join(net.layer_activations)}")
    except OSError as err:
        plot_note = f" (no plot: {err})"
    if history.diverged:
        print(f"fnn train: error: {history.stop_reason}; last good checkpoint kept in {checkpoint}", file=sys.stderr)
        return 1
    parts = [f"{result['epochs']} epochs ({history.stop_reason})", f"train loss {result['train_loss']:.4g}"]
    if result.get("test_loss") is not None:
        parts.append(f"test loss {result['test_loss']:.4g}")
    if result.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * result['test_accuracy']:.2f}%")
    parts.append(f"{result['wall_time_s']:.1f} s")
    print("fnn train: " + ", ".join(parts))
    extra = ", diagnostics.csv, gradient_norms.png" if history.diagnostics else ""
    print(f"fnn train: wrote {out}/metrics.json, history.csv, loss_curve.png{extra}, checkpoint.npz{plot_note}")
    return 0


def run_devices(kind: str, count: int | None) -> list:
    """The local devices of ``--device`` (``auto``: GPUs if JAX sees any) and ``--devices``."""
    from fnn import distributed

    if kind == "auto":
        kind = "gpu" if _has("gpu") else "cpu"
    elif kind == "gpu" and not _has("gpu"):
        raise ValueError(f"--device gpu: JAX sees no GPU (backends: {distributed._platforms()}); "
                         f"install JAX's CUDA build with pip install 'fnn[gpu]', or use --device cpu")
    if count is not None and count < 1:
        raise ValueError(f"--devices must be a positive integer, got {count}")
    return distributed.select_devices(kind, count)


def _has(kind: str) -> bool:
    import jax

    try:
        return bool(jax.devices(kind))
    except RuntimeError:
        return False


def speed_summary(history, speed: dict, cfg) -> dict:
    """Throughput for metrics.json: the epochs after the first (which includes compiling), if any."""
    from fnn import throughput

    times = history.epoch_time_s[1:] or history.epoch_time_s
    seconds = sum(times)
    steps = speed["steps_per_epoch"] * len(times)
    rates = throughput.rates(speed["flops_per_step"], steps, speed["batch"], seconds, speed["peak_tflops"])
    return {
        "precision": cfg.get("precision") or "fp32",
        "devices": speed["devices"],
        "device_kind": speed["device_kind"],
        "samples_per_s": rates["samples_per_s"],
        "tflops": rates["tflops"],
        "mfu": rates["mfu"],
        "peak_tflops": speed["peak_tflops"],
        "peak_source": speed["peak_source"],
        "flops_per_step": speed["flops_per_step"],
        "flops_method": "analytic matmul FLOPs 6 B sum n_in n_out - 2 B n_0 n_1 (fnn.throughput)",
        "throughput_epochs": "all but the first (compile)" if len(history) > 1 else "the only epoch (with compile)",
    }


def summarize(net, params, history, splits, cfg, fit_time) -> dict:
    import jax

    from fnn import optimizers, train

    def ev(split):
        if split is None:
            return {}
        return train.evaluate(net, params, *_targets(net, split))

    tr, va, te = ev(splits.train), ev(splits.val), ev(splits.test)
    epochs_run = len(history)
    wall = history.wall_time_s[-1] if history.wall_time_s else fit_time
    n_train = len(splits.train.x)
    return {
        "dataset": cfg["dataset"],
        "sizes": list(net.sizes),
        "activation": list(net.layer_activations),
        "loss": net.loss,
        "optimizer": cfg["optimizer"],
        "learning_rate": cfg["lr"] if cfg.get("lr") is not None else optimizers.spec(cfg["optimizer"]).default_lr,
        "schedule": cfg["schedule"],
        "batch_size": cfg.get("batch_size"),
        "seed": cfg["seed"],
        "test_accuracy": te.get("accuracy"),
        "test_loss": te.get("loss"),
        "train_loss": tr.get("loss"),
        "train_accuracy": tr.get("accuracy"),
        "val_loss": va.get("loss"),
        "val_accuracy": va.get("accuracy"),
        "epochs": epochs_run,
        "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason,
        "wall_time_s": wall,
        "samples_per_s": n_train * epochs_run / wall if wall > 0 else None,
        "n_train": n_train,
        "n_val": len(splits.val.x) if splits.val else 0,
        "n_test": len(splits.test.x) if splits.test else 0,
        "device": jax.devices()[0].platform,
    }


def _jsonable(cfg):
    return {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool, list, type(None)))}
