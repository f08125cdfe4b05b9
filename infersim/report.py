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
