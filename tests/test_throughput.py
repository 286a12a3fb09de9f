"""FLOPs per step against XLA's own count, the peak table, the measured peak's cache, the refusal of
impossible timings, MFU in metrics.json, the mnist-large preset.

No test here depends on this machine's speed: the measured peak is faked (``fake_peak``, in conftest.py)."""

import json
import math
import os
import stat
import types

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


CPU = jax.devices("cpu")[0]


def test_the_measured_peak_is_measured_once_and_cached_on_disk(fake_peak):
    fake_peak.tflops = 0.25
    peak, source = throughput.peak_tflops(CPU, None)
    assert peak == 0.25 and fake_peak.calls == [("cpu", "float32", 1024)]
    assert source.startswith("measured: 1024x1024 float32 matmul on cpu (")
    assert throughput.cpu_model() in source and f"cached in {fake_peak.path}" in source
    assert fake_peak.path.startswith(os.environ["FNN_CACHE_DIR"])
    # the file: 0600 in a folder 0700, JSON keyed by the identity
    assert stat.S_IMODE(os.stat(fake_peak.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(fake_peak.path)).st_mode) == 0o700
    doc = json.loads(open(fake_peak.path).read())
    identity = throughput.machine_identity(CPU, "float32", 1024)
    (entry,) = doc["entries"].values()
    assert doc["format"] == throughput.FORMAT and entry["identity"] == identity and entry["tflops"] == 0.25
    assert (
        list(identity)
        == "platform device_kind cpu cpu_count usable_cpus xla_flags jax jaxlib dtype n".split()
    )
    assert (
        identity["xla_flags"] == os.environ.get("XLA_FLAGS", "") and identity["cpu_count"] == os.cpu_count()
    )
    assert entry["measured_at"] in source
    assert os.listdir(os.path.dirname(fake_peak.path)) == [throughput.PEAK_FILE]  # no temporary file left
    # the same process, and a later one (the file): no measurement
    assert throughput.peak_tflops(CPU, None) == (peak, source)
    fake_peak.forget()
    fake_peak.tflops = 99.0
    again, again_source = throughput.peak_tflops(CPU, "fp32")
    assert again == 0.25 and len(fake_peak.calls) == 1 and again_source == source
    info = throughput.peak_info(CPU, None)
    assert info["peak_measurement"]["from_cache"] and info["peak_measurement"]["identity"] == identity


def test_a_changed_identity_is_measured_again_beside_the_first(fake_peak, monkeypatch):
    fake_peak.tflops = 0.25
    throughput.peak_tflops(CPU, None)
    fake_peak.tflops = 0.5
    assert throughput.peak_tflops(CPU, "bf16")[0] == 0.5  # another dtype
    assert throughput.peak_tflops(CPU, None, n=256)[0] == 0.5  # another size
    flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", flags + " --xla_cpu_max_isa=AVX")
    fake_peak.forget()
    assert throughput.peak_tflops(CPU, None)[0] == 0.5  # other XLA flags
    monkeypatch.setenv("XLA_FLAGS", flags)
    monkeypatch.setattr(throughput, "_usable_cpus", lambda: 999)  # other CPUs
    fake_peak.forget()
    assert throughput.peak_tflops(CPU, None)[0] == 0.5
    measured = [c[1:] for c in fake_peak.calls]
    assert measured == [
        ("float32", 1024),
        ("bfloat16", 1024),
        ("float32", 256),
        ("float32", 1024),
        ("float32", 1024),
    ]
    assert len(json.loads(open(fake_peak.path).read())["entries"]) == 5
    monkeypatch.undo()  # the first identity again: read from the file
    monkeypatch.setattr(throughput, "measure_peak", lambda *a: pytest.fail("measured again"))
    monkeypatch.setattr(throughput, "_memo", {})
    monkeypatch.setenv("FNN_CACHE_DIR", os.path.dirname(os.path.dirname(fake_peak.path)))
    assert throughput.peak_tflops(CPU, None)[0] == 0.25


