"""What each technique buys: every baseline/variant pair of scenarios/techniques/ simulated with `infersim
compare`'s machinery at a light and a heavy load (the arrival rate overridden; everything else as the files
say), tabulated with the variant's ratio to its baseline.

    python benchmarks/techniques.py [--jobs N] [--quick]

Writes benchmarks/results/techniques.json (every run's summary) and techniques.md (the README's table).
--quick runs 300 requests per file instead of the files' own counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from infersim.compare import simulate_files
from infersim.report import json_safe

TECHNIQUES = Path(__file__).resolve().parent.parent / "scenarios" / "techniques"
RESULTS = Path(__file__).resolve().parent / "results"


class Pair(NamedTuple):
    technique: str
    baseline: str
    variant: str
    light_rate_per_s: float
    heavy_rate_per_s: float


PAIRS = [
    Pair("speculative decoding, EAGLE head (k=3, a=0.8)", "decoding-baseline", "decoding-eagle", 2, 24),
    Pair("speculative decoding, Llama-3.2-1B draft (k=4, a=0.7)", "decoding-baseline", "decoding-draft-model", 2, 24),
    Pair("prompt-lookup n-gram speculation (k=4, a=0.4)", "decoding-baseline", "decoding-ngram", 2, 24),
    Pair("early exit (copy), mean exit at 61% of the layers", "decoding-baseline", "decoding-early-exit", 2, 24),
    Pair("contrastive decoding, Llama-3.2-1B amateur", "decoding-baseline", "decoding-contrastive", 2, 24),
    Pair("parallel sampling n=4", "decoding-baseline", "decoding-parallel-sampling", 0.5, 6),
    Pair("W8A8 (SmoothQuant)", "quantization-baseline", "quantization-w8a8", 1, 5),
    Pair("W4A16 (group 128)", "quantization-baseline", "quantization-w4a16", 1, 5),
    Pair("LLM.int8()", "quantization-baseline", "quantization-llm-int8", 1, 5),
    Pair("FP8 weights, activations and KV", "quantization-baseline", "quantization-fp8", 1, 5),
    Pair("8-bit KV cache", "quantization-baseline", "quantization-kv8", 1, 5),
    Pair("4-bit KV cache", "quantization-baseline", "quantization-kv4", 1, 5),
    Pair("2:4 sparsity", "pruning-baseline", "pruning-sparse-2-4", 1, 5),
    Pair("structured pruning: Minitron-4B-Width", "pruning-baseline", "pruning-minitron-width", 1, 5),
    Pair("distillation: 70B on 4 GPUs -> 8B on 1", "distillation-baseline", "distillation-8b", 1, 5),
    Pair("cascade: 8B first, 30% escalated to the 70B (restart)", "cascade-baseline", "cascade-8b-70b", 5, 20),
]
FIGURES = (("TTFT p50", "ttft_s", "p50", 1e3, "ms"), ("TPOT p50", "tpot_s", "p50", 1e3, "ms"),
           ("TPOT p99", "tpot_s", "p99", 1e3, "ms"), ("output tok/s", "throughput_tokens_per_s", None, 1, ""),
           ("goodput req/s", "goodput_requests_per_s", None, 1, ""))


def _at_rate(stem: str, rate_per_s: float, requests: int | None, folder: Path) -> str:
    """A copy of the scenario with its Poisson rate (and, with --quick, its request count) replaced."""
    data = yaml.safe_load((TECHNIQUES / f"{stem}.yaml").read_text())
    data["workload"]["arrival"] = {"process": "poisson", "rate_per_s": rate_per_s}
    if requests:
        data["workload"]["num_requests"] = requests
    path = folder / f"{stem}@{rate_per_s:g}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _value(summary: dict, key: str, quantile: str | None) -> float | None:
    value = summary.get(key)
    return value[quantile] if quantile else value


def _cell(base: dict, variant: dict, key: str, quantile: str | None, scale: float) -> str:
    b, v = _value(base, key, quantile), _value(variant, key, quantile)
    if b is None or v is None:
        return "-"
    ratio = f" ({v / b:.2f}x)" if b else ""
    return f"{b * scale:,.1f} -> {v * scale:,.1f}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 300 if args.quick else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = sorted({(stem, rate) for p in PAIRS for stem in (p.baseline, p.variant)
                       for rate in (p.light_rate_per_s, p.heavy_rate_per_s)})
        paths = [_at_rate(stem, rate, requests, folder) for stem, rate in runs]
        start = time.perf_counter()
        results = simulate_files(paths, args.jobs, progress=lambda done, total: print(
            f"\r{done} of {total} runs", end="\n" if done == total else "", file=sys.stderr, flush=True))
        elapsed_s = time.perf_counter() - start
    summary = {run: result.summary for run, result in zip(runs, results)}
    lines = ["| technique | load (req/s) | " + " | ".join(f"{name} ({unit})" if unit else name
                                                         for name, *_, unit in FIGURES) + " |",
             "|---|--:|" + "--:|" * len(FIGURES)]
    rows = []
    for pair in PAIRS:
        for rate in (pair.light_rate_per_s, pair.heavy_rate_per_s):
            base, var = summary[(pair.baseline, rate)], summary[(pair.variant, rate)]
            lines.append(f"| {pair.technique} | {rate:g} | "
                         + " | ".join(_cell(base, var, key, q, scale) for _, key, q, scale, _ in FIGURES) + " |")
            rows.append({"technique": pair.technique, "baseline": pair.baseline, "variant": pair.variant,
                         "rate_per_s": rate, "baseline_summary": base, "variant_summary": var})
    RESULTS.mkdir(exist_ok=True)
    table = "\n".join(lines) + "\n"
    (RESULTS / "techniques.md").write_text(table)
    (RESULTS / "techniques.json").write_text(json.dumps(json_safe(
        {"requests_per_file": requests or "the file's", "elapsed_s": elapsed_s, "rows": rows}), indent=1))
    print(table)
    print(f"{len(runs)} runs in {elapsed_s:.0f} s; wrote {RESULTS / 'techniques.md'} and techniques.json")


if __name__ == "__main__":
    main()
