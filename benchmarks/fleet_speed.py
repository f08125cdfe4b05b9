"""How fast the simulator runs a day of a fleet's traffic (issue 14): 1,000,000 requests over 64 replicas
behind a round-robin router, each at 4 requests/s (256/s in all, about 65 minutes of traffic), Llama-3.1-8B
on H100s under the vllm-v1 preset (chunked mixed steps, CUDA graphs, host time overlapped), lognormal
lengths (median 800 prompt / 200 output tokens, sigma 0.8, clipped to 16-6000 and 4-1500). Target: under
30 s and 4 GB on the 2-core CI machine. `--quick` runs the first 100,000 requests.

The run is timed in its own process, after a 500-request warm-up (loading the compiled Numba code, the
first cost tables), so that its peak RSS is its own; building the request list is not timed. Each replica
runs as one compiled loop (`sim.compiled_replica`: an open loop under a stall-free scheduler), and round
robin fixes each replica's requests, so the simulator splits the replicas over the CPUs (`sim.shards`): the
largest worker's peak RSS is reported beside the main process's, and the most memory they held together
(proportional set sizes, sampled every 0.5 s; at least the main process's peak RSS) is what the 4 GB
target is checked against.

    python benchmarks/fleet_speed.py [--quick] [--preset vllm-v1] [--out benchmarks/results/fleet_speed.json]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np

REPLICAS, RATE_PER_REPLICA = 64, 4.0
TARGET_S, TARGET_BYTES = 30.0, 4e9


def fleet_workload(n: int, seed: int = 0):
    """The fleet's arrivals and lengths (a Workload)."""
    from infersim.sim.workload import Workload
    rng = np.random.default_rng(seed)
    prompt = np.clip(rng.lognormal(np.log(800), 0.8, n), 16, 6000).astype(int)
    output = np.clip(rng.lognormal(np.log(200), 0.8, n), 4, 1500).astype(int)
    return Workload(np.cumsum(rng.exponential(1 / (REPLICAS * RATE_PER_REPLICA), n)), prompt, output)


def _tree_memory_bytes(pid: int) -> int:
    """Memory of a process and all its descendants now: their proportional set sizes (Linux /proc), which
    count the pages a forked worker still shares with its parent once, not once in each as RSS does (0 for
    a process that just ended)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, StopIteration):
        return 0
    return pss + sum(_tree_memory_bytes(c) for c in children)


def _sample_peak(peak: list, stop: threading.Event) -> None:
    """Keep peak[0] at the most memory this process and its workers held together, sampled every 0.5 s
    (reading a process's PSS walks its page tables: not free)."""
    while not stop.wait(0.5):
        peak[0] = max(peak[0], _tree_memory_bytes(os.getpid()))


def _run(n: int, preset: str, queue) -> None:
    import dataclasses

    from infersim.roofline import StepOptions, get_hardware, get_model
    from infersim.sim.cluster import Colocated
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    from infersim.sim.workload import Workload

    cfg = dataclasses.replace(preset_config(preset, get_model("llama-3.1-8b"), get_hardware("h100-sxm"),
                                            StepOptions(), 8192), cluster=Colocated(REPLICAS, "round_robin"))
    wl = fleet_workload(n)
    warm = Workload(wl.arrival_s[:500], wl.prompt_tokens[:500], wl.output_tokens[:500])
    simulate(cfg, requests_from(warm))
    requests = requests_from(wl)
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=_sample_peak, args=(peak, stop), daemon=True)
    sampler.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(cfg, requests)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    stop.set()
    s = result.summary
    queue.put({"requests": n, "replicas": REPLICAS, "preset": preset, "wall_s": wall_s, "cpu_s": cpu_s,
               "ms_per_request": 1e3 * wall_s / n, "steps": s["steps"],
               "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "worker_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
               # the samples miss short peaks: at least the process's own
               "together_peak_rss_bytes": max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
               "timeline_kept": result.timeline is not None, "simulated_time_s": s["simulated_time_s"],
               "requests_completed": s["requests_completed"], "ttft_p50_s": s["ttft_s"]["p50"],
               "tpot_p50_s": s["tpot_s"]["p50"], "itl_p99_s": s["itl_s"]["p99"],
               "batch_size_mean": s["batch_size_mean"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 requests instead of 1,000,000")
    ap.add_argument("--preset", default="vllm-v1")
    ap.add_argument("--out", default="benchmarks/results/fleet_speed.json")
    args = ap.parse_args()
    n = 100_000 if args.quick else 1_000_000
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_run, args=(n, args.preset, queue))
    proc.start()
    r = queue.get()
    proc.join()
    r["meets_target"] = n < 1_000_000 or (r["wall_s"] < TARGET_S and r["together_peak_rss_bytes"] < TARGET_BYTES)
    print(f"{n:,} requests x {REPLICAS} replicas ({args.preset}): {r['wall_s']:.1f} s wall ({r['cpu_s']:.1f} s CPU), "
          f"{r['ms_per_request']:.3f} ms/request, {r['steps']:,} steps, peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB "
          f"(a worker's: {r['worker_peak_rss_bytes'] / 1e9:.2f} GB; together, PSS sampled: "
          f"{r['together_peak_rss_bytes'] / 1e9:.2f} GB), "
          f"timeline {'kept' if r['timeline_kept'] else 'streamed (totals only)'}"
          + ("" if args.quick else f"; target {TARGET_S:.0f} s / {TARGET_BYTES / 1e9:.0f} GB: "
             f"{'met' if r['meets_target'] else 'not met'}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    runs = previous.get("results", {}) | {f"{'quick' if args.quick else 'full'}-{args.preset}": r}
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "python": platform.python_version(), "results": runs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
