"""A held-out check on maximum-throughput serving: every row of NVIDIA's published TensorRT-LLM v0.17
throughput table for the registry's models (data/serving/trtllm-v0.17-max-throughput.csv: Llama-3.1-8B/70B/
405B, Mistral-7B, Mixtral-8x7B; TP 1-8; H200, H100, GH200, L40S in FP8, A100 in FP16; prompts of 128 to
20,000 tokens) simulated as the benchmark ran it, predicted against measured output tokens/s. Nothing in
infersim was fitted to these rows.

How the page ran them (NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md at 258c754): engines built
by `trtllm-bench build --quantization FP8 --dataset ...` and run by `trtllm-bench throughput` (GH200:
gptManagerBenchmark with the same engine, `--enable_chunked_context`), `--kv_cache_free_gpu_mem_fraction 0.95`
"in majority of cases", every request at once, GUARANTEED_NO_EVICT. Simulated under the `trtllm-cpp` preset
with what those settings mean:
- chunked context on (trtllm-bench throughput's default): the `trtllm-chunked` scheduler;
- the KV cache 0.95 of the memory the weights and activations leave;
- max batch size and max tokens per step from trtllm-bench's own tuning for the dataset
  (`trtllm_bench_settings`, tensorrt_llm/bench/build/tuning.py `calc_engine_setting`).

    python benchmarks/trtllm_max_throughput.py [--fraction F] [--jobs N] [--only TEXT]

All of each row's requests are simulated (~4 minutes with 2 jobs); --fraction simulates that share of them, but
never fewer than `WAVES` full batches' worth: sent at once, a run decodes as many sequences together as it
has requests up to its max batch size, so simulating fewer than a batch would time a smaller batch than the
page's (`requests_to_simulate`); --only keeps the rows whose label contains TEXT. Writes benchmarks/results/trtllm_max_throughput.{md,json}.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "data" / "serving" / "trtllm-v0.17-max-throughput.csv"
RESULTS = REPO / "benchmarks" / "results"
KV_FRACTION = 0.95  # --kv_cache_free_gpu_mem_fraction the page used "in majority of cases"
WAVES = 4  # full batches a shortened run still simulates, so that its steady batch is the page's


class PublishedRun(NamedTuple):
    model: str
    hardware: str
    tensor_parallel: int
    precision: str
    input_tokens: int
    output_tokens: int
    num_requests: int
    output_tokens_per_s: float

    @property
    def label(self) -> str:
        return (f"{self.model} {self.hardware} TP{self.tensor_parallel} {self.precision} "
                f"{self.input_tokens}/{self.output_tokens}")


def read_runs(path: Path = RUNS) -> list[PublishedRun]:
    with open(path, newline="") as f:
        return [PublishedRun(r["model"], r["hardware"], int(r["tensor_parallel"]), r["precision"],
                             int(r["input_tokens"]), int(r["output_tokens"]), int(r["num_requests"]),
                             float(r["output_tokens_per_s"])) for r in csv.DictReader(f)]


def trtllm_bench_settings(params: float, layers: int, kv_heads: int, head_dim: int, device_memory_gib: float,
                          tp: int, input_tokens: int, output_tokens: int, fp8: bool) -> tuple[int, int]:
    """(max batch size, max tokens per step) as trtllm-bench build picks them for a dataset
    (tensorrt_llm/bench/build/tuning.py `calc_engine_setting` and `finetune_setting`): the requests of the
    dataset's lengths that 0.95 of the GPUs' memory beside the weights holds (weights at 1 B a parameter in
    FP8, 2 B in fp16; K and V of every layer and of at least one head per GPU), at most 4096, rounded up to
    32 (below 256), 128 (below 1024) or 256, at least 64; and as many tokens per step as that batch's
    prompts over its outputs, 1 + input/output tokens per request, at most 32768, rounded up to 256, 512 or
    1024 by size, at least 2048. Its units as the tool has them: parameters in billions times bytes (GB)
    against the device memory in GiB."""
    bytes_per_elem = 1 if fp8 else 2
    kv_gib_per_token = 2 * layers * max(tp, kv_heads) * head_dim * bytes_per_elem / 1024 ** 3
    available = device_memory_gib * tp - params / 1e9 * bytes_per_elem
    requests = available * KV_FRACTION / kv_gib_per_token / (input_tokens + output_tokens)
    raw_batch = min(requests, 4096)
    raw_tokens = min(raw_batch * (1 + input_tokens / output_tokens), 32768)
    batch = _rounded_up(raw_batch, 64, ((256, 32), (1024, 128), (math.inf, 256)))
    tokens = _rounded_up(raw_tokens, 2048, ((4096, 256), (8192, 512), (math.inf, 1024)))
    return batch, tokens


def _rounded_up(value: float, least: int, tiers: tuple) -> int:
    """`value` rounded up to the step of the first (limit, step) tier it is below, and at least `least`."""
    step = next(step for limit, step in tiers if value < limit)
    return max(least, step * math.ceil(value / step))


def requests_to_simulate(num_requests: int, max_batch_size: int, fraction: float) -> int:
    """How many of a row's requests to simulate: `fraction` of them, but at least `WAVES` max batches' worth
    (all of them where they come to fewer), so that the shortened run decodes batches of the page's size."""
    return min(num_requests, max(1, round(num_requests * fraction), WAVES * max_batch_size))


