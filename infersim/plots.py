"""Figures: the roofline chart of a step's ops, and predicted vs measured times of a profile. Titles carry
names users wrote, so they are drawn as plain text (`parse_math=False`: a `$` starts no TeX formula)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_roofline(cost, hw, path: Path | str, title: str, dtype: str = "fp16") -> None:
    """Ops of one step on a log-log roofline chart: attained FLOP/s against arithmetic intensity."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points = [(r.timed.op.intensity_flops_per_byte, r.flops / r.time_s, r.name, r.timed.bound)
              for r in cost.rows if r.flops > 0 and r.bytes > 0]
    x_lo = min([p[0] for p in points] + [0.1]) / 2
    x_hi = max([p[0] for p in points] + [hw.ridge_point_flops_per_byte(dtype) * 4]) * 2
    xs = np.logspace(np.log10(x_lo), np.log10(x_hi), 200)
    bw = hw.memory_bandwidth_bytes_per_s
    peak = hw.peak(dtype)
    ax.plot(xs, np.minimum(peak, xs * bw), "k--", lw=1, label=f"datasheet roof ({dtype})")
    ax.plot(xs, np.minimum(peak * hw.compute_efficiency, xs * bw * hw.memory_efficiency), "k-", lw=1.5,
            label="effective roof (efficiency factors)")
    ax.axvline(hw.ridge_point_flops_per_byte(dtype), color="grey", lw=0.8, ls=":")
    colors = {"compute": "tab:red", "memory": "tab:blue"}
    labelled = set()
    for x, y, name, bound in points:
        ax.scatter(x, y, color=colors.get(bound, "tab:green"), s=30, zorder=3)
        if name not in labelled:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
            labelled.add(name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profile(samples: dict, hw, path: Path | str, title: str) -> None:
    """Predicted vs measured time of every profiled op and row, with y = x and a +-15% band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    lo, hi = np.inf, 0.0
    for op, s in samples.items():
        pred = s.predict_s(hw)
        ax.scatter(s.measured_s * 1e3, pred * 1e3, s=6, alpha=0.5, label=op)
        lo, hi = min(lo, s.measured_s.min(), pred.min()), max(hi, s.measured_s.max(), pred.max())
    xs = np.array([lo, hi]) * 1e3
    ax.plot(xs, xs, "k-", lw=1)
    ax.fill_between(xs, xs * 0.85, xs * 1.15, color="grey", alpha=0.2, label="+-15%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("roofline prediction (ms)")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.legend(fontsize=7, markerscale=2, ncol=2)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_run(result, path: Path | str, title: str) -> None:
    """Batch size, KV-cache use and queue over simulated time, and the latency distributions."""
    plt = _pyplot()
    tl, t = result.timeline, result.table
    done = t["state"] == "done"
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    over_time = ((axes[0, 0], "batch_seqs", 1, "sequences in the step", "batch size", "C0"),
                 (axes[0, 1], "kv_blocks_used", 100 / result.total_blocks, "% of KV blocks in use", "KV cache", "C0"),
                 (axes[1, 0], "queue_len", 1, "waiting requests", "queue", "C3"))
    for ax, column, scale, ylabel, title_text, color in over_time:
        ax.set(xlabel="simulated time (s)", ylabel=ylabel, title=title_text)
        if tl is None:  # too many steps to keep (sim.metrics): the summary still has the means and peaks
            ax.text(0.5, 0.5, "run too long to keep\na per-step timeline", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        ax.plot(tl["start_s"], scale * tl[column], lw=0.6, drawstyle="steps-post", color=color)
    axes[0, 1].set_ylim(0, 105)
    ax = axes[1, 1]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        v = np.sort(t[key][done & np.isfinite(t[key])])
        if len(v):
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
    ax.set(xscale="log", xlabel="seconds", ylabel="fraction of requests", title="latency CDF")
    if done.any():
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no request completed", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, parse_math=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_validation(rows: list[dict], hw, out_dir: Path, title: str) -> list[Path]:
    """measured_vs_predicted.png (log-log, y = x and a +-25% band) and roofline.png (the kernels placed on
    the device's roofline chart)."""
    plt = _pyplot()
    tolerance = 0.25
    paths = [out_dir / "measured_vs_predicted.png", out_dir / "roofline.png"]
    rows = [r for r in rows if np.isfinite(r["measured_s"])]  # failed kernels have no time to place
    kernels = sorted({r["kernel"] for r in rows})
    fig, ax = plt.subplots(figsize=(7, 6))
    lo = min(min(r["predicted_s"], r["measured_s"]) for r in rows) / 2
    hi = max(max(r["predicted_s"], r["measured_s"]) for r in rows) * 2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=1, label="measured = predicted")
    ax.fill_between(xs, xs * (1 - tolerance), xs * (1 + tolerance), color="grey", alpha=0.2, label="+-25%")
    for i, kernel in enumerate(kernels):
        sel = [r for r in rows if r["kernel"] == kernel]
        ax.scatter([r["predicted_s"] for r in sel], [r["measured_s"] for r in sel], s=24, label=kernel,
                   marker="osD^v<>p"[i % 8])
    ax.set(xscale="log", yscale="log", xlabel="roofline prediction (s)", ylabel="measured (s)")
    ax.set_title(title, parse_math=False)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5.5))
    dtypes = sorted({r["dtype"] for r in rows if r["dtype"] in hw.peak_flops_per_s}, key=hw.peak)
    intensity = [r["flops"] / r["bytes"] for r in rows]
    ridge = max((hw.ridge_point_flops_per_byte(d) for d in dtypes), default=max(intensity))
    x_lo, x_hi = min(intensity) / 2, max(max(intensity), ridge * 4) * 2
    grid = np.logspace(np.log10(x_lo), np.log10(x_hi), 200)
    for dtype, style in zip(dtypes, ("k-", "k--", "k:", "k-.")):  # a roof per dtype the kernels' products use
        ax.plot(grid, np.minimum(hw.peak(dtype) * hw.compute_efficiency,
                                 grid * hw.memory_bandwidth_bytes_per_s * hw.memory_efficiency), style, lw=1,
                label=f"roof ({dtype})")
    for i, kernel in enumerate(kernels):
        sel = [r for r in rows if r["kernel"] == kernel]
        ax.scatter([r["flops"] / r["bytes"] for r in sel], [r["achieved_flops_per_s"] for r in sel], s=24,
                   label=kernel, marker="osD^v<>p"[i % 8])
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved FLOP/s")
    ax.set_title(f"kernels on the roofline of {hw.name}", parse_math=False)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def plot_serving(comparisons: list, path: Path | str, title: str) -> None:
    """Mean TTFT and ITL against request rate per configuration, measured (dots) and simulated (lines), and
    their 99th percentiles (hollow dots, dashed lines) where the runs measured them; runs of unbounded rate
    are drawn at twice the highest finite rate."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    configs: dict = {}
    for c in comparisons:
        configs.setdefault(c.run.config_key, []).append(c)
    finite = [c.run.request_rate_per_s for c in comparisons if np.isfinite(c.run.request_rate_per_s)]
    unbounded_at = 2 * max(finite) if finite else 1.0
    for i, (label, runs) in enumerate(sorted(configs.items())):
        runs = sorted(runs, key=lambda c: c.run.request_rate_per_s)
        rates = [c.run.request_rate_per_s if np.isfinite(c.run.request_rate_per_s) else unbounded_at for c in runs]
        color = f"C{i % 10}"
        for ax, measured, predicted in ((axes[0], "mean_ttft_ms", "ttft_ms"), (axes[1], "mean_itl_ms", "itl_ms")):
            ax.plot(rates, [getattr(c, predicted) for c in runs], "-", color=color, lw=1.2, label=label)
            ax.plot(rates, [getattr(c.run, measured) for c in runs], "o", color=color, ms=4)
            tail = [getattr(c.run, f"p99_{predicted}") for c in runs]
            if any(t is not None for t in tail):
                ax.plot(rates, [getattr(c, f"p99_{predicted}") for c in runs], "--", color=color, lw=1)
                ax.plot(rates, [np.nan if t is None else t for t in tail], "o", color=color, ms=5, mfc="none")
    tails = any(c.run.p99_ttft_ms is not None or c.run.p99_itl_ms is not None for c in comparisons)
    for ax, name in ((axes[0], "TTFT (ms)"), (axes[1], "ITL (ms)")):
        name = f"{name}: mean, p99 dashed" if tails else f"mean {name}"
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("request rate (requests/s; rightmost: all at once)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.2)
    axes[0].legend(fontsize=7, title="lines: simulated, dots: measured" + ("; dashed, hollow: p99" if tails else ""),
                   title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ratios(names: list[str], panels: dict, path: Path | str, title: str) -> None:
    """Grouped bars of each scenario's figures as ratios to the first scenario's (`names[0]`), a panel per
    entry of `panels` (panel title -> {figure label -> a ratio per scenario after the first, None where
    there is none}). Bars start at 1 on a log axis, so 2x and 0.5x stand out equally."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, NullFormatter
    others = names[1:]
    bars_across = sum(len(figures) for figures in panels.values()) * (1 + 0.3 * len(others))
    fig, axes = plt.subplots(1, len(panels), figsize=(2 + 0.75 * bars_across, 5), squeeze=False,
                             width_ratios=[len(figures) for figures in panels.values()])
    width = 0.8 / len(others)
    for ax, (panel, figures) in zip(axes[0], panels.items()):
        ratios = np.array([[np.nan if r is None else r for r in per] for per in figures.values()], dtype=float)
        x = np.arange(len(figures))
        for i, name in enumerate(others):
            bars = ax.bar(x + (i - (len(others) - 1) / 2) * width, ratios[:, i] - 1, width, bottom=1,
                          color=f"C{(i + 1) % 10}", label=_plain(name))
            ax.bar_label(bars, labels=["" if np.isnan(r) else f"{r:.3g}x" if r < 1000 else f"{r:,.0f}x"
                                                 for r in ratios[:, i]], fontsize=7)
        shown = ratios[np.isfinite(ratios) & (ratios > 0)]
        spread = max(1.25, *(np.maximum(shown, 1 / shown) if len(shown) else [1])) ** 1.25
        ax.set_yscale("log")
        ax.set_ylim(1 / spread, spread)
        as_ratio = FuncFormatter(lambda v, _: f"{v:g}x")
        ax.yaxis.set_major_formatter(as_ratio)
        ax.yaxis.set_minor_formatter(as_ratio if spread < 10 else NullFormatter())  # within a decade: 2x, 5x too
        ax.axhline(1, color="k", lw=1)
        ax.set_xticks(x, list(figures), fontsize=7)
        ax.set_ylabel(f"ratio to {_plain(names[0])}")
        ax.set_title(panel, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.2)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10, parse_math=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain(text: str) -> str:
    """A name drawn as itself in a legend or axis label, where a pair of `$` would start a TeX formula."""
    return text.replace("$", r"\$")
