"""Held-out checks on maximum-throughput serving: every row of NVIDIA's published TensorRT-LLM throughput
tables for the registry's models, simulated as `trtllm-bench throughput` ran it, predicted against measured
output tokens/s. Nothing in infersim was fitted to these rows. Two tables (`TABLES`):

- v0.17 (data/serving/trtllm-v0.17-max-throughput.csv; perf-overview.md at 258c754): the C++ executor over
  TensorRT engines built by `trtllm-bench build --quantization FP8 --dataset ...`: Llama-3.1-8B/70B/405B,
  Mistral-7B, Mixtral-8x7B; TP 1-8; H200, H100, GH200, L40S in FP8, A100 in FP16; prompts of 128 to 20,000
  tokens. Run under the `trtllm-cpp` preset with chunked context on (trtllm-bench throughput's default then:
  the `trtllm-chunked` scheduler; GH200: gptManagerBenchmark with `--enable_chunked_context`).
- v0.20 (data/serving/trtllm-v0.20-max-throughput.csv; the page as v0.20 published it): the PyTorch backend
  (`--backend pytorch`, no engine built) on ModelOpt's FP8 and NVFP4 checkpoints: Llama-3.1-8B, Llama-3.3-70B
  (Llama-3.1-70B's architecture) and Llama-3.1-405B; TP 1-8; H200 and H100 in FP8, B200 in NVFP4. Run under
  the `trtllm` preset with what trtllm-bench 0.20 sets for that backend: chunked prefill off (TorchLlmArgs
  `enable_chunked_prefill` False; the `trtllm` scheduler), the overlap scheduler on (the preset's; on by
  default from 0.20), CUDA graphs for decode-only batches up to the max batch size, padded (a batch between two
  captured sizes replays the larger and runs its rows: `trtllm_bench_graph_sizes`), an FP8 KV cache (the
  checkpoints' `kv_cache_quant_algo`).

Both: `--kv_cache_free_gpu_mem_fraction 0.95` "in majority of cases", every request at once,
GUARANTEED_NO_EVICT, and the max batch size and max tokens per step from trtllm-bench's own tuning for the
dataset (`trtllm_bench_settings`, tensorrt_llm/bench/build/tuning.py `calc_engine_setting`).

    python benchmarks/trtllm_max_throughput.py [--table v0.17|v0.20] [--fraction F] [--jobs N] [--only TEXT]

All of each row's requests are simulated (v0.17: ~4 minutes with 2 jobs; v0.20: ~2); --fraction simulates that
share of them, but never fewer than `WAVES` full batches' worth: sent at once, a run decodes as many sequences
together as it has requests up to its max batch size, so simulating fewer than a batch would time a smaller
batch than the page's (`requests_to_simulate`); --only keeps the rows whose label contains TEXT. Writes
benchmarks/results/<the table's results_stem>.{md,json,png} (the png: predicted against measured, by GPU).
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
RESULTS = REPO / "benchmarks" / "results"
KV_FRACTION = 0.95  # --kv_cache_free_gpu_mem_fraction the page used "in majority of cases"
WAVES = 4  # full batches a shortened run still simulates, so that its steady batch is the page's
# Bytes a weight and a KV element take as trtllm-bench's tuning counts them (tuning.py's table by quantization
# algorithm: NO_QUANT 2, FP8 1, NVFP4 0.5 a stored element). An NVFP4 checkpoint stores two weights in each
# uint8 and one FP8 scale per 16 weights, every element counted at 0.5 B: (1/2 + 1/16) x 0.5 = 0.28125 B a
# weight (its bf16 embedding and lm_head, counted at 0.5 B a weight, come out ~0.5 GB low on a 70B). ModelOpt's
# FP8 and NVFP4 checkpoints quantize the KV cache to FP8.
WEIGHT_BYTES = {"fp16": 2.0, "fp8": 1.0, "nvfp4": 0.28125}
KV_BYTES = {"fp16": 2, "fp8": 1, "nvfp4": 1}


class PublishedTable(NamedTuple):
    """One of NVIDIA's published throughput tables and how trtllm-bench ran it: the engine preset, and the
    scheduler (with chunked context or without) its runtime's default made it."""
    path: Path
    preset: str
    scheduler: str
    graphs_up_to_max_batch: bool  # decode-only steps up to the max batch replay padded CUDA graphs
    results_stem: str


