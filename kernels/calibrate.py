"""Measure the device in use and describe it as a `HardwareSpec`, so it is a hardware like any other.

The host CPU (`calibrate_host`): sustained GEMM FLOP/s per dtype (NumPy's BLAS for fp32, NumPy for fp16, a
Numba int8 kernel with int32 accumulation), STREAM triad bandwidth (McCalpin 1995) with a parallel Numba
loop, vector FLOP/s, exponentials per second (softmax's), the cost of calling a tiny compiled kernel, and
the cache sizes the OS reports. The peaks are sustained rates (medians of repeated runs, the statistic the
validation uses), so the efficiency factors are 1 and no tile model applies.

A GPU (`calibrate_gpu`): its registry spec, with the efficiency factors, the exponential rate and the
launch overhead set from measurements.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from infersim.kernels.cuda.compile import compiled
from infersim.kernels.device import registry_name, require
from infersim.kernels.measure import gpu_median_time_s, interleaved_times_s
from infersim.roofline import get_hardware
from infersim.roofline.hardware import HardwareSpec


def _gemm(dtype: str, n: int) -> tuple:
    """An n x n x n product: 2 n^3 FLOPs a call. int8 runs the Numba kernel with int32 accumulation."""
    if dtype == "int8":
        from infersim.kernels._numba_gemm import int8_gemm
        rng = np.random.default_rng(0)
        a = rng.integers(-127, 127, (n, n), dtype=np.int8)
        b = rng.integers(-127, 127, (n, n), dtype=np.int8)
        return (lambda: int8_gemm(a, b)), 2 * n**3
    a = np.ones((n, n), dtype={"fp32": np.float32, "fp16": np.float16}[dtype])
    b = np.ones_like(a)
    return (lambda: a @ b), 2 * n**3


def _stream_triad(elements: int = 2**24) -> tuple:
    """a = b + s c over three float64 arrays: 24 bytes moved per element (McCalpin's STREAM triad)."""
    from infersim.kernels._numba_gemm import triad
    b = np.ones(elements)
    c = np.ones(elements)
    a = np.empty(elements)
    return (lambda: triad(a, b, c, 3.0)), 24 * elements


def _vector(elements: int = 2**14, repeats: int = 200) -> tuple:
    """Fused a * x + y on cache-resident float32 arrays, 2 FLOPs per element, repeated."""
    x = np.ones(elements, dtype=np.float32)
    y = np.ones(elements, dtype=np.float32)
    out = np.empty_like(x)

    def run():
        for _ in range(repeats):
            np.multiply(x, 1.0001, out=out)
            np.add(out, y, out=out)
    return run, 2 * repeats * elements


def _exp(elements: int = 2**19) -> tuple:
    """float32 exponentials over an array the last-level cache holds (2 MiB in, 2 MiB out), all cores (a
    Numba parallel loop, as the softmax of the attention kernels computes them), one loop a call. Each loop
    ends waiting for every core, and a core lent to another process holds it up by a scheduler time slice
    (milliseconds): many short loops (this probe was 50 of 16 Ki) measured the machine's load instead."""
    from infersim.kernels._numba_gemm import exp_into
    x = np.linspace(-10, 0, elements, dtype=np.float32)
    out = np.empty_like(x)
    return (lambda: exp_into(x, out)), elements


def _call(repeats: int = 1000) -> tuple:
    """Calls of a compiled kernel that does almost nothing: the CPU's 'launch overhead'."""
    from infersim.kernels._numba_gemm import triad
    a, b, c = np.empty(8), np.ones(8), np.ones(8)

    def run():
        for _ in range(repeats):
            triad(a, b, c, 1.0)
    return run, repeats


class Probe(NamedTuple):
    make: Callable[[], tuple]  # -> (a call to time, the work it does: FLOPs, bytes, exponentials or calls)
    seconds: Callable = np.median  # the statistic of its rounds' seconds


PROBES = {"GEMM fp32": Probe(lambda: _gemm("fp32", 1024)), "GEMM fp16": Probe(lambda: _gemm("fp16", 256)),
          "GEMM int8": Probe(lambda: _gemm("int8", 1024)), "STREAM triad": Probe(_stream_triad),
          "vector": Probe(_vector),
          # the best round: load on another core stalls every parallel loop of a round, so on a shared
          # machine most rounds can be slowed many times over, and the median with them
          "exp": Probe(_exp, np.min), "kernel call": Probe(_call)}
# Rates below these are no CPU's of the last decade (a single AVX2 core computes ~1e9 float32 exponentials
# a second; a Numba call costs microseconds): the machine was busy, and the figure written is not its own.
PLAUSIBLE_RATES = {"exp": (1e8, "special_function_per_s"), "kernel call": (1e3, "launch_overhead_s")}


def measure_rates(progress=lambda text: None) -> dict:
    """Work per second of each probe, timed in interleaved rounds with medians as `infersim validate` times
    kernels: a peak and the kernel times compared with it are then the same statistic, and a burst of load
    on a shared machine moves neither much. The exp probe keeps its best round (see PROBES)."""
    probes = {name: probe.make() for name, probe in PROBES.items()}
    seconds = interleaved_times_s([fn for fn, _ in probes.values()], rounds=9, progress=progress)
    return {name: work / float(PROBES[name].seconds(seconds[:, i]))
            for i, (name, (_, work)) in enumerate(probes.items())}


def implausible_rates(rates: dict) -> list[str]:
    """A warning line for each measured rate below PLAUSIBLE_RATES, naming the spec field not to trust."""
    return [f"warning: {name} measured {rates[name]:.3g}/s, below the {floor:.0e}/s any CPU of the last decade "
            f"reaches: the machine looked busy, so do not trust {field} (rerun infersim calibrate when it is idle)"
            for name, (floor, field) in PLAUSIBLE_RATES.items() if rates[name] < floor]


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
    rates = measure_rates(progress)
    peaks = {dtype: rates[f"GEMM {dtype}"] for dtype in ("fp32", "fp16", "int8")}
    for dtype, rate in peaks.items():
        progress(f"  GEMM {dtype}: {rate / 1e9:.1f} GFLOP/s")
    bandwidth, vector, exp_rate = rates["STREAM triad"], rates["vector"], rates["exp"]
    overhead = 1 / rates["kernel call"]
    progress(f"  STREAM triad: {bandwidth / 1e9:.1f} GB/s")
    progress(f"  vector: {vector / 1e9:.1f} GFLOP/s")
    progress(f"  exp: {exp_rate / 1e9:.2f} G/s")
    progress(f"  kernel call overhead: {overhead * 1e6:.2f} us")
    for warning in implausible_rates(rates):
        print(warning, file=sys.stderr)  # not `progress`: a caller that keeps quiet still hears of it
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


def calibrate_gpu(progress=lambda text: None) -> HardwareSpec:
    """Measure the GPU in use and return its registry spec with the efficiency factors and the exp rate
    set from the measurements: fp16 GEMM FLOP/s (CuPy/cuBLAS, 8192^3) over the datasheet peak, device copy
    bandwidth over the datasheet bandwidth, compute-bound exponentials per second, an empty kernel's time."""
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
