"""Timing harness: warm-up, then repeated runs, median seconds. On the CPU it is wall-clock time, and a
sweep of many kernels is timed in interleaved rounds (see `interleaved_median_times_s`); on a GPU it is
device time, CUDA graph replays timed with CUDA events (see `gpu_median_time_s`)."""
from __future__ import annotations

import time

import numpy as np


def _calls_per_sample(fn, warmup: int, sample_s: float) -> int:
    """Warm fn up, then how many back-to-back calls last about sample_s (at least one), so that
    microsecond kernels are not lost in the timer's resolution."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    return max(1, int(sample_s / max(time.perf_counter() - start, 1e-7)))


def _sample_s(fn, calls: int, warm: bool = False) -> float:
    if warm:
        fn()  # untimed: caches hold this function's data again, not the previous one's
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def median_time_s(fn, repeats: int = 7, warmup: int = 2, min_total_s: float = 0.05) -> float:
    """Median of `repeats` timings of fn(), each of enough calls to last about min_total_s / repeats."""
    calls = _calls_per_sample(fn, warmup, min_total_s / repeats)
    return float(np.median([_sample_s(fn, calls) for _ in range(repeats)]))


def interleaved_median_times_s(fns: list, rounds: int = 7, warmup: int = 2, sample_s: float = 0.007,
                               progress=lambda text: None) -> list[float]:
    """Median seconds of each of fns, sampled in rounds that take every function once, so a burst of
    load from other tenants of a shared machine, lasting seconds, costs each function one sample of
    several instead of all of them (timing the functions one after the other would give it whole)."""
    return [float(t) for t in np.median(interleaved_times_s(fns, rounds, warmup, sample_s, progress), axis=0)]


def interleaved_times_s(fns: list, rounds: int = 7, warmup: int = 2, sample_s: float = 0.007,
                        progress=lambda text: None) -> np.ndarray:
    """Seconds of a call of each of fns (columns) in each round (rows), every round taking every function
    once. Each sample starts with an untimed call, so it is timed warm, as one function's repeated runs are."""
    calls = [_calls_per_sample(fn, warmup, sample_s) for fn in fns]
    samples = []
    for r in range(rounds):
        progress(f"timing round {r + 1}/{rounds}")
        samples.append([_sample_s(fn, n, warm=True) for fn, n in zip(fns, calls)])
    return np.array(samples)


def gpu_median_time_s(fn, repeats: int = 20, warmup: int = 3, target_s: float = 2e-3, graph: bool = True) -> float:
    """Median device seconds of one call of fn() (which launches GPU work, nothing synchronising). The
    calls are captured into a CUDA graph (as many back to back as last about target_s, up to 64) and
    the graph's replays are timed with CUDA events, so the time is the GPU's own, as when an engine
    replays its decode step's graph, not Python's and CuPy's per-launch cost, which eager timing of a
    microsecond kernel measures instead. Work that cannot be captured, or graph=False, is timed eagerly."""
    import cupy as cp
    stream = cp.cuda.Stream(non_blocking=True)
    start, end = cp.cuda.Event(), cp.cuda.Event()

    def timed(run, calls):
        samples = []
        for _ in range(repeats):
            start.record(stream)
            run()
            end.record(stream)
            end.synchronize()
            samples.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / calls)
        return float(np.median(samples))
    with stream:  # CuPy's memory pool caches blocks per stream: warm up on the one captured
        for _ in range(warmup):
            fn()
        eager_s = timed(fn, 1)
        if not graph:
            return eager_s
        calls = max(1, min(64, int(target_s / eager_s)))
        try:
            stream.begin_capture()
            try:
                for _ in range(calls):
                    fn()
            finally:
                captured = stream.end_capture()
            captured.launch(stream)
        except Exception:  # cupy raises its own errors for work a graph cannot hold (a host sync, say)
            return eager_s
        return timed(lambda: captured.launch(stream), calls)