_SERVING = REPO / "data" / "serving"
TABLES = {
    "v0.17": PublishedTable(_SERVING / "trtllm-v0.17-max-throughput.csv", "trtllm-cpp", "trtllm-chunked", False,
                            "trtllm_max_throughput"),
    "v0.20": PublishedTable(_SERVING / "trtllm-v0.20-max-throughput.csv", "trtllm", "trtllm", True,
                            "trtllm_v0.20_max_throughput"),
}


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


def read_runs(path: Path) -> list[PublishedRun]:
    with open(path, newline="") as f:
        return [PublishedRun(r["model"], r["hardware"], int(r["tensor_parallel"]), r["precision"],
                             int(r["input_tokens"]), int(r["output_tokens"]), int(r["num_requests"]),
                             float(r["output_tokens_per_s"])) for r in csv.DictReader(f)]


def trtllm_bench_settings(params: float, layers: int, kv_heads: int, head_dim: int, device_memory_gib: float,
                          tp: int, input_tokens: int, output_tokens: int, weight_bytes: float, kv_bytes: int,
                          chunked_context: bool = True) -> tuple[int, int]:
    """(max batch size, max tokens per step) as trtllm-bench picks them for a dataset
    (tensorrt_llm/bench/build/tuning.py `calc_engine_setting` and `finetune_setting`): the requests of the
    dataset's lengths that 0.95 of the GPUs' memory beside the weights holds (`weight_bytes` a parameter, K and
    V of every layer and of at least one head per GPU at `kv_bytes` an element), at most 4096, rounded up to
    32 (below 256), 128 (below 1024) or 256, at least 64; and as many tokens per step as that batch's
    prompts over its outputs, 1 + input/output tokens per request, at most 32768, rounded up to 256, 512 or
    1024 by size, at least 2048; the weights' bytes and the device memory both in GiB, as tuning.py divides
    them. Without chunked prefill (the PyTorch backend's default) the tokens are
    raised to at least the prompt plus the max batch (tensorrt_llm/bench/utils/general.py `get_settings`, as
    0.19 and 1.0 have it), so that a whole prompt fits in a step beside a full batch of decodes."""
    kv_gib_per_token = 2 * layers * max(tp, kv_heads) * head_dim * kv_bytes / 1024 ** 3
    available = device_memory_gib * tp - params * weight_bytes / 1024 ** 3
    requests = available * KV_FRACTION / kv_gib_per_token / (input_tokens + output_tokens)
    raw_batch = min(requests, 4096)
    raw_tokens = min(raw_batch * (1 + input_tokens / output_tokens), 32768)
    batch = _rounded_up(raw_batch, 64, ((256, 32), (1024, 128), (math.inf, 256)))
    tokens = _rounded_up(raw_tokens, 2048, ((4096, 256), (8192, 512), (math.inf, 1024)))
    return batch, (tokens if chunked_context else max(tokens, input_tokens + batch))


def trtllm_bench_graph_sizes(max_batch: int) -> tuple[int, ...]:
    """The decode batch sizes trtllm-bench 0.20 captures CUDA graphs at, padding on, up to its max batch
    (TorchLlmArgs' generated CUDA-graph batch sizes with padding enabled: 1, 2 and 4, 8-128 by 8, the powers of
    two beyond up to the max batch, and the max batch; 24 sizes for 4096, as TensorRT-LLM issue #6294's 0.20
    log counts them). The page's llm_options list its own sizes under the later `cuda_graph_config` key,
    which 0.20 does not read (#6294's run with that key still captured the 24)."""
    sizes = {1, 2, 4, *range(8, 129, 8), max_batch}
    power = 256
    while power < max_batch:
        sizes.add(power)
        power *= 2
    return tuple(sorted(size for size in sizes if size <= max_batch))


def _rounded_up(value: float, least: int, tiers: tuple) -> int:
    """`value` rounded up to the step of the first (limit, step) tier it is below, and at least `least`."""
    step = next(step for limit, step in tiers if value < limit)
    return max(least, step * math.ceil(value / step))


