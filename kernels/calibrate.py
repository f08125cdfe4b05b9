"""Measure the host CPU and describe it as a `HardwareSpec`, so it is a hardware like any other.

Sustained GEMM FLOP/s per dtype (NumPy's BLAS for fp32, NumPy for fp16, a Numba int8 kernel with int32
accumulation), STREAM triad bandwidth (McCalpin 1995) with a parallel Numba loop, vector FLOP/s,
exponentials per second (softmax's), the cost of calling a tiny compiled kernel, and the cache sizes the OS reports. The peaks are measured
sustained rates, so the efficiency factors are 1 and no tile model applies.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from infersim.roofline.hardware import HardwareSpec


def _best_time_s(fn, repeats: int = 5) -> float:
    fn()  # warm-up (and JIT compilation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_flops_per_s(dtype: str, n: int) -> float:
    """2 n^3 / time of an n x n x n product."""
    if dtype == "int8":
        from infersim.kernels._numba_gemm import int8_gemm
        rng = np.random.default_rng(0)
        a = rng.integers(-127, 127, (n, n), dtype=np.int8)
        b = rng.integers(-127, 127, (n, n), dtype=np.int8)
        return 2 * n**3 / _best_time_s(lambda: int8_gemm(a, b))
    a = np.ones((n, n), dtype=dtype)
    b = np.ones((n, n), dtype=dtype)
    return 2 * n**3 / _best_time_s(lambda: a @ b)


def stream_triad_bytes_per_s(elements: int = 2**24) -> float:
    """a = b + s c over three float64 arrays: 24 bytes moved per element (McCalpin's STREAM triad)."""
    from infersim.kernels._numba_gemm import triad
    b = np.ones(elements)
    c = np.ones(elements)
    a = np.empty(elements)
    return 24 * elements / _best_time_s(lambda: triad(a, b, c, 3.0))


def vector_flops_per_s(elements: int = 2**14) -> float:
    """Fused a * x + y on cache-resident float32 arrays, 2 FLOPs per element, repeated."""
    x = np.ones(elements, dtype=np.float32)
    y = np.ones(elements, dtype=np.float32)
    out = np.empty_like(x)

    def run():
        for _ in range(200):
            np.multiply(x, 1.0001, out=out)
            np.add(out, y, out=out)
    return 2 * 200 * elements / _best_time_s(run)


def exp_per_s(elements: int = 2**14) -> float:
    """float32 exponentials per second on a cache-resident array, all cores (a Numba parallel loop, as
    the softmax of the attention kernels computes them)."""
    from infersim.kernels._numba_gemm import exp_into
    x = np.linspace(-10, 0, elements, dtype=np.float32)
    out = np.empty_like(x)

    def run():
        for _ in range(50):
            exp_into(x, out)
    return 50 * elements / _best_time_s(run)


def call_overhead_s() -> float:
    """Time to call a compiled kernel that does almost nothing: the CPU's 'launch overhead'."""
    from infersim.kernels._numba_gemm import triad
    a, b, c = np.empty(8), np.ones(8), np.ones(8)

    def run():
        for _ in range(1000):
            triad(a, b, c, 1.0)
    return _best_time_s(run) / 1000


def cache_bytes() -> dict:
    """Cache sizes by level from sysfs (Linux); missing entries are left out."""
    sizes = {}
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        sizes[level] = int(text.rstrip("KMG")) * factor
    return sizes


def calibrate_host(progress=lambda text: None) -> HardwareSpec:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    progress(f"measuring {platform.processor() or platform.machine()} with {cores} cores")
    peaks = {}
    for dtype, n in (("fp32", 1024), ("fp16", 256), ("int8", 512)):
        peaks[dtype] = gemm_flops_per_s({"fp32": "float32", "fp16": "float16"}.get(dtype, dtype), n)
        progress(f"  GEMM {dtype}: {peaks[dtype] / 1e9:.1f} GFLOP/s")
    bandwidth = stream_triad_bytes_per_s()
    progress(f"  STREAM triad: {bandwidth / 1e9:.1f} GB/s")
    vector = vector_flops_per_s()
    progress(f"  vector: {vector / 1e9:.1f} GFLOP/s")
    exp_rate = exp_per_s()
    progress(f"  exp: {exp_rate / 1e9:.2f} G/s")
    overhead = call_overhead_s()
    progress(f"  kernel call overhead: {overhead * 1e6:.2f} us")
    caches = cache_bytes()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return HardwareSpec(
        name=f"cpu-{platform.node() or 'host'}", peak_flops_per_s=peaks, vector_flops_per_s=vector,
        memory_bytes=float(memory), memory_bandwidth_bytes_per_s=bandwidth,
        special_function_per_s=exp_rate, l2_bytes=float(caches.get(3, caches.get(2, 0))), sram_per_sm_bytes=float(caches.get(2, caches.get(1, 0))),
        sm_count=cores, interconnect_bandwidth_bytes_per_s=bandwidth, host_link_bandwidth_bytes_per_s=bandwidth,
        sparse_tensor_cores=False, gemm_tiles=(), gemm_split_k=(1,), compute_efficiency=1.0,
        memory_efficiency=1.0, vector_bandwidth_efficiency=1.0, launch_overhead_s=overhead,
        source=f"measured by infersim calibrate on {platform.platform()}")
