"""``fnn train``: train a network on a dataset, write metrics, history, plot and checkpoint.

    fnn train --dataset digits                     # 64,128,128,10 relu/softmax, adam, 50 epochs
    fnn train --csv data.csv --target label --epochs 100 --out runs/mine
    fnn train --dataset sine --optimizer levenberg_marquardt
    fnn train --dataset digits --out runs/digits --resume --epochs 80
    fnn train --dataset iris --connect residual --sizes 4,64,64,64,3 --dropout 0.1
    fnn train --dataset iris --arch net.json       # nodes as in fnn.Graph.describe()

Outputs in ``--out DIR`` (default ``runs/<dataset>``): ``metrics.json``,
``history.csv``, ``loss_curve.png`` and ``checkpoint.npz`` (rewritten
atomically every 30 s or every ``--checkpoint-every`` epochs, and at the end;
``--resume`` continues from it with the settings stored in it, ``--epochs``
excepted, and ends with the params an uninterrupted run would have had).
Ctrl-C saves the checkpoint and exits with status 130.
``--diagnostics`` adds ``diagnostics.csv`` and ``gradient_norms.png`` (per-layer
gradient norm, update-to-weight ratio and saturated/dead fraction per epoch,
see ``fnn.diagnostics``).

This module parses the arguments into ``Settings`` (the presets, the flags and
their checks that need no data); ``fnn.cli.run`` builds the run from them
(data, network, devices, ``fnn.callbacks``) and calls ``fnn.fit``;
``fnn.cli.outputs`` writes the files and the messages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from importlib import resources

from fnn import optimizers
from fnn.cli import outputs as training_outputs
from fnn.cli import run as training_run
from fnn.core import graph, losses, validation
from fnn.data import datasets
from fnn.scale import compile_cache
from fnn.training import loop

CHECKPOINT = "checkpoint.npz"  # in --out

# The presets are data (presets.json beside this file): the settings of each task, overridden by a dataset's
# preset and then by the flags, and the named runs of --preset (mnist-large, the GPU workload), applied before
# the flags.
_PRESETS = json.loads(resources.files("fnn.cli").joinpath("presets.json").read_text())
CLASSIFICATION, REGRESSION = _PRESETS["tasks"]["classification"], _PRESETS["tasks"]["regression"]
PRESETS = _PRESETS["datasets"]  # regression datasets
GENERAL = dict(
    lr=None,
    test_size=0.25,
    val_size=0.1,
    scale="standard",
    patience=None,
    seed=0,
    impute=None,
    clip_outliers=None,
    weight_decay=0.0,
    clip_norm=None,
    momentum=0.9,
    nesterov=False,
    schedule="constant",
    goal=None,
    min_grad=None,
    task=None,
)
KEYS = (
    "dataset",
    "csv",
    "target",
    "task",
    "data_dir",
    "download",
    "sizes",
    "arch",
    "connect",
    "dropout",
    "activation",
    "output",
    "loss",
    "optimizer",
    "lr",
    "epochs",
    "batch_size",
    "patience",
    "seed",
    "test_size",
    "val_size",
    "scale",
    "impute",
    "clip_outliers",
    "weight_decay",
    "clip_norm",
    "momentum",
    "nesterov",
    "schedule",
    "goal",
    "min_grad",
    "precision",
    "preset",
    "limit",
)
RUN_PRESETS = _PRESETS["runs"]


# --------------------------------------------------------------------------- the command


def run(args) -> int:
    """``fnn train``: the settings, the run built from them, ``fit``, the outputs.

    Returns the exit status: 0, 1 if the loss diverged, 130 on Ctrl-C; ``fnn.cli``
    turns the errors raised (``ValueError``, ``OSError``, ...) into status 2.
    """
    if args.no_compile_cache:
        compile_cache.disable_compile_cache()
    else:
        training_run.keep_compiled_programs()
    devices = training_run.prepare_devices(_hosts(args), args.device, args.devices)
    plan = training_run.build(settings(args), devices)
    training_outputs.announce(plan)
    try:
        params, history, fit_time = training_run.fit(plan)
    except loop.Interrupted as stop:
        return training_outputs.interrupted(plan, stop)
    return training_outputs.write(plan, params, history, fit_time)


# --------------------------------------------------------------------------- the arguments


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``sub`` (``argparse`` subparsers); errors are one line and exit 2."""
    p = sub.add_parser(
        "train",
        help="train a network on a dataset (progress bar, metrics, plot, resumable checkpoint)",
        description=__doc__.split("\n\n")[0],
    )
    p.error = lambda message: _one_line_error(p, message)
    for group in (
        _data_arguments,
        _network_arguments,
        _training_arguments,
        _output_arguments,
        _device_arguments,
    ):
        group(p)
    p.set_defaults(func=run)
    return p