def simulate_run(run: PublishedRun, fraction: float = 1.0) -> dict:
    """The run's requests sent at once to the trtllm-cpp preset configured as trtllm-bench runs it."""
    from infersim.roofline import Parallelism, SpecError, StepOptions, get_hardware, get_model
    from infersim.roofline.quant import get_quant
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    from infersim.sim.schedulers import SchedulerLimits
    from infersim.sim.workload import Workload

    model, hardware = get_model(run.model), get_hardware(run.hardware)
    batch, tokens = trtllm_bench_settings(model.num_params(), model.num_layers, model.num_kv_heads, model.head_dim,
                                          hardware.memory_bytes / 2 ** 30, run.tensor_parallel, run.input_tokens,
                                          run.output_tokens, run.precision == "fp8")
    n = requests_to_simulate(run.num_requests, batch, fraction)
    start = time.perf_counter()
    try:
        cfg = preset_config("trtllm-cpp", model, hardware,
                            StepOptions(quant=get_quant(run.precision), parallel=Parallelism(run.tensor_parallel)),
                            run.input_tokens + run.output_tokens)
        cfg = replace(cfg, scheduler="trtllm-chunked",
                      limits=replace(cfg.limits, max_num_seqs=batch, max_num_batched_tokens=tokens, chunk_tokens=tokens),
                      kv_cache=replace(cfg.kv_cache, memory_utilization=KV_FRACTION))
        summary = simulate(cfg, requests_from(Workload(np.zeros(n), np.full(n, run.input_tokens),
                                                       np.full(n, run.output_tokens)))).summary
        predicted, why = summary["throughput_tokens_per_s"], ""
        if summary["requests_rejected"]:
            why = f"{summary['requests_rejected']} of {n} requests refused"
    except SpecError as err:
        predicted, why, summary = math.nan, str(err), {}
    return {**run._asdict(), "label": run.label, "max_batch_size": batch, "max_num_tokens": tokens,
            "requests_simulated": n, "predicted_output_tokens_per_s": predicted,
            "ratio": predicted / run.output_tokens_per_s, "batch_size_mean": summary.get("batch_size_mean"),
            "note": why, "wall_s": time.perf_counter() - start}


def summary_rows(results: list[dict]) -> list[list[str]]:
    """Median and 10th-90th percentile of predicted / measured, and the share within 20%, by group."""
    kinds = ({"all": []}, {}, {}, {}, {})  # all; by GPU, model, tensor parallelism, lengths (in the table's order)
    for r in results:
        if not math.isfinite(r["ratio"]):
            continue
        for kind, key in zip(kinds, ("all", r["hardware"], r["model"], f"TP{r['tensor_parallel']}",
                                     f"{r['input_tokens']}/{r['output_tokens']}")):
            kind.setdefault(key, []).append(r["ratio"])
    rows = []
    for key, ratios in (item for kind in kinds for item in kind.items()):
        x = np.array(ratios)
        rows.append([key, str(x.size), f"{np.median(x):.2f}", f"{np.percentile(x, 10):.2f}-{np.percentile(x, 90):.2f}",
                     f"{np.mean(np.abs(x - 1) <= 0.2):.0%}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of each row's requests to simulate, at least 4 max batches' worth (default 1: the page's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="", help="rows whose label contains this text")
    args = parser.parse_args()
    runs = [r for r in read_runs() if args.only in r.label]
    start = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, result in enumerate(pool.map(simulate_run, runs, [args.fraction] * len(runs)), 1):
            results.append(result)
            print(f"\r{i} of {len(runs)} rows", end="\n" if i == len(runs) else "", file=sys.stderr, flush=True)
    from infersim.report import json_safe, table
    lines = ["| run | max batch / tokens | measured tok/s | predicted | ratio |", "|---|---|--:|--:|--:|"]
    lines += [f"| {r['label']} | {r['max_batch_size']} / {r['max_num_tokens']} | {r['output_tokens_per_s']:,.0f} | "
              f"{r['predicted_output_tokens_per_s']:,.0f} | {r['ratio']:.2f}{' (' + r['note'] + ')' if r['note'] else ''} |"
              for r in results]
    groups = summary_rows(results)
    group_table = ["| rows | runs | median predicted / measured | 10th-90th percentile | within 20% |",
                   "|---|--:|--:|--:|--:|"] + ["| " + " | ".join(row) + " |" for row in groups]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trtllm_max_throughput.md").write_text("\n".join(group_table) + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "trtllm_max_throughput.json").write_text(json.dumps(json_safe(
        {"fraction_of_requests": args.fraction, "elapsed_s": time.perf_counter() - start, "rows": results}), indent=1))
    print(table(["rows", "runs", "median pred/meas", "p10-p90", "within 20%"], groups))
    print(f"{len(runs)} rows in {time.perf_counter() - start:.0f} s; wrote {RESULTS / 'trtllm_max_throughput.md'}")


if __name__ == "__main__":
    main()
