"""A held-out check of FP8 serving on Hopper: rows of NVIDIA's published TensorRT-LLM maximum-throughput
table simulated as the benchmark runs them (every request at once), predicted against measured output
tokens/s. Nothing in infersim was fitted to these rows.

Source: NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md at commit 258c754 ("All data in the
table below was generated using version 0.17"; https://nvidia.github.io/TensorRT-LLM/0.17.0/performance/
perf-overview.html), Apache License 2.0, Copyright (c) NVIDIA Corporation. Engines built by `trtllm-bench
build --quantization FP8` ("the KV cache will automatically be set to FP8 as well") and run by `trtllm-bench
throughput` over the C++ executor: simulated under the `trtllm-cpp` preset as it stands (its max batch of
2048 and KV-cache share of 0.9, where trtllm-bench tunes the batch to the dataset and the page used 0.95),
with the requests' counts of that page's table. The A100 row (FP16) is the reference the FP8 rows are read
against. Output: benchmarks/results/fp8_max_throughput.txt.

    /tmp/venv/bin/python benchmarks/fp8_max_throughput.py [--quick]
"""
from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import numpy as np


class PublishedRun(NamedTuple):
    model: str
    hardware: str
    tensor_parallel: int
    quant: str
    input_tokens: int
    output_tokens: int
    num_requests: int
    output_tokens_per_s: float


# perf-overview.md (v0.17) "Throughput Measurements"; num_requests from its "$num_requests" table.
RUNS = (
    PublishedRun("llama-3.1-8b", "h100-sxm", 1, "fp8", 128, 2048, 3000, 21109.38),
    PublishedRun("llama-3.1-8b", "h100-sxm", 1, "fp8", 2048, 128, 3000, 3556.73),
    PublishedRun("llama-3.1-8b", "h200", 1, "fp8", 5000, 500, 1500, 3987.79),
    PublishedRun("llama-3.1-8b", "h200", 1, "fp8", 1000, 1000, 3000, 17537.96),
    PublishedRun("llama-3.1-70b", "h100-sxm", 4, "fp8", 500, 2000, 3000, 9836.7),
    PublishedRun("llama-3.1-70b", "h200", 8, "fp8", 2048, 2048, 1500, 11142.47),
    PublishedRun("llama-3.1-8b", "a100-sxm-80gb", 1, "fp16", 1000, 1000, 3000, 3786.83),
)


def simulated_output_tokens_per_s(run: PublishedRun, num_requests: int, preset: str = "trtllm-cpp") -> float:
    """Output tokens/s of `num_requests` of the run's requests sent at once to the preset's engine."""
    from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
    from infersim.roofline.quant import get_quant
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    from infersim.sim.workload import Workload

    model, hardware = get_model(run.model), get_hardware(run.hardware)
    options = StepOptions(quant=get_quant(run.quant), parallel=Parallelism(run.tensor_parallel))
    workload = Workload(np.zeros(num_requests), np.full(num_requests, run.input_tokens),
                        np.full(num_requests, run.output_tokens))
    cfg = preset_config(preset, model, hardware, options, run.input_tokens + run.output_tokens)
    return simulate(cfg, requests_from(workload)).summary["throughput_tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of each run's requests")
    args = parser.parse_args()
    print(f"{'model':14} {'GPU':14} {'TP':>2} {'quant':5} {'ISL/OSL':>10} {'measured':>9} {'predicted':>9} "
          f"{'ratio':>6} {'s':>5}")
    for run in RUNS:
        start = time.perf_counter()
        n = max(100, run.num_requests // 10) if args.quick else run.num_requests
        predicted = simulated_output_tokens_per_s(run, n)
        print(f"{run.model:14} {run.hardware:14} {run.tensor_parallel:>2} {run.quant:5} "
              f"{f'{run.input_tokens}/{run.output_tokens}':>10} {run.output_tokens_per_s:9.0f} {predicted:9.0f} "
              f"{predicted / run.output_tokens_per_s:6.2f} {time.perf_counter() - start:5.1f}", flush=True)


if __name__ == "__main__":
    main()
