"""Plain-text tables for the terminal."""
from __future__ import annotations


def si(value: float, unit: str = "") -> str:
    """1.23e9 -> '1.23 G' (SI prefixes), for FLOPs and bytes in tables."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def step_table(cost) -> str:
    """The per-op table of a StepCost: totals over the `count` instances of each op."""
    total = cost.time_s
    rows = [[r.name, str(r.count), si(r.flops), si(r.bytes, "B"), f"{r.timed.op.intensity_flops_per_byte:.3g}",
             f"{r.time_s * 1e3:.4f}", f"{100 * r.time_s / total:.1f}", r.timed.bound] for r in cost.rows]
    return table(["op", "count", "FLOPs", "bytes", "FLOP/B", "time_ms", "%", "bound"], rows)


def _csv(path, columns: dict) -> None:
    """Write parallel arrays as CSV columns (floats with full precision)."""
    import csv
    names = list(columns)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        w.writerows(zip(*(columns[n].tolist() for n in names)))


def write_run(result, out_dir) -> dict:
    """summary.json, requests.csv (one row per request) and timeline.csv (one row per step) under out_dir;
    returns the paths written."""
    import json
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "requests": out / "requests.csv", "timeline": out / "timeline.csv"}
    paths["summary"].write_text(json.dumps(result.summary, indent=2, allow_nan=True) + "\n")
    _csv(paths["requests"], result.table)
    _csv(paths["timeline"], result.timeline)
    return paths


def run_summary_table(summary: dict) -> str:
    """The latency percentiles and the headline figures of a run, for the terminal."""
    rows = [[name, *("-" if summary[key][q] is None else f"{summary[key][q] * 1e3:.1f}" for q in ("mean", "p50", "p90", "p99"))]
            for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s"),
                              ("queueing", "queueing_s"))]
    lines = [table(["latency (ms)", "mean", "p50", "p90", "p99"], rows), ""]
    lines.append(f"completed {summary['requests_completed']}, rejected {summary['requests_rejected']}, "
                 f"preemptions {summary['preemptions']}; simulated {summary['simulated_time_s']:.1f} s")
    goodput = ("no SLO set" if summary["slo_attainment"] is None else
               f"goodput {summary['goodput_requests_per_s']:.2f} requests/s ({100 * summary['slo_attainment']:.1f}% within SLO)")
    lines.append(f"throughput {summary['throughput_tokens_per_s']:,.0f} tokens/s, "
                 f"{summary['throughput_requests_per_s']:.2f} requests/s; {goodput}")
    lines.append(f"batch {summary['batch_size_mean']:.1f} sequences on average; KV cache {100 * summary['kv_utilization_mean']:.1f}% "
                 f"used on average, {100 * summary['kv_utilization_peak']:.1f}% at peak; MFU "
                 f"{100 * summary['model_flops_utilization']:.1f}%, MBU {100 * summary['model_bandwidth_utilization']:.1f}%")
    return "\n".join(lines)
