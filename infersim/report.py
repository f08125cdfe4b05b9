"""Plain-text tables for the terminal, and a run's files. Nothing here prints or writes NaN or inf: a
figure that has no value (no request completed, no SLO set) is "-" on the terminal, null in JSON and an
empty cell in CSV."""
from __future__ import annotations

import math

_CSV_CHUNK_ROWS = 65_536  # rows converted to Python objects at a time: a long timeline never is at once


def si(value: float, unit: str = "") -> str:
    """1.23e9 -> '1.23 G' (SI prefixes), for FLOPs and bytes in tables."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def counted(count, noun: str) -> str:
    """'1 GPU', '3 GPUs': a count with its noun in the number it takes (plural by an 's')."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def table(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> str:
    """A plain-text table: the columns at indices `left` (prose, names) aligned left, the others (figures)
    right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def step_table(cost) -> str:
    """The per-op table of a StepCost: totals over the `count` instances of each op."""
    total = cost.time_s
    rows = [[r.name, str(r.count), si(r.flops), si(r.bytes, "B"), f"{r.timed.op.intensity_flops_per_byte:.3g}",
             f"{r.time_s * 1e3:.4f}", f"{100 * r.time_s / total:.1f}", r.timed.bound] for r in cost.rows]
    return table(["op", "count", "FLOPs", "bytes", "FLOP/B", "time_ms", "%", "bound"], rows)


def _cells(values) -> list:
    """One column's cells: floats with full precision, NaN and inf as empty cells."""
    cells = values.tolist()
    if values.dtype.kind == "f":
        return [v if math.isfinite(v) else "" for v in cells]
    return cells


def _csv(path, columns: dict) -> None:
    """Write parallel arrays as CSV columns, a chunk of rows at a time."""
    import csv
    names = list(columns)
    rows = len(columns[names[0]]) if names else 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for start in range(0, rows, _CSV_CHUNK_ROWS):
            w.writerows(zip(*(_cells(columns[n][start:start + _CSV_CHUNK_ROWS]) for n in names)))


def json_safe(value):
    """`value` with every NaN or infinite float replaced by None, so that it is strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_run(result, out_dir) -> dict:
    """summary.json (strict JSON: a figure without a value is null), requests.csv (one row per request) and
    timeline.csv (one row per step, unless the run was too long to keep one: sim.metrics) under out_dir;
    returns the paths written."""
    import json
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "requests": out / "requests.csv"}
    paths["summary"].write_text(json.dumps(json_safe(result.summary), indent=2, allow_nan=False) + "\n")
    _csv(paths["requests"], result.table)
    if result.timeline is not None:
        paths["timeline"] = out / "timeline.csv"
        _csv(paths["timeline"], result.timeline)
    return paths


def figure(value, spec: str, scale: float = 1.0) -> str:
    """`value * scale` formatted with `spec`, or "-" when there is no value (None, NaN, inf)."""
    if value is None or not math.isfinite(value):
        return "-"
    return format(value * scale, spec)


def run_summary_table(summary: dict) -> str:
    """The latency percentiles and the headline figures of a run, for the terminal."""
    rows = [[name, *(figure(summary[key][q], ".1f", 1e3) for q in ("mean", "p50", "p90", "p99"))]
            for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("ITL", "itl_s"), ("E2E", "e2e_s"),
                              ("queueing", "queueing_s"))]
    lines = [table(["latency (ms)", "mean", "p50", "p90", "p99"], rows), ""]
    s = summary
    lines.append(f"completed {s['requests_completed']}, rejected {s['requests_rejected']}, "
                 f"preemptions {s['preemptions']}; simulated {figure(s['simulated_time_s'], '.1f')} s")
    if s["requests_unfinished"]:
        lines.append(f"warning: {s['requests_unfinished']} requests never finished (the scheduler could not "
                     "place them again; the latency figures leave them out)")
    goodput = "no SLO set" if s["slo_attainment"] is None else (
        f"goodput {figure(s['goodput_requests_per_s'], '.2f')} requests/s "
        f"({figure(s['slo_attainment'], '.1f', 100)}% within SLO)")
    lines.append(f"throughput {figure(s['throughput_tokens_per_s'], ',.0f')} tokens/s, "
                 f"{figure(s['throughput_requests_per_s'], '.2f')} requests/s; {goodput}")
    pooled = ("batch_size_mean", "kv_utilization_mean", "kv_utilization_peak", "model_flops_utilization",
              "model_bandwidth_utilization")
    if any(s[key] is not None for key in pooled):  # a cascade's pools each have their own (its tier lines)
        lines.append(f"batch {figure(s['batch_size_mean'], '.1f')} sequences on average; KV cache "
                     f"{figure(s['kv_utilization_mean'], '.1f', 100)}% used on average, "
                     f"{figure(s['kv_utilization_peak'], '.1f', 100)}% at peak; MFU "
                     f"{figure(s['model_flops_utilization'], '.1f', 100)}%, MBU "
                     f"{figure(s['model_bandwidth_utilization'], '.1f', 100)}%")
    if "speculative_tokens_per_step" in s:
        lines.append(f"speculative decoding: {figure(s['speculative_tokens_per_step'], '.2f')} tokens per sequence "
                     "per decode step on average")
    return "\n".join(lines)
