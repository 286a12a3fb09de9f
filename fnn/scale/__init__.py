"""Running fnn at scale and measuring it: precision, devices, memory, speed.

=================  ===========================================================
``precision``      ``fp32``, ``tf32`` and ``bf16`` compute policies
``distributed``    data parallelism over devices and hosts
``memory``         what the device's memory allows (P x P methods)
``machine``        which device a run uses; the machine, described
``throughput``     FLOPs per step, TFLOP/s and MFU
``xla_cost``       XLA's cost analysis and the measured matmul peak
``timing``         wall-clock timing, interleaved and paired
``compile_cache``  JAX's persistent compilation cache
=================  ===========================================================

Imports ``fnn.core`` only.
"""
