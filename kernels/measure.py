"""Timing harness: warm-up, then repeated runs, median seconds. On a GPU the time is taken with CUDA events
around the launch and the device is synchronised; on the CPU it is wall-clock time."""
from __future__ import annotations

import time

import numpy as np


def median_time_s(fn, repeats: int = 7, warmup: int = 2, min_total_s: float = 0.05) -> float:
    """Median of `repeats` timings of fn(); each timing loops fn() enough times to last about
    min_total_s / repeats, so that microsecond kernels are not lost in timer resolution."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(min_total_s / repeats / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return float(np.median(samples))


def gpu_median_time_s(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median of CUDA-event timings of fn() (which launches GPU work)."""
    import cupy as cp
    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    samples = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return float(np.median(samples))