def requests_to_simulate(num_requests: int, max_batch_size: int, fraction: float) -> int:
    """How many of a row's requests to simulate: `fraction` of them, but at least `WAVES` max batches' worth
    (all of them where they come to fewer), so that the shortened run decodes batches of the page's size."""
    return min(num_requests, max(1, round(num_requests * fraction), WAVES * max_batch_size))


def simulate_run(run: PublishedRun, table: PublishedTable, fraction: float = 1.0) -> dict:
    """The run's requests sent at once to the table's preset configured as trtllm-bench ran it."""
    from infersim.roofline import Parallelism, SpecError, StepOptions, get_hardware, get_model
    from infersim.roofline.quant import get_quant
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    from infersim.sim.schedulers import SCHEDULERS
    from infersim.sim.workload import Workload

    model, hardware = get_model(run.model), get_hardware(run.hardware)
    batch, tokens = trtllm_bench_settings(model.num_params(), model.num_layers, model.num_kv_heads, model.head_dim,
                                          hardware.memory_bytes / 2 ** 30, run.tensor_parallel, run.input_tokens,
                                          run.output_tokens, WEIGHT_BYTES[run.precision], KV_BYTES[run.precision],
                                          SCHEDULERS[table.scheduler].chunked_prompts)
    n = requests_to_simulate(run.num_requests, batch, fraction)
    start = time.perf_counter()
    try:
        cfg = preset_config(table.preset, model, hardware,
                            StepOptions(quant=get_quant(run.precision), parallel=Parallelism(run.tensor_parallel)),
                            run.input_tokens + run.output_tokens)
        limits = replace(cfg.limits, max_num_seqs=batch, max_num_batched_tokens=tokens, chunk_tokens=tokens)
        cfg = replace(cfg, scheduler=table.scheduler, limits=limits,
                      kv_cache=replace(cfg.kv_cache, memory_utilization=KV_FRACTION))
        if table.graphs_up_to_max_batch:
            cfg = replace(cfg, kernels=cfg.kernels.padded_capture(trtllm_bench_graph_sizes(batch)))
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


def plot_ratios(results: list[dict], title: str, path: Path) -> None:
    """Predicted against measured output tokens/s, one point a run coloured by GPU, on log axes with the
    line of equality and the +-20% band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results if math.isfinite(r["ratio"])]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for gpu in dict.fromkeys(r["hardware"] for r in rows):
        mine = [r for r in rows if r["hardware"] == gpu]
        ax.scatter([r["output_tokens_per_s"] for r in mine], [r["predicted_output_tokens_per_s"] for r in mine],
                   s=14, alpha=0.75, label=f"{gpu} ({len(mine)})")
    measured = [r["output_tokens_per_s"] for r in rows]
    span = np.array([min(measured) / 1.5, max(measured) * 1.5])
    ax.plot(span, span, color="black", linewidth=0.8, label="predicted = measured")
    ax.fill_between(span, span * 0.8, span * 1.2, color="grey", alpha=0.15, label="within 20%")
    ax.set(xscale="log", yscale="log", xlabel="measured output tokens/s", ylabel="predicted output tokens/s",
           title=title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of each row's requests to simulate, at least 4 max batches' worth (default 1: the page's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="", help="rows whose label contains this text")
    parser.add_argument("--table", choices=TABLES, default="v0.17", help="which published table (default v0.17)")
    args = parser.parse_args()
    published = TABLES[args.table]
    runs = [r for r in read_runs(published.path) if args.only in r.label]
    start = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        simulated = pool.map(simulate_run, runs, [published] * len(runs), [args.fraction] * len(runs))
        for i, result in enumerate(simulated, 1):
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
    (RESULTS / f"{published.results_stem}.md").write_text("\n".join(group_table) + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / f"{published.results_stem}.json").write_text(json.dumps(json_safe(
        {"table": args.table, "fraction_of_requests": args.fraction, "elapsed_s": time.perf_counter() - start,
         "rows": results}), indent=1))
    plot_ratios(results, f"NVIDIA's TensorRT-LLM {args.table} throughput table: predicted vs measured",
                RESULTS / f"{published.results_stem}.png")
    print(table(["rows", "runs", "median pred/meas", "p10-p90", "within 20%"], groups))
    print(f"{len(runs)} rows in {time.perf_counter() - start:.0f} s; wrote {RESULTS / f'{published.results_stem}.md'}")


if __name__ == "__main__":
    main()
