"""Internal: running fnn at scale and measuring it. Public as ``fnn`` (``fnn.Policy``, the compile cache).

Precision, devices, memory, speed:

=================  ===========================================================
``precision``      ``fp32``, ``tf32`` and ``bf16`` compute policies
``distributed``    data parallelism over devices and hosts
``memory``         what the device's memory allows (P x P methods)
``throughput``     FLOPs per step, TFLOP/s and MFU; the measured matmul peak
``timing``         wall-clock timing, interleaved and paired
``compile_cache``  JAX's persistent compilation cache
``traced_cache``   traced programs kept on disk beside the compiled ones
=================  ===========================================================

What only the benchmarks and experiments use (the machine described, XLA's
cost analysis) is in the repository's ``benchmarks/``. Imports ``fnn.core`` only.
"""
