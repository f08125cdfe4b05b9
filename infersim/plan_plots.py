"""The capacity plan's figures, each drawn from plan.json's candidates alone: latency against offered load,
the throughput-interactivity frontier, cost per million output tokens, KV-cache use and batch size over
time at the operating point, and the roofline chart of one configuration's ops. A candidate keeps its
colour in every figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from infersim.plots import _plain, _pyplot, label_points

MEETS, FAILS, NO_FIGURE = "tab:green", "tab:red", "lightgrey"
# Latency panels: the load curve's keys are f"{metric}_{quantile}_s", the SLO's are f"{metric}_s".
LATENCY_PANELS = (("ttft", "TTFT", "s", 1.0, ("p50", "p99")), ("tpot", "TPOT", "ms", 1e3, ("p50", "p99")),
                  ("e2e", "E2E", "s", 1.0, ("p99",)))
QUANTILE_STYLE = {"p50": "--", "p99": "-"}


def slo_bounds_s(slo: dict, metric: str) -> dict[str, float]:
    """The SLO's bounds on one latency (`metric` as in plan.json: "ttft_s", "tpot_s", "e2e_s"), by quantile."""
    bounds = slo.get(metric)
    return dict(bounds) if isinstance(bounds, dict) else {}


def duration_text(seconds: float) -> str:
    """0.1 -> '100 ms', 2.0 -> '2 s': a bound as teams write it."""
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1e3:g} ms"


def colours(candidates: list[dict]) -> dict[str, str]:
    """A colour per candidate, in plan order, kept across figures."""
    return {c["name"]: f"C{i % 10}" for i, c in enumerate(candidates)}


