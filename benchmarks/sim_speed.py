"""How fast the simulator runs: simulated requests and batch steps per wall-clock second, and peak memory.

Workloads (issue 4): Vidur's reference point, Llama-2-7B on one A100 with 512 prompt / 128 output tokens
at 5 requests/s under the vLLM scheduler (Vidur needs about 2.1 ms of wall time per request on this
machine; the target is <= 0.1 ms), and 100,000 requests of mean 512 prompt / 256 output tokens (target:
under 10 s and 2 GB), on the `vllm` scheduler with eager kernels and host time in series (the engine of
those figures), then the reference workload under the vllm-v0 and vllm-v1 presets (CUDA graphs, and V1's
chunked mixed steps with overlapped host time). Each run is timed in its own process so that peak memory is its own, after a
two-request warm-up; importing (which loads the compiled Numba code) and the warm-up are reported as
start-up.

    python benchmarks/sim_speed.py [--out benchmarks/results/sim_speed.json] [--quick] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import numpy as np

CASES = {
    "vidur-reference-10k": dict(requests=10_000, rate=5.0, prompt=("fixed", 512), output=("fixed", 128), engine="eager"),
    "mixed-lengths-10k": dict(requests=10_000, rate=8.0, prompt=("lognormal", 512), output=("lognormal", 256),
                              engine="eager"),
    "mixed-lengths-100k": dict(requests=100_000, rate=8.0, prompt=("lognormal", 512), output=("lognormal", 256),
                               engine="eager"),
    "vidur-reference-10k-vllm-v0": dict(requests=10_000, rate=5.0, prompt=("fixed", 512), output=("fixed", 128),
                                        engine="vllm-v0"),
    "vidur-reference-10k-vllm-v1": dict(requests=10_000, rate=5.0, prompt=("fixed", 512), output=("fixed", 128),
                                        engine="vllm-v1"),
    "mixed-lengths-10k-vllm-v1": dict(requests=10_000, rate=8.0, prompt=("lognormal", 512), output=("lognormal", 256),
                                      engine="vllm-v1"),
}


def _lengths(spec, n, rng):
    from infersim.sim.workload import sample_lengths
    kind, mean = spec
    if kind == "fixed":
        return sample_lengths("fixed", n, rng, value=mean)
    return sample_lengths("lognormal", n, rng, mean=mean, std=mean / 2, max_tokens=4 * mean)


def _run(case: dict, queue) -> None:
    started = time.perf_counter()
    import infersim.sim.run  # noqa: F401  (imports, and loads the compiled Numba code)
    import_s = time.perf_counter() - started
    from infersim.roofline import StepOptions, get_hardware, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.run import RunConfig, requests_from, simulate
    from infersim.sim.schedulers import SchedulerLimits
    from infersim.sim.workload import Workload, arrival_times

    rng = np.random.default_rng(0)
    n = case["requests"]
    wl = Workload(arrival_times("poisson", case["rate"], n, rng), _lengths(case["prompt"], n, rng),
                  _lengths(case["output"], n, rng))
    model, hardware = get_model("llama-2-7b"), get_hardware("a100-sxm-80gb")
    if case["engine"] == "eager":  # the vllm scheduler, eager kernels, host time in series: the figures of issue 4
        cfg = RunConfig(model, hardware, scheduler="vllm", limits=SchedulerLimits(max_model_len=4096))
    else:
        cfg = preset_config(case["engine"], model, hardware, StepOptions(), max_model_len=4096)
    warm = time.perf_counter()  # one-time start-up: first calls of the compiled kernels, first cost tables
    simulate(cfg, requests_from(Workload(np.array([0.0, 0.1]), np.array([100, 200]), np.array([20, 3]))))
    startup_s = time.perf_counter() - warm
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(cfg, requests_from(wl))
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    s = result.summary
    queue.put({"requests": n, "import_s": import_s, "startup_s": startup_s, "wall_s": wall_s, "cpu_s": cpu_s, "ms_per_request": 1e3 * wall_s / n,
               "requests_per_s": n / wall_s, "steps": s["steps"], "steps_per_s": s["steps"] / wall_s,
               "us_per_step": 1e6 * wall_s / s["steps"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "simulated_time_s": s["simulated_time_s"], "requests_completed": s["requests_completed"],
               "ttft_p50_s": s["ttft_s"]["p50"], "tpot_p50_s": s["tpot_s"]["p50"], "batch_size_mean": s["batch_size_mean"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/sim_speed.json")
    ap.add_argument("--quick", action="store_true", help="only the 10k-request cases")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case; the fastest is reported, since "
                    "other load on a shared machine only ever slows a run down (default 3)")
    args = ap.parse_args()
    results = {}
    for name, case in CASES.items():
        if args.quick and case["requests"] > 10_000:
            continue
        runs = []
        for _ in range(args.repeat):
            queue = mp.get_context("spawn").Queue()
            proc = mp.get_context("spawn").Process(target=_run, args=(case, queue))
            proc.start()
            runs.append(queue.get())
            proc.join()
        results[name] = {**case, **min(runs, key=lambda r: r["wall_s"]),
                         "wall_s_of_each_run": [r["wall_s"] for r in runs]}
        r = results[name]
        print(f"{name:22s} {r['requests']:>7,} requests in {r['wall_s']:6.2f} s: {r['ms_per_request']:.4f} ms/request, "
              f"{r['steps']:>9,} steps ({r['steps_per_s']:>9,.0f} steps/s, {r['us_per_step']:.1f} us/step), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (CPU {r['cpu_s']:.2f} s; start-up {r['import_s'] + r['startup_s']:.2f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