def _one_line_error(parser, message):
    """argparse's errors as one line, ``fnn train: error: ...``, and status 2."""
    parser.exit(2, f"fnn train: error: {message}\n")


def _data_arguments(p) -> None:
    """The flags of the dataset, its split and its preprocessing."""
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset",
        help="digits (default), iris, wine, breast_cancer, diabetes, xor, sine, spirals, "
        "mnist, fashion_mnist",
    )
    d.add_argument("--csv", metavar="PATH", help="a CSV file with a header row (with --target)")
    d.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    d.add_argument("--task", choices=["classification", "regression"], help="CSV task (default: inferred)")
    d.add_argument("--data-dir", metavar="DIR", help="directory of the MNIST IDX files")
    d.add_argument(
        "--download", action="store_true", default=None, help="download MNIST IDX files (SHA-256 checked)"
    )
    d.add_argument(
        "--test-size", type=float, help="test fraction (default 0.25; stratified for classification)"
    )
    d.add_argument("--val-size", type=float, help="validation fraction of what is left (default 0.1)")
    d.add_argument("--scale", help="standard (default), minmax or none; fit on the training split")
    d.add_argument("--impute", help="mean or median: fill NaN/inf (otherwise they are an error)")
    d.add_argument("--clip-outliers", type=float, metavar="K", help="clip features to mean +- K std")


def _network_arguments(p) -> None:
    """The flags of the network: its layers, how they connect, dropout, activations and loss."""
    n = p.add_argument_group("network")
    n.add_argument("--sizes", help="layer widths, e.g. 64,128,128,10 (default: inferred from the data)")
    n.add_argument(
        "--connect",
        choices=["chain", "cascade", "residual"],
        help="chain (default): each layer takes the one before; cascade: each layer takes x and every "
        "earlier layer; residual: each hidden layer after the first adds its input (equal widths)",
    )
    n.add_argument(
        "--arch",
        metavar="FILE.json",
        help='the network as a JSON graph description (fnn.Graph.describe(): "nodes", each with name, '
        'width, activation, inputs, residual, dropout; "n_in" and "loss" optional)',
    )
    n.add_argument(
        "--dropout", type=float, metavar="P", help="dropout of the hidden layers, in [0, 1) (default 0)"
    )
    n.add_argument("--activation", help="hidden activation")
    n.add_argument("--output", help="output activation")
    n.add_argument("--loss", help="mse, mae, huber, bce or cross_entropy")


def _training_arguments(p) -> None:
    """The flags of the optimizer, the epochs, the batches and the stops."""
    t = p.add_argument_group("training")
    t.add_argument(
        "--optimizer",
        help=f"one of {', '.join(optimizers.OPTIMIZERS)} (default {optimizers.DEFAULT}; see fnn.optimizers)",
    )
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    t.add_argument("--schedule", help="constant (default), cosine or exponential learning-rate schedule")
    t.add_argument("--momentum", type=float, help="momentum (default 0.9)")
    t.add_argument("--nesterov", action="store_true", default=None)
    t.add_argument("--weight-decay", type=float, help="L2 weight decay")
    t.add_argument("--clip-norm", type=float, help="clip gradients to this global norm")
    t.add_argument("--epochs", type=int, help="maximum epochs (default 50 for classification)")
    t.add_argument(
        "--batch-size",
        type=int,
        help="minibatch size (default 64, or the optimizer's own when "
        "larger: kfac 256; full batch for full-batch methods)",
    )
    t.add_argument(
        "--patience", type=int, help="early stopping patience on the validation loss (default: none)"
    )
    t.add_argument("--goal", type=float, help="stop when the train loss is <= GOAL")
    t.add_argument("--min-grad", type=float, help="stop when the gradient norm is <= MIN_GRAD")
    t.add_argument("--seed", type=int, help="seed of the split, the init and the shuffling (default 0)")


def _output_arguments(p) -> None:
    """The flags of the output directory, the checkpoint, the progress bar,
    the compile cache and the diagnostics."""
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output directory (default runs/<dataset>)")
    o.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    o.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="checkpoint every N epochs (default: every 30 s, and always at the end and on Ctrl-C)",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs on disk (default: keep them in $FNN_CACHE_DIR or "
        "~/.cache/fnn/xla, so that a later run of the same configuration skips compiling)",
    )
    o.add_argument(
        "--diagnostics",
        action="store_true",
        help="record per-layer gradient/delta norms, saturation, dead relus and update ratios each epoch; "
        "write diagnostics.csv and gradient_norms.png",
    )