def plot_latency_vs_load(candidates: list[dict], slo: dict, colour: dict[str, str], path: Path) -> None:
    """TTFT and TPOT (p50 dashed, p99 solid) against offered load per replica, a line per candidate, with the
    SLO's bounds as dotted black lines; an E2E panel is added when the SLO bounds E2E. A dotted vertical line
    in the candidate's colour marks its maximum sustainable rate."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    panels = [p for p in LATENCY_PANELS if p[0] != "e2e" or slo_bounds_s(slo, "e2e_s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (metric, label, unit, scale, quantiles) in zip(axes[0], panels):
        for c in candidates:
            curve = sorted(c["load_curve"], key=lambda point: point["rate_per_s"])
            rates = [point["rate_per_s"] for point in curve]
            for q in quantiles:
                ax.plot(rates, [_or_nan(point.get(f"{metric}_{q}_s")) * scale for point in curve],
                        QUANTILE_STYLE[q], color=colour[c["name"]], lw=1.4, marker="o", ms=3)
            max_rate = (c.get("max_rate_per_replica") or {}).get("value")
            if max_rate is not None:
                ax.axvline(max_rate, color=colour[c["name"]], ls=":", lw=0.9)
        for q, bound_s in slo_bounds_s(slo, f"{metric}_s").items():
            ax.axhline(bound_s * scale, color="k", ls=":", lw=1.2)
            ax.annotate(f"SLO {q} {label} {duration_text(bound_s)}", (0.99, bound_s * scale), ha="right",
                        xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=7)
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("offered load per replica (requests/s)")
        ax.set_ylabel(f"{label} ({unit})")
        ax.set_title(f"{label} vs offered load", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
    handles = [Line2D([], [], color=colour[c["name"]], lw=2, label=_plain(c["name"])) for c in candidates]
    handles += [Line2D([], [], color="grey", ls=style, label=q) for q, style in QUANTILE_STYLE.items()]
    handles += [Line2D([], [], color="grey", ls=":", label="max sustainable rate")]
    axes[0][0].legend(handles=handles, fontsize=7)
    fig.suptitle("latency vs offered load per replica (dotted black: the SLO)", fontsize=11)
    _save(fig, path)


def plot_frontier(candidates: list[dict], slo: dict, colour: dict[str, str], path: Path) -> None:
    """Output tokens/s per GPU against tokens/s per user over a concurrency sweep (the frontier public GPU
    benchmarks such as InferenceMAX plot), a line per candidate, filled where the point meets the SLOs. A
    TPOT bound b is drawn as the least interactivity it allows, 1/b tokens/s per user."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for c in candidates:
        points = sorted(c["frontier"], key=lambda point: point["concurrency"])
        x = [point["output_tokens_per_s_per_user"] for point in points]
        y = [point["output_tokens_per_s_per_gpu"] for point in points]
        ax.plot(x, y, "-", color=colour[c["name"]], lw=1.4, label=_plain(c["name"]))
        for point, xi, yi in zip(points, x, y):
            ax.plot(xi, yi, "o", ms=5, color=colour[c["name"]],
                    markerfacecolor=colour[c["name"]] if point["meets_slo"] else "white")
        for point in (points[0], points[-1]):
            ax.annotate(f"{point['concurrency']}", (point["output_tokens_per_s_per_user"],
                                                     point["output_tokens_per_s_per_gpu"]),
                        xytext=(4, 3), textcoords="offset points", fontsize=7, color=colour[c["name"]])
    for q, bound_s in slo_bounds_s(slo, "tpot_s").items():
        ax.axvline(1 / bound_s, color="k", ls=":", lw=1.2,
                   label=f"SLO {q} TPOT {duration_text(bound_s)}: at least {1 / bound_s:.3g} tokens/s per user")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("interactivity: output tokens/s per user")
    ax.set_ylabel("throughput: output tokens/s per GPU")
    ax.set_title("throughput vs interactivity (filled: meets the SLOs; numbers: concurrency)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    _save(fig, path)


def plot_cost(candidates: list[dict], chosen: str | None, path: Path) -> None:
    """Cost per million output tokens at the target rate, a bar per candidate from cheapest to dearest,
    green where it meets the SLOs and red where it does not; a candidate without a cost is named with its
    status."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    priced = sorted((c for c in candidates if c.get("cost_per_million_output_tokens") is not None),
                    key=lambda c: c["cost_per_million_output_tokens"])
    unpriced = [c for c in candidates if c.get("cost_per_million_output_tokens") is None]
    order = priced + unpriced
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.55 * len(order)))
    y = np.arange(len(order))[::-1]
    costs = [c.get("cost_per_million_output_tokens") or 0.0 for c in order]
    bars = ax.barh(y, costs, color=[NO_FIGURE if c in unpriced else MEETS if c.get("meets_slo") else FAILS
                                    for c in order])
    ax.bar_label(bars, labels=[f"{c['status']}: no cost" if c in unpriced else
                               f"${c['cost_per_million_output_tokens']:.3g}/M" for c in order],
                 fontsize=8, padding=3)
    ax.set_yticks(y, [_plain(c["name"]) + (" (chosen)" if c["name"] == chosen else "") for c in order],
                  fontsize=8)
    ax.set_xlim(0, max(costs + [1e-9]) * 1.3)
    ax.set_xlabel("cost per million output tokens at the target rate ($)")
    ax.set_title("cost per million output tokens, by whether the candidate meets the SLOs", fontsize=10)
    ax.legend(handles=[Patch(color=MEETS, label="meets the SLOs"), Patch(color=FAILS, label="fails the SLOs"),
                       Patch(color=NO_FIGURE, label="could not run")], fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.2)
    _save(fig, path)


def plot_operating_point(candidate: dict, path: Path) -> None:
    """KV-cache use and batch size over simulated time at the candidate's operating point."""
    plt = _pyplot()
    point = candidate["operating_point"]
    timeline = point["timeline"]
    fig, (kv, batch) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True)
    kv.plot(timeline["time_s"], 100 * np.asarray(timeline["kv_utilization"], dtype=float), lw=1,
            drawstyle="steps-post", color="C0")
    kv.set(ylabel="KV cache in use (%)", ylim=(0, 105), title="KV-cache use")
    batch.plot(timeline["time_s"], timeline["batch_size"], lw=1, drawstyle="steps-post", color="C1")
    batch.set(xlabel="simulated time (s)", ylabel="sequences in the batch", title="batch size")
    for ax in (kv, batch):
        ax.grid(True, alpha=0.2)
    fig.suptitle(f"{candidate['name']} at {point['rate_per_s']:.3g} requests/s per replica", fontsize=11,
                 parse_math=False)
    _save(fig, path)


