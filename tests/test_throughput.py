"""FLOPs per step against XLA's own count, the peak table, MFU in metrics.json, the mnist-large preset."""

import json

import jax
import jax.numpy as jnp
import pytest

import fnn
from benchmarks.xla_cost import compiled_cost
from fnn.cli import main
from fnn.core.backprop import compiled_backprop
from fnn.scale import throughput


def test_analytic_step_flops_match_xla_cost_analysis():
    net = fnn.MLP((256, 512, 512, 10), activation="relu", output="softmax", loss="cross_entropy")
    params = fnn.init(jax.random.key(0), net)
    x = jnp.ones((128, 256))
    y = jax.nn.one_hot(jnp.zeros(128, jnp.int32), 10)
    xla = compiled_cost(compiled_backprop.lower(net, params, x, y).compile())["flops"]
    analytic = throughput.step_flops(net.sizes, 128)
    assert analytic == 6 * 128 * (256 * 512 + 512 * 512 + 512 * 10) - 2 * 128 * 256 * 512
    # XLA also counts biases, activations and the loss: a few percent on top of the matmuls
    assert analytic <= xla <= 1.05 * analytic, (analytic, xla)


def test_peak_table_and_rates():
    assert throughput.table_peak("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert throughput.table_peak("NVIDIA H200", "tf32") == pytest.approx(494.7)
    assert throughput.table_peak("NVIDIA A100-SXM4-80GB", None) == pytest.approx(19.5)
    assert throughput.table_peak("cpu", "bf16") is None
    r = throughput.rates(flops_per_step=2e12, steps=10, batch=100, seconds=4.0, peak=10.0)
    assert r == {"samples_per_s": 250.0, "tflops": 5.0, "mfu": 0.5}


def test_metrics_report_throughput_and_the_preset_falls_back_to_synthetic_data(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--preset",
            "mnist-large",
            "--sizes",
            "784,32,10",
            "--limit",
            "1024",
            "--epochs",
            "2",
            "--batch-size",
            "256",
            "--data-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC data of mnist's shape" in out and "bf16" in out
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["precision"] == "bf16" and m["flops_per_step"] == throughput.step_flops([784, 32, 10], 256)
    assert (
        m["samples_per_s"] > 0
        and m["tflops"] > 0
        and 0 < m["mfu"] < 2
        and m["peak_source"].startswith("measured")
    )


def test_device_gpu_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    assert main(["train", "--device", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device gpu: JAX sees no GPU" in err
