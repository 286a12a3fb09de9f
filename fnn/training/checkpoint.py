"""Checkpoints without pickle: one ``.npz`` of arrays plus a JSON metadata entry.

A checkpoint holds named pytrees of arrays (``params``, ``opt_state``,
``best_params``, ...) flattened to arrays called ``<tree>/<index>``, the PRNG
key as its raw ``jax.random.key_data``, and a JSON document ``__meta__`` (stored
as a uint8 array) with the epoch, the run's configuration, the history and the
``jax.tree_util.keystr`` path of every leaf. It is written to a temporary file
in the target directory and renamed over the target (``os.replace``), so a
crash, Ctrl-C or power loss mid-write never leaves a half-written checkpoint
(the file is fsynced before the rename). Loading uses
``numpy.load(allow_pickle=False)``; trees are rebuilt on a template with the
same structure (``restore_tree``), which is checked leaf by leaf.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import validation

FORMAT = "fnn-checkpoint-1"


class SavedRun(NamedTuple):
    """A checkpoint as ``load`` reads it (``fnn.callbacks.Checkpoint`` is the callback that writes it)."""

    arrays: dict  # tree name -> list of numpy arrays (leaf order)
    paths: dict  # tree name -> list of leaf paths
    key: jax.Array | None
    meta: dict


def _leaves(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in flat], [np.asarray(v) for _, v in flat]


def save(path, *, trees: dict[str, Any], key=None, meta: dict | None = None) -> None:
    """Write ``trees`` (name -> pytree of arrays), ``key`` and ``meta`` atomically to ``path``."""
    path = os.fspath(path)
    arrays = {}
    paths = {}
    for name, tree in trees.items():
        if tree is None:
            continue
        p, leaves = _leaves(tree)
        paths[name] = p
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = leaf
    if key is not None:
        arrays["__key__"] = np.asarray(jax.random.key_data(key))
    document = {"format": FORMAT, "paths": paths, "meta": meta or {}}
    if key is not None:
        document["key_impl"] = str(jax.random.key_impl(key))
    arrays["__meta__"] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path) -> SavedRun:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable fnn checkpoint: {err}") from None
    if "__meta__" not in files:
        raise ValueError(f"{path} is not an fnn checkpoint (no metadata)")
    document = json.loads(files.pop("__meta__").tobytes().decode())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {document.get('format')!r}, expected {FORMAT!r}")
    key = None
    if "__key__" in files:
        key = jax.random.wrap_key_data(jnp.asarray(files.pop("__key__")))
    arrays = {}
    for name, p in document["paths"].items():
        arrays[name] = [files[f"{name}/{i}"] for i in range(len(p))]
    return SavedRun(arrays, document["paths"], key, document["meta"])


def restore_tree(ckpt: SavedRun, name: str, template):
    """Rebuild tree ``name`` on ``template``'s structure, checking paths, shapes and dtypes."""
    if name not in ckpt.arrays:
        raise ValueError(f"checkpoint holds no {name!r}")
    tree = validation.match_tree(
        f"checkpoint's {name}",
        ckpt.paths[name],
        ckpt.arrays[name],
        template,
        "was it written with other settings?",
    )
    return jax.tree_util.tree_map(jnp.asarray, tree)
