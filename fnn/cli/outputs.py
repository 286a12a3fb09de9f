"""What ``fnn train`` writes: its messages and, in ``--out``, the files of a run (``fnn.cli.run.Plan``).

``metrics.json`` (settings, scores on each split, stop reason, throughput),
``history.csv``, ``loss_curve.png`` and, with ``--diagnostics``,
``diagnostics.csv`` and ``gradient_norms.png``; the checkpoint is written by
``fnn.callbacks.Checkpoint`` during the run. In a multi-host run only the
writing process (process 0) prints the run's line and writes the files.
"""

from __future__ import annotations

import json
import os
import sys

import jax

from fnn import optimizers
from fnn.cli import plots
from fnn.cli.run import targets
from fnn.core.mlp import MLP
from fnn.scale.throughput import speed_summary
from fnn.training import diagnostics, loop


def announce(plan) -> None:
    """The run's first line: the data, the network, the optimizer, the batch, the epochs and the devices."""
    if not plan.writer:
        return
    splits, cfg = plan.splits, plan.cfg
    print(
        f"fnn train: {plan.ds.name} "
        f"({_n(splits.train)} train, {_n(splits.val)} validation, {_n(splits.test)} test), "
        f"network {_network(plan)}, {cfg['optimizer']}, batch {cfg['batch_size'] or 'full'}, "
        f"up to {cfg['epochs']} epochs, {cfg.get('precision') or 'fp32'} on {plan.speed['devices']} "
        f"({plan.speed['device_kind']})",
        flush=True,
    )


def interrupted(plan, stop: loop.Interrupted) -> int:
    """The line for Ctrl-C (the checkpoint is saved, and how to continue); exit status 130."""
    print(
        f"fnn train: interrupted after epoch {stop.epoch}; checkpoint saved to {plan.checkpoint} "
        f"(continue with: fnn train --out {plan.out} --resume)",
        file=sys.stderr,
    )
    return 130