def _device_arguments(p) -> None:
    """The flags of the named runs, the devices, the precision and multi-host runs."""
    h = p.add_argument_group("devices and precision")
    h.add_argument(
        "--preset",
        choices=sorted(RUN_PRESETS),
        help="a named run (mnist-large: 784,4096,4096,4096,10 bf16 on MNIST, or synthetic data of its shape)",
    )
    h.add_argument(
        "--device",
        choices=["cpu", "gpu", "auto"],
        default="auto",
        help="device kind (default auto: a GPU if JAX sees one, else the CPU)",
    )
    h.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="data parallelism over N local devices (default: all); the batch size must divide by N",
    )
    h.add_argument(
        "--precision",
        choices=["fp32", "tf32", "bf16"],
        help="fp32 (default), tf32 matmuls, or bf16 compute with float32 params and loss",
    )
    h.add_argument(
        "--limit", type=int, metavar="N", help="train on the first N training examples only (smoke runs)"
    )
    h.add_argument(
        "--coordinator", metavar="HOST:PORT", help="multi-host: address of process 0's coordinator"
    )
    h.add_argument("--num-processes", type=int, metavar="N", help="multi-host: number of processes")
    h.add_argument("--process-id", type=int, metavar="I", help="multi-host: this process's index, 0..N-1")


# --------------------------------------------------------------------------- the settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``fnn train`` was asked to do:
    the resolved settings and the flags that are not stored with them."""

    cfg: dict  # resolve(): data, network, optimizer and stopping settings (stored in the checkpoint)
    out: str  # the output directory
    resume: bool  # continue from the checkpoint in out
    batch_given: (
        bool  # --batch-size was given (otherwise a full-batch optimizer takes the whole training set)
    )
    checkpoint_every: int | None  # a checkpoint every N epochs (None: every CHECKPOINT_SECONDS)
    progress: bool  # a progress bar (no --quiet)
    diagnostics: bool  # per-layer diagnostics, diagnostics.csv and gradient_norms.png

    @property
    def checkpoint(self) -> str:
        """The checkpoint's path."""
        return os.path.join(self.out, CHECKPOINT)

    @staticmethod
    def task_defaults(task: str) -> dict:
        """The network and training settings of a task (the data's) that neither a preset nor a flag gave."""
        return CLASSIFICATION if task == "classification" else REGRESSION


def settings(args) -> Settings:
    """The run's settings: from the flags or, with ``--resume``, from the checkpoint in ``--out``
    (but ``--epochs``)."""
    given = _given(args)
    if args.resume:
        out = args.out or f"runs/{given.get('dataset') or ('csv' if given.get('csv') else 'digits')}"
        cfg = _resumed(os.path.join(out, CHECKPOINT), given.get("epochs"))
    else:
        _check_arch_flags(given)
        cfg = resolve(given)
        out = args.out or f"runs/{cfg['dataset']}"
    validation.check_positive_int("--checkpoint-every", args.checkpoint_every, allow_none=True)
    return Settings(
        cfg,
        out,
        args.resume,
        args.batch_size is not None,
        args.checkpoint_every,
        not args.quiet,
        args.diagnostics,
    )


def _given(args) -> dict:
    """The settings among the flags (``KEYS``) that were given."""
    return {k: getattr(args, k) for k in KEYS if getattr(args, k, None) is not None}


def _resumed(path: str, epochs: int | None) -> dict:
    """The settings stored in the checkpoint at ``path``, with ``epochs`` instead of its own if given."""
    from fnn.training import checkpoint

    cfg = dict(checkpoint.load(path).meta.get("config", {}))
    if not cfg:
        raise ValueError(f"{path} holds no fnn train settings to resume from")
    if epochs is not None:
        cfg["epochs"] = epochs
    return resolve({k: v for k, v in cfg.items() if v is not None})


def _hosts(args) -> tuple | None:
    """``(coordinator, number of processes, process id)`` of a multi-host run, or ``None``;
    all three or none."""
    hosts = (args.coordinator, args.num_processes, args.process_id)
    if hosts == (None, None, None):
        return None
    if None in hosts:
        raise ValueError("multi-host needs all of --coordinator HOST:PORT --num-processes N --process-id I")
    return hosts


