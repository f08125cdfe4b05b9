"""GPU calibration; the CUDA kernels live in `cuda/`, the GPU in use in `device.py`."""
from __future__ import annotations

import numpy as np

from .cuda.compile import compiled
from .device import registry_name, require


def calibrate_gpu(progress=lambda text: None):
    """Measure the GPU in use and return its registry spec with the efficiency factors and the exp rate
    set from the measurements: fp16 GEMM FLOP/s (CuPy/cuBLAS, 8192^3) over the datasheet peak, device copy
    bandwidth over the datasheet bandwidth, compute-bound exponentials per second, an empty kernel's time."""
    import dataclasses

    from infersim.roofline import get_hardware

    from .measure import gpu_median_time_s
    cp = require()
    base = get_hardware(registry_name())
    n = 8192
    a = cp.ones((n, n), dtype=cp.float16)
    # GEMM and copy: long single launches, timed eagerly (graph replays of the copy ran slower)
    gemm = 2 * n ** 3 / gpu_median_time_s(lambda: a @ a, repeats=10, graph=False)
    progress(f"  fp16 GEMM: {gemm / 1e12:.0f} TFLOP/s ({gemm / base.peak('fp16'):.2f} of the datasheet)")
    big = cp.empty(1 << 28, dtype=cp.float32)  # 1 GiB
    out = cp.empty_like(big)
    copy = 2 * big.nbytes / gpu_median_time_s(lambda: cp.copyto(out, big), repeats=10, graph=False)
    progress(f"  copy: {copy / 1e12:.2f} TB/s ({copy / base.memory_bandwidth_bytes_per_s:.2f} of the datasheet)")
    x = cp.zeros(1 << 22, dtype=cp.float32)
    kernel = compiled("exp_loop.cu", "exp_loop")
    repeats = 256
    exp_rate = x.size * repeats / gpu_median_time_s(
        lambda: kernel(((x.size + 255) // 256,), (256,), (x, np.int32(x.size), np.int32(repeats))), repeats=10)
    progress(f"  exp: {exp_rate / 1e12:.2f} T/s")
    empty = cp.zeros(1, dtype=cp.float32)
    launch = gpu_median_time_s(lambda: kernel((1,), (1,), (empty, np.int32(1), np.int32(0))), repeats=50)
    progress(f"  kernel launch: {launch * 1e6:.1f} us")
    return dataclasses.replace(
        base, name=f"{base.name}-calibrated", compute_efficiency=min(1.0, gemm / base.peak("fp16")),
        memory_efficiency=min(1.0, copy / base.memory_bandwidth_bytes_per_s), special_function_per_s=exp_rate,
        launch_overhead_s=launch, source=f"{base.source}; efficiencies measured by infersim calibrate --device gpu")