def write(plan, params, history, fit_time: float) -> int:
    """Write the run's files and its last lines; the exit status: 1 if the loss diverged, else 0."""
    if not plan.writer:  # process 0 writes the run's files
        return 0
    result = summarize(plan, params, history, fit_time)
    result.update(speed_summary(history, plan.speed, plan.cfg))
    with open(os.path.join(plan.out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    history.to_csv(os.path.join(plan.out, "history.csv"))
    if history.diagnostics:
        diagnostics.to_csv(history, os.path.join(plan.out, "diagnostics.csv"))
    plot_note = _plots(plan, history)
    if history.diverged:
        print(
            f"fnn train: error: {history.stop_reason}; last good checkpoint kept in {plan.checkpoint}",
            file=sys.stderr,
        )
        return 1
    print("fnn train: " + _outcome(result, history))
    extra = ", diagnostics.csv, gradient_norms.png" if history.diagnostics else ""
    print(
        f"fnn train: wrote {plan.out}/metrics.json, history.csv, loss_curve.png{extra}, "
        f"checkpoint.npz{plot_note}"
    )
    return 0


def _plots(plan, history) -> str:
    """Draw loss_curve.png and, with diagnostics, gradient_norms.png; ``""``, or why there is no plot."""
    name = plan.ds.name
    try:
        plots.loss_curve(
            history,
            os.path.join(plan.out, "loss_curve.png"),
            title=f"{name}: {_shape(plan)}, {plan.cfg['optimizer']}",
        )
        if history.diagnostics:
            plots.gradient_norms(
                history,
                os.path.join(plan.out, "gradient_norms.png"),
                title=f"{name}: {_shape(plan)} {_activations(plan.net)}",
            )
    except OSError as err:
        return f" (no plot: {err})"
    return ""


def _outcome(result: dict, history) -> str:
    """The last line's summary: epochs and stop reason, train and test loss, test accuracy, time."""
    parts = [f"{result['epochs']} epochs ({history.stop_reason})", f"train loss {result['train_loss']:.4g}"]
    if result.get("test_loss") is not None:
        parts.append(f"test loss {result['test_loss']:.4g}")
    if result.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * result['test_accuracy']:.2f}%")
    parts.append(f"{result['wall_time_s']:.1f} s")
    return ", ".join(parts)


def _network(plan) -> str:
    """The network in one line: ``64,128,10 relu/softmax cross_entropy`` (``_shape``), then ``dropout P``
    if ``--dropout``; for ``--arch``, ``graph 4 -> h1(16 relu) -> ... -> out(3 softmax) cross_entropy``."""
    net, cfg = plan.net, plan.cfg
    if _kind(cfg) == "graph":
        names = ["x", *(node.name for node in net.nodes)]
        return f"graph {' -> '.join([str(net.n_in), *map(_node, net.nodes, names)])} {net.loss}"
    dropout = f" dropout {cfg['dropout']:g}" if cfg.get("dropout") else ""
    return f"{_shape(plan)} {_activations(net)} {net.loss}{dropout}"


def _node(node, previous: str) -> str:
    """An ``--arch`` node, ``h2(16 relu from x+h1 residual h1 dropout 0.2)``:
    its inputs unless just ``previous``."""
    words = [str(node.width), node.activation]
    if node.inputs != (previous,):
        words.append("from " + "+".join(node.inputs))
    if node.residual is not None:
        words.append(f"residual {node.residual}")
    if node.dropout:
        words.append(f"dropout {node.dropout:g}")
    return f"{node.name}({' '.join(words)})"


def _shape(plan) -> str:
    """The widths, ``64,128,10``, after ``cascade``, ``residual`` or ``graph`` for those networks."""
    kind, widths = _kind(plan.cfg), ",".join(map(str, _widths(plan.net)))
    return widths if kind == "chain" else f"{kind} {widths}"


def _kind(cfg) -> str:
    """How the network connects: ``chain`` (an MLP), ``cascade``, ``residual`` (--connect)
    or ``graph`` (--arch)."""
    return "graph" if cfg.get("arch") is not None else cfg.get("connect") or "chain"


def _nodes(net) -> tuple:
    """The network's nodes (``fnn.Dense``; an MLP's are its chain's)."""
    return net.graph.nodes if isinstance(net, MLP) else net.nodes


def _widths(net) -> list:
    """The input width and each node's, ``[64, 128, 10]`` (an MLP's ``sizes``)."""
    return [net.n_in, *(node.width for node in _nodes(net))]


def _activations(net) -> str:
    """Each node's activation, ``relu/relu/softmax``."""
    return "/".join(node.activation for node in _nodes(net))


def _n(split) -> int:
    """The number of examples in ``split`` (0 for none)."""
    return len(split.x) if split else 0


# --------------------------------------------------------------------------- metrics.json


def summarize(plan, params, history, fit_time: float) -> dict:
    """metrics.json but for the throughput: the settings, the scores of ``params`` on each split,
    how the run went."""
    return {**_settings(plan), **_scores(plan, params), **_course(plan, history, fit_time)}


def _settings(plan) -> dict:
    """The network and training settings of the run."""
    cfg = plan.cfg
    return {
        "dataset": cfg["dataset"],
        **_architecture(plan),
        "optimizer": cfg["optimizer"],
        "learning_rate": cfg["lr"]
        if cfg.get("lr") is not None
        else optimizers.spec(cfg["optimizer"]).default_lr,
        "schedule": cfg["schedule"],
        "batch_size": cfg.get("batch_size"),
        "seed": cfg["seed"],
    }


def _architecture(plan) -> dict:
    """The widths, activations and loss; for a graph also ``connect`` and ``graph`` (its ``describe()``);
    with ``--dropout``, ``dropout``."""
    net, kind = plan.net, _kind(plan.cfg)
    out = {"sizes": _widths(net), "activation": [node.activation for node in _nodes(net)], "loss": net.loss}
    if kind != "chain":
        out.update(connect=kind, graph=net.describe())
    if plan.cfg.get("dropout"):
        out["dropout"] = plan.cfg["dropout"]
    return out


def _scores(plan, params) -> dict:
    """Loss and accuracy of ``params`` on the test, train and validation splits
    (``None`` where there are none)."""

    def ev(split):
        return {} if split is None else loop.evaluate(plan.net, params, *targets(plan.net, split))

    splits = plan.splits
    tr, va, te = ev(splits.train), ev(splits.val), ev(splits.test)
    return {
        "test_accuracy": te.get("accuracy"),
        "test_loss": te.get("loss"),
        "train_loss": tr.get("loss"),
        "train_accuracy": tr.get("accuracy"),
        "val_loss": va.get("loss"),
        "val_accuracy": va.get("accuracy"),
    }


def _course(plan, history, fit_time: float) -> dict:
    """Epochs, best epoch, stop reason, wall time, samples/s, split sizes and the device's platform."""
    splits, epochs_run = plan.splits, len(history)
    wall = history.wall_time_s[-1] if history.wall_time_s else fit_time
    n_train = _n(splits.train)
    return {
        "epochs": epochs_run,
        "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason,
        "wall_time_s": wall,
        "samples_per_s": n_train * epochs_run / wall if wall > 0 else None,
        "n_train": n_train,
        "n_val": _n(splits.val),
        "n_test": _n(splits.test),
        "device": jax.devices()[0].platform,
    }
