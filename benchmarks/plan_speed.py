"""How fast `infersim plan` runs: a 24-candidate plan (Llama-3.1-8B and Llama-3.2-3B x A100 / H100 / L40S /
H200 x fp16 / fp8 / w4a16; fp8 on the A100 is refused, so 22 candidates are simulated) over a 2,000-request
workload per simulation, 2 seeds, and the concurrency sweep 1..256, on the local cores (target, issue 14:
under 60 s on 2 cores). Prints the wall time, the CPU time of this process and its workers (the steadier
figure on a shared machine) and the load average at the end, and writes them as JSON. Run from the checkout's
root:

    PYTHONPATH=. python benchmarks/plan_speed.py [--jobs 2] [--out benchmarks/results/plan_speed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

PLAN = {
    "name": "plan-speed-24",
    "models": ["llama-3.1-8b", "llama-3.2-3b"],
    "hardware": [{"name": "a100-sxm-80gb", "price_per_gpu_hour": 1.8}, {"name": "h100-sxm", "price_per_gpu_hour": 3.0},
                 {"name": "l40s", "price_per_gpu_hour": 1.0}, {"name": "h200", "price_per_gpu_hour": 3.7}],
    "configurations": [{"quantization": q, "scheduler": {"max_model_len": 8192}} for q in ("fp16", "fp8", "w4a16")],
    "workload": {"prompt_tokens": {"kind": "lognormal", "mean": 1024, "std": 512, "max_tokens": 4096},
                 "output_tokens": {"kind": "lognormal", "mean": 256, "std": 128, "max_tokens": 1024}},
    "slo": {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.05}},
    "target_rate_per_s": 50,
    "search": {"seeds": 2, "num_requests": 2000, "relative_tolerance": 0.05,
               "concurrency": [1, 2, 4, 8, 16, 32, 64, 128, 256]},
}


def _cpu_s() -> float:
    """User and system seconds of this process and of its finished workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default="benchmarks/results/plan_speed.json")
    args = parser.parse_args()
    from infersim.executors import LocalExecutor
    from infersim.plan import candidates, load_plan, run_plan
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.yaml"
        path.write_text(yaml.safe_dump(PLAN))
        started, cpu_before = time.perf_counter(), _cpu_s()
        ctx = load_plan(path)
        result = run_plan(ctx, LocalExecutor(args.jobs))
        wall_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_before
    rows = result["candidates"]
    simulations = sum(len(r["load_curve"]) for r in rows)  # seed 0's search points only
    report = {"machine": platform.machine(), "python": platform.python_version(), "jobs": args.jobs,
              "cpus": os.cpu_count(), "candidates": len(candidates(ctx.plan)),
              "simulated_candidates": sum(r["status"] == "ok" for r in rows),
              "least_requests_per_simulation": ctx.plan.search.num_requests,
              "min_duration_s": ctx.plan.search.min_duration_s, "max_requests": ctx.plan.search.max_requests,
              "seeds": ctx.plan.search.seeds,
              "seed0_search_points": simulations, "wall_s": wall_s, "cpu_s": cpu_s,
              "load_average_1min": os.getloadavg()[0], "target_s": 60.0, "chosen": result["chosen"]}
    print(json.dumps(report, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