def _first_entry(path) -> dict:
    doc = json.loads(open(path).read())
    return doc, next(iter(doc["entries"]))


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc, key: b"{not json",
        lambda doc, key: b"\xff\xfe\x00",
        lambda doc, key: b"",
        lambda doc, key: b"[1, 2]",
        lambda doc, key: json.dumps({**doc, "format": "other"}).encode(),
        lambda doc, key: json.dumps({**doc, "entries": [1]}).encode(),
        lambda doc, key: json.dumps({**doc, "entries": {key: "0.25"}}).encode(),
        *(
            (lambda value: lambda doc, key: _with(doc, key, tflops=value))(v)
            for v in (0, -1.0, "0.25", True, None, [0.25], float("nan"), float("inf"))
        ),
        lambda doc, key: _with(doc, key, measured_at="yesterday"),
        lambda doc, key: _with(doc, key, method=3),
        lambda doc, key: _with(doc, key, identity={**doc["entries"][key]["identity"], "n": 7}),
        lambda doc, key: b"[" * 100_000 + b"]" * 100_000,
        lambda doc, key: b" " * (throughput.MAX_BYTES + 1),
    ],
)
def test_a_damaged_or_malformed_cache_is_ignored_and_measured_again(fake_peak, damage):
    fake_peak.tflops = 0.25
    throughput.peak_tflops(CPU, None)
    doc, key = _first_entry(fake_peak.path)
    with open(fake_peak.path, "wb") as fh:
        fh.write(damage(doc, key))
    fake_peak.forget()
    fake_peak.tflops = 0.5
    peak, source = throughput.peak_tflops(CPU, None)
    assert peak == 0.5 and len(fake_peak.calls) == 2 and "cached in" in source
    fake_peak.forget()  # and written anew, valid
    assert throughput.peak_tflops(CPU, None)[0] == 0.5 and len(fake_peak.calls) == 2


def _with(doc, key, **fields) -> bytes:
    entries = {key: {**doc["entries"][key], **fields}}
    return json.dumps({**doc, "entries": entries}).encode()


def test_a_cache_file_others_may_write_is_not_trusted(fake_peak):
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    fake_peak.tflops = 0.25
    throughput.peak_tflops(CPU, None)
    os.chmod(fake_peak.path, 0o666)
    fake_peak.forget()
    fake_peak.tflops = 0.5
    assert throughput.peak_tflops(CPU, None)[0] == 0.5 and len(fake_peak.calls) == 2