def resolve(given: dict) -> dict:
    """Full settings from the flags that were given (checks that need no data), ``--arch``'s file read."""
    name = _dataset_name(given)
    cfg = dict(GENERAL)
    preset = given.get("preset")
    if preset is not None:
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown --preset {preset!r}; expected one of {sorted(RUN_PRESETS)}")
        if given.get("csv") is None and given.get("dataset") is None:
            name = RUN_PRESETS[preset]["dataset"]
        cfg.update(RUN_PRESETS[preset])
    if name in PRESETS:
        cfg.update(REGRESSION)
        cfg.update(PRESETS[name])
    cfg.update(given)
    cfg["dataset"] = name
    if cfg.get("arch") is not None:
        cfg["arch"] = _read_arch(cfg["arch"])
        if "loss" not in given and "loss" in cfg["arch"]:  # --loss, then the file's, then the default
            cfg["loss"] = cfg["arch"]["loss"]
    _check(cfg)
    if cfg.get("sizes") is not None:
        cfg["sizes"] = _parse_sizes(cfg["sizes"])
    return cfg


def _dataset_name(given: dict) -> str:
    """``"csv"`` for ``--csv PATH --target COLUMN``, else the ``--dataset`` (default digits), checked."""
    if given.get("csv") is not None:
        if given.get("dataset") is not None:
            raise ValueError("give either --dataset or --csv, not both")
        if given.get("target") is None:
            raise ValueError("--csv needs --target COLUMN")
        return "csv"
    if given.get("target") is not None:
        raise ValueError("--target goes with --csv PATH")
    name = given.get("dataset", "digits")
    if name not in datasets.NAMES:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {list(datasets.NAMES)}, or --csv PATH --target COLUMN"
        )
    return name


def _check(cfg: dict) -> None:
    """``ValueError`` for settings that are wrong whatever the data:
    optimizer, lr, counts, loss, schedule, dropout."""
    # unknown: ValueError before any work
    method = optimizers.spec(cfg.get("optimizer") or optimizers.DEFAULT)
    if cfg.get("lr") is not None:
        validation.check_positive_number("--lr", cfg["lr"])
    for k in ("epochs", "batch_size", "patience"):
        validation.check_positive_int(f"--{k.replace('_', '-')}", cfg.get(k), allow_none=True)
    if method.least_squares and cfg.get("loss") is not None and not losses.least_squares(cfg["loss"]):
        raise ValueError(
            f"{method.name} needs --loss mse (it minimises a sum of squares), got {cfg['loss']!r}"
        )
    if cfg["schedule"] not in ("constant", "cosine", "exponential"):
        raise ValueError(f"unknown --schedule {cfg['schedule']!r}; expected constant, cosine or exponential")
    p = cfg.get("dropout")
    if p is not None and not 0 <= p < 1:
        raise ValueError(f"--dropout must lie in [0, 1), got {p}")


def _check_arch_flags(given: dict) -> None:
    """``ValueError`` if ``--arch`` comes with flags that also describe the network (the file does)."""
    clash = [f"--{k}" for k in ("sizes", "connect", "activation", "output", "dropout") if k in given]
    if given.get("arch") is not None and clash:
        raise ValueError(
            f"--arch describes the whole network, so it does not go with {', '.join(clash)} "
            f"(give them in the file)"
        )


def _read_arch(arch):
    """The graph description in the JSON file ``arch`` (``--arch``), its structure checked; a dict (the copy
    stored in a checkpoint) stays as it is. The graph itself is built on the data, by ``fnn.cli.run``."""
    if isinstance(arch, dict):
        return arch
    try:
        with open(arch) as f:
            d = json.load(f)
    except OSError as err:
        raise ValueError(f"--arch {arch}: {err.strerror or err}") from None
    except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"--arch {arch} is not JSON: {err}") from None
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("nodes"), list)
        or not d["nodes"]
        or set(d) - {"type", "n_in", "loss", "nodes"}
    ):
        raise ValueError(
            f'--arch {arch} must hold a JSON object with a non-empty list "nodes" and optionally '
            f'"n_in" and "loss" (the form of fnn.Graph.describe())'
        )
    fields = {f.name for f in dataclasses.fields(graph.Dense)}
    for i, node in enumerate(d["nodes"]):
        if not isinstance(node, dict) or not {"name", "width"} <= set(node) or set(node) - fields:
            raise ValueError(
                f'--arch {arch}: node {i} must be an object with "name", "width" and optionally '
                f"{', '.join(sorted(fields - {'name', 'width'}))}; got {json.dumps(node)}"
            )
    return d


def _parse_sizes(text):
    """``--sizes`` as a list of ints (a list stays as it is): at least two positive widths."""
    if isinstance(text, list):
        return text
    try:
        sizes = [int(s) for s in str(text).split(",")]
    except ValueError:
        raise ValueError(
            f"--sizes must be comma-separated integers such as 64,128,10, got {text!r}"
        ) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"--sizes needs at least two positive widths, got {text!r}")
    return sizes