def plot_roofline(candidate: dict, path: Path) -> None:
    """The candidate's prefill and decode ops on a log-log roofline chart: attained FLOP/s against arithmetic
    intensity under min(peak, intensity x bandwidth) (Williams, Waterman and Patterson, "Roofline", CACM
    2009, Fig. 1), with the ridge point peak / bandwidth marked."""
    plt = _pyplot()
    roof = candidate["roofline"]
    peak, bandwidth = roof["peak_flops_per_s"], roof["bandwidth_bytes_per_s"]
    ridge = peak / bandwidth
    ops = [op for op in roof["ops"] if op["intensity_flops_per_byte"] > 0 and op["achieved_flops_per_s"] > 0]
    intensity = [op["intensity_flops_per_byte"] for op in ops]
    grid = np.logspace(np.log10(min(intensity + [ridge]) / 2), np.log10(max(intensity + [ridge]) * 4), 200)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.plot(grid, np.minimum(peak, grid * bandwidth), "k-", lw=1.5, label="roof: min(peak, intensity x bandwidth)")
    ax.axvline(ridge, color="grey", ls=":", lw=1, label=f"ridge point: {ridge:.3g} FLOP/byte")
    phases = (("prefill", "o", "tab:orange"), ("decode", "s", "tab:blue"))
    for phase, marker, colour in phases:
        mine = [op for op in ops if op["phase"] == phase]
        ax.scatter([op["intensity_flops_per_byte"] for op in mine], [op["achieved_flops_per_s"] for op in mine],
                   marker=marker, color=colour, s=32, zorder=3, label=f"{phase} ops")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(f"{candidate['name']} on the roofline of {candidate['hardware']}", fontsize=10, parse_math=False)
    avoid = [ax.legend(fontsize=7, loc="lower right")]
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    for phase, _, colour in phases:  # ops on one spot share a label; no label covers another (plots.label_points)
        mine = [op for op in ops if op["phase"] == phase]
        labels = label_points(ax, [op["intensity_flops_per_byte"] for op in mine],
                              [op["achieved_flops_per_s"] for op in mine], [_plain(op["name"]) for op in mine],
                              avoid=avoid)
        for label in labels:
            label.set_color(colour)
        avoid += labels
    _save(fig, path)


def write_plots(plan: dict, focus: dict | None, out_dir: Path) -> dict[str, Path]:
    """Every figure the plan has data for, as PNG files under out_dir; `focus` (the chosen candidate, or the
    closest) is the one whose operating point and roofline are drawn. Returns the paths by figure name."""
    candidates = plan["candidates"]
    colour = colours(candidates)
    paths: dict[str, Path] = {}
    with_curves = [c for c in candidates if c.get("load_curve")]
    if with_curves:
        paths["latency_vs_load"] = out_dir / "latency_vs_load.png"
        plot_latency_vs_load(with_curves, plan["slo"], colour, paths["latency_vs_load"])
    with_frontier = [c for c in candidates if c.get("frontier")]
    if with_frontier:
        paths["frontier"] = out_dir / "frontier.png"
        plot_frontier(with_frontier, plan["slo"], colour, paths["frontier"])
    if any(c.get("cost_per_million_output_tokens") is not None for c in candidates):
        paths["cost"] = out_dir / "cost.png"
        plot_cost(candidates, plan.get("chosen"), paths["cost"])
    if focus is not None and (focus.get("operating_point") or {}).get("timeline"):
        paths["operating_point"] = out_dir / "operating_point.png"
        plot_operating_point(focus, paths["operating_point"])
    if focus is not None and (focus.get("roofline") or {}).get("ops"):
        paths["roofline"] = out_dir / "roofline.png"
        plot_roofline(focus, paths["roofline"])
    return paths


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2 and 5 times each power of ten on a log axis, written plainly (50, not 5x10^1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _or_nan(value) -> float:
    """A load-curve figure, NaN where the plan has none (a gap in the line rather than a crash)."""
    return float("nan") if value is None else value


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