def test_an_unwritable_cache_is_measured_but_not_cached(fake_peak, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FNN_CACHE_DIR", str(blocker / "below"))  # a folder below a file cannot be made
    fake_peak.tflops = 0.25
    peak, source = throughput.peak_tflops(CPU, None)
    assert peak == 0.25 and "not cached" in source and source.startswith("measured: 1024x1024 float32")
    info = throughput.peak_info(CPU, None)
    assert info["peak_measurement"]["cached"] is False and len(fake_peak.calls) == 1  # once per process
    fake_peak.forget()
    assert throughput.peak_tflops(CPU, None)[0] == 0.25 and len(fake_peak.calls) == 2


def test_a_failed_or_impossible_measurement_is_no_peak(fake_peak):
    for value in (float("nan"), 0.0, -3.0, float("inf")):
        fake_peak.forget()
        fake_peak.tflops = value
        peak, source = throughput.peak_tflops(CPU, None)
        assert peak is None and source.startswith("none: ") and not os.path.exists(fake_peak.path)

    def broken(device, dtype_name, n):
        raise RuntimeError("out of memory")

    fake_peak.forget()
    peak, source = throughput.peak_tflops(CPU, None, measure=broken)
    assert peak is None and "RuntimeError: out of memory" in source


def test_known_gpus_take_the_table_and_measure_nothing(fake_peak):
    gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
    assert throughput.peak_tflops(gpu, "bf16") == (989.4, "table: NVIDIA H100 80GB HBM3 bf16 dense")
    assert throughput.peak_info(gpu, None)["peak_measurement"] is None and fake_peak.calls == []


def test_measure_peak_times_a_real_matmul_quickly():
    """The real measurement (its speed not judged): positive, finite, within its time budget."""
    peak = throughput.measure_peak(CPU, "float32", 64)
    assert math.isfinite(peak) and peak > 0
    found = throughput.matmul_peak(CPU, jnp.float32, 64, repeats=9, seconds=0.0)
    assert (
        found["repeats"] == throughput.MIN_REPEATS
        and found["best_flops_per_s"] >= found["median_flops_per_s"]
    )
    assert throughput.matmul_peak(CPU, jnp.float32, 32, repeats=3)["repeats"] == 3


# impossible: no time, negative, not a number, or faster than the peak (1e-9 s for 2 TFLOPs at 10 TFLOP/s)
IMPOSSIBLE = [0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-9, None]


@pytest.mark.parametrize("seconds", IMPOSSIBLE)
def test_impossible_timings_are_refused(seconds):
    r = throughput.rates(flops_per_step=2e12, steps=1, batch=100, seconds=seconds, peak=10.0)
    assert r == {"samples_per_s": None, "tflops": None, "mfu": None}
    assert isinstance(throughput.refusal(2e12, 1, seconds, 10.0), str)


def test_possible_timings_are_reported_exactly():
    flops, steps, batch, peak = 3_000_000, 7, 32, 0.05
    for seconds in (1.0, 0.003, flops * steps / (peak * 1e12)):  # the last: exactly the peak, MFU 1
        r = throughput.rates(flops, steps, batch, seconds, peak)
        tflops = flops * steps / seconds / 1e12
        assert r == {"samples_per_s": steps * batch / seconds, "tflops": tflops, "mfu": tflops / peak}
        assert 0 < r["mfu"] <= 1 and throughput.refusal(flops, steps, seconds, peak) is None
    # no peak: the rates, no MFU; and no peak cannot judge a time too short
    r = throughput.rates(flops, steps, batch, 1e-9, None)
    assert r == {"samples_per_s": steps * batch / 1e-9, "tflops": flops * steps / 1e-9 / 1e12, "mfu": None}


def test_mfu_is_a_fraction_in_0_1_or_none():
    assert throughput.mfu(5.0, 10.0) == 0.5 and throughput.mfu(10.0, 10.0) == 1.0
    for tflops, peak in [(11.0, 10.0), (0.0, 10.0), (-1.0, 10.0), (-1.0, -10.0), (None, 10.0), (5.0, None),
                         (float("nan"), 10.0), (5.0, float("nan")), (5.0, 0.0), (float("inf"), 10.0),
                         (True, 10.0)]:  # fmt: skip
        assert throughput.mfu(tflops, peak) is None, (tflops, peak)


def _speed(peak=10.0, source="measured: a fake"):
    return {
        "steps_per_epoch": 10,
        "flops_per_step": 2e11,
        "batch": 64,
        "devices": "cpu:0",
        "device_kind": "cpu",
        "peak_tflops": peak,
        "peak_source": source,
    }


@pytest.mark.parametrize("times", [[5.0, 1e-9], [5.0, 1e-9, 1e-9], [0.0], [5.0, 0.0], [5.0, -1.0],
                                   [5.0, float("nan")], [5.0, None], []])  # fmt: skip
def test_speed_summary_refuses_an_impossible_time_and_says_why(times):
    history = fnn.History(epoch=list(range(1, len(times) + 1)), epoch_time_s=times)
    m = throughput.speed_summary(history, _speed(), {})
    assert m["mfu"] is None and m["tflops"] is None and m["samples_per_s"] is None
    assert (
        isinstance(m["mfu_note"], str) and m["peak_tflops"] == 10.0 and m["peak_source"] == "measured: a fake"
    )


def test_speed_summary_reports_a_possible_time_exactly():
    history = fnn.History(epoch=[1, 2, 3], epoch_time_s=[9.0, 2.0, 3.0])  # the first (compile) left out
    m = throughput.speed_summary(history, _speed(), {"precision": "bf16"})
    seconds, steps = 5.0, 20
    tflops = 2e11 * steps / seconds / 1e12
    assert (m["samples_per_s"], m["tflops"], m["mfu"], m["mfu_note"]) == (
        steps * 64 / seconds,
        tflops,
        tflops / 10.0,
        None,
    )
    assert m["precision"] == "bf16" and m["throughput_epochs"] == "all but the first (compile)"
    none = throughput.speed_summary(history, _speed(None, "none: measuring failed"), {})
    assert none["mfu"] is None and none["tflops"] == tflops and "none: measuring failed" in none["mfu_note"]


def test_metrics_report_throughput_and_the_preset_falls_back_to_synthetic_data(tmp_path, capsys, fake_peak):
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
    assert m["samples_per_s"] > 0 and m["tflops"] > 0 and 0 < m["mfu"] <= 1 and m["mfu_note"] is None
    assert m["peak_tflops"] == 1000.0 and m["peak_source"].startswith(
        "measured: 1024x1024 bfloat16 matmul on cpu"
    )
    assert fake_peak.calls == [("cpu", "bfloat16", 1024)]


def test_device_gpu_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    assert main(["train", "--device", "gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device gpu: JAX sees no GPU" in err
