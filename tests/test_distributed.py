"""Data parallelism over 4 CPU devices (first- and second-order methods), and a 2-process run on localhost.

The device count of XLA's CPU backend is fixed when JAX starts, so the
multi-device checks run in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fnn.cli import main

FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    import fnn
    from fnn.scale import distributed
    from fnn.training import loop
    from fnn.cli import main

    assert len(jax.devices()) == 4, jax.devices()
    net = fnn.MLP((8, 32, 32, 3), activation="tanh", output="softmax", loss="cross_entropy")
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (200, 8)); y = jax.random.randint(k[1], (200,), 0, 3)
    p0 = fnn.init(k[2], net)
    out = {}
    for devices, feed in [(1, None), (4, None), (4, "host")]:
        p, h = fnn.fit(net, p0, (x, y), epochs=4, batch_size=40, key=jax.random.key(1), devices=devices,
                       feed=feed)
        out[f"{devices}-{feed}"] = {"loss": h.train_loss, "W": np.asarray(p[0]["W"]).tolist()}
    graph = fnn.Graph(8, (fnn.Dense("h1", 16, "tanh"),
                          fnn.Dense("h2", 16, "relu", ("h1", "x"), "h1", dropout=0.3),
                          fnn.Dense("out", 3, "softmax", ("h2", "h1"))), "cross_entropy")
    g0 = fnn.init(k[2], graph)
    # a graph with dropout: the masks are drawn from the step's key, whatever the devices
    for devices in (1, 4):
        p, h = fnn.fit(graph, g0, (x, y), epochs=3, batch_size=40, key=jax.random.key(1), devices=devices)
        out[f"graph{devices}"] = {"loss": h.train_loss, "W": np.asarray(p["h2"]["W"]["x"]).tolist()}
    # the second-order methods: the curvature passes split as the gradient's
    for name in ("hessian_free", "kfac"):
        for devices in (1, 4):
            p, h = fnn.fit(graph, g0, (x, y), optimizer=name, epochs=3,
                           batch_size=200 if name == "kfac" else None, key=jax.random.key(1), devices=devices)
            out[f"{name}{devices}"] = {"loss": h.train_loss, "damping": h.damping}
    try:
        fnn.fit(net, p0, (x, y), epochs=1, batch_size=30, key=jax.random.key(1), devices=4)
    except ValueError as err:
        out["error"] = str(err)
    # XLA splits the step: per-device minibatches of 40 / 4 = 10 rows and an all-reduce of the gradients
    tx = fnn.optimizers.get("adam", None)
    mesh = distributed.make_mesh(jax.devices())
    epoch = loop.make_epoch(net, tx, 200, 40, False, None, mesh, "device")
    order = loop.epoch_indices(loop.key_words(jax.random.key(1)), 0, 200, 40)
    args = jax.device_put((p0, tx.init(p0), order, np.zeros((200, 8), np.float32),
                           np.zeros((200, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)),
                          distributed.replicated(mesh))
    hlo = epoch.lower(*args).compile().as_text()
    out["hlo"] = {"all_reduce": "all-reduce" in hlo, "per_device_batch": "f32[10,8]" in hlo}
    for n in (1, 4):
        rc = main(["train", "--dataset", "digits", "--sizes", "64,32,10", "--epochs", "2",
                   "--batch-size", "64", "--devices", str(n), "--quiet", "--out", f"{sys.argv[1]}/d{n}"])
        assert rc == 0
        out[f"cli{n}"] = json.load(open(f"{sys.argv[1]}/d{n}/metrics.json"))
    print("RESULT" + json.dumps(out))
""")


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    env.pop("XLA_FLAGS", None) if "XLA_FLAGS" not in extra else None
    return env


def test_four_devices_give_the_loss_curve_of_one(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    one = np.array(out["1-None"]["loss"])
    for k in ("4-None", "4-host"):
        np.testing.assert_allclose(out[k]["loss"], one, rtol=1e-5)
        np.testing.assert_allclose(out[k]["W"], out["1-None"]["W"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["graph4"]["loss"], out["graph1"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(out["graph4"]["W"], out["graph1"]["W"], rtol=1e-4, atol=1e-6)
    for name in ("hessian_free", "kfac"):
        np.testing.assert_allclose(out[f"{name}4"]["loss"], out[f"{name}1"]["loss"], rtol=1e-4)
        np.testing.assert_allclose(out[f"{name}4"]["damping"], out[f"{name}1"]["damping"], rtol=1e-4)
    assert "batch size 30 does not divide over 4 devices" in out["error"]
    assert out["hlo"] == {"all_reduce": True, "per_device_batch": True}
    c1, c4 = out["cli1"], out["cli4"]
    assert c4["devices"] == "4 cpu devices" and c1["devices"] == "1 cpu device"
    for k in ("train_loss", "test_loss", "test_accuracy"):
        assert c4[k] == pytest.approx(c1[k], rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_match_one_process(tmp_path, capsys):
    args = [
        "--dataset",
        "digits",
        "--sizes",
        "64,32,10",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--quiet",
        "--device",
        "cpu",
    ]
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fnn",
                "train",
                *args,
                "--out",
                str(tmp_path / f"p{i}"),
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), logs
    assert "2 processes x 1 cpu device" in logs[0]
    assert not (tmp_path / "p1").exists()  # only process 0 writes (or creates) anything
    assert main(["train", *args, "--out", str(tmp_path / "single")]) == 0
    two = json.loads((tmp_path / "p0" / "metrics.json").read_text())
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    for k in ("train_loss", "test_loss", "test_accuracy"):
        assert two[k] == pytest.approx(one[k], rel=1e-5)
    ck2, ck1 = np.load(tmp_path / "p0" / "checkpoint.npz"), np.load(tmp_path / "single" / "checkpoint.npz")
    for name in ck1.files:
        if ck1[name].dtype.kind == "f":
            np.testing.assert_allclose(ck2[name], ck1[name], rtol=1e-5, atol=1e-7)
