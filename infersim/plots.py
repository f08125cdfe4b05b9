"""Figures: the roofline chart of a step's ops, and predicted vs measured times of a profile. Titles carry
names users wrote, so they are drawn as plain text (`parse_math=False`: a `$` starts no TeX formula)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_roofline(cost, hw, path: Path | str, title: str, dtype: str = "fp16") -> None:
    """Ops of one step on a log-log roofline chart: attained FLOP/s against arithmetic intensity."""
    _save(roofline_figure(cost, hw, title, dtype), path, dpi=120)


def roofline_figure(cost, hw, title: str, dtype: str = "fp16"):
    """The figure `plot_roofline` saves: the datasheet and effective roofs (Williams, Waterman and Patterson,
    "Roofline", CACM 2009, Fig. 1) and a dot per op, ops at (nearly) one spot sharing one label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    ops = [r for r in cost.rows if r.flops > 0 and r.bytes > 0]
    intensity = np.array([r.timed.op.intensity_flops_per_byte for r in ops])
    attained = np.array([r.flops / r.time_s for r in ops])
    x_lo = min([*intensity, 0.1]) / 2
    x_hi = max([*intensity, hw.ridge_point_flops_per_byte(dtype) * 4]) * 2
    xs = np.logspace(np.log10(x_lo), np.log10(x_hi), 200)
    bw = hw.memory_bandwidth_bytes_per_s
    peak = hw.peak(dtype)
    ax.plot(xs, np.minimum(peak, xs * bw), "k--", lw=1, label=f"datasheet roof ({dtype})")
    ax.plot(xs, np.minimum(peak * hw.compute_efficiency, xs * bw * hw.memory_efficiency), "k-", lw=1.5,
            label="effective roof (efficiency factors)")
    ax.axvline(hw.ridge_point_flops_per_byte(dtype), color="grey", lw=0.8, ls=":")
    colors = {"compute": "tab:red", "memory": "tab:blue"}
    ax.scatter(intensity, attained, color=[colors.get(r.timed.bound, "tab:green") for r in ops], s=30, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(title, fontsize=10, parse_math=False)
    legend = ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()  # before the labels: they are placed in the axes' final display coordinates
    label_points(ax, intensity, attained, [_plain(r.name) for r in ops], avoid=[legend])
    return fig


MERGE_WITHIN_PT = 6.0  # dots closer than this (in points on the page) read as one spot and share a label
LABEL_OFFSETS_PT = [(dx, dy) for reach in (5, 14, 26, 40) for dx, dy in
                    ((reach, reach * 0.6), (reach, -reach * 0.6), (-reach, reach * 0.6), (-reach, -reach * 0.6),
                     (0, reach * 1.2), (0, -reach * 1.2))]  # nearest first; past the first ring a leader line


def label_points(ax, xs, ys, names: list[str], avoid=(), fontsize: float = 7) -> list:
    """Labels dots without overlap: dots within MERGE_WITHIN_PT of each other (single linkage, measured on the
    page) share one label listing their names once each; each label takes the nearest of LABEL_OFFSETS_PT
    that covers no other label, no dot, no line of the axes and no artist of `avoid`, and stays inside the
    axes (the least covering one when none is free), joined to its spot by a thin leader line when set off.
    Call it once the axes' limits and layout are final. Returns the label artists."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    pt_px = fig.dpi / 72
    at_px = ax.transData.transform(np.column_stack([xs, ys]))
    dot_px = 3 * pt_px  # a marker of size s=30 is ~5.5 points across
    line_px = np.concatenate([np.empty((0, 2))] + [_dense_path_px(line, 2 * pt_px) for line in ax.get_lines()])
    taken = np.vstack([np.reshape([a.get_window_extent(renderer).extents for a in avoid], (-1, 4)),
                       np.hstack([at_px - dot_px, at_px + dot_px]),
                       np.hstack([line_px - pt_px / 2, line_px + pt_px / 2])])
    inside = ax.get_window_extent(renderer).extents
    labels = []
    for members in sorted(_clusters(at_px, MERGE_WITHIN_PT * pt_px), key=lambda g: tuple(at_px[g].mean(axis=0))):
        text = textwrap.fill(", ".join(dict.fromkeys(names[i] for i in members)), width=30)
        anchor = ax.transData.inverted().transform(at_px[members].mean(axis=0))
        tries = []
        for offset in LABEL_OFFSETS_PT:
            label = _annotate(ax, text, anchor, offset, fontsize)
            box = label.get_window_extent(renderer).padded(pt_px).extents
            label.remove()
            covered = _overlap_areas(box, taken).sum() + _area(box) - _overlap_areas(box, inside[None]).sum()
            tries.append((covered, offset, box))
            if covered == 0:
                break
        _, offset, box = min(tries, key=lambda t: t[0])  # the first of the least covering
        labels.append(_annotate(ax, text, anchor, offset, fontsize, leader=max(map(abs, offset)) > 5))
        taken = np.vstack([taken, box])
    return labels


def _annotate(ax, text: str, anchor, offset_pt, fontsize: float, leader: bool = False):
    """`text` set `offset_pt` away from `anchor` (data coordinates), aligned away from it."""
    dx, dy = offset_pt
    arrow = {"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": "grey", "shrinkA": 1, "shrinkB": 3}}
    return ax.annotate(text, anchor, xytext=offset_pt, textcoords="offset points", fontsize=fontsize,
                       ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top",
                       parse_math=False, **(arrow if leader else {}))


def _clusters(points_px: np.ndarray, within_px: float) -> list[np.ndarray]:
    """Indices of the points grouped by single linkage: a point joins the group of every point within
    `within_px` of it."""
    group = np.arange(len(points_px))
    near = np.linalg.norm(points_px[:, None, :] - points_px[None, :, :], axis=-1) <= within_px
    for i, j in zip(*np.nonzero(near)):
        if group[i] != group[j]:
            group[group == group[j]] = group[i]
    return [np.flatnonzero(group == g) for g in dict.fromkeys(group)]


def _dense_path_px(line, step_px: float) -> np.ndarray:
    """Points along a drawn line, at most `step_px` apart on the page."""
    xy = line.get_transform().transform(line.get_xydata())
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 2:
        return xy
    pieces = [np.linspace(a, b, max(2, int(np.hypot(*(b - a)) // step_px) + 2)) for a, b in zip(xy[:-1], xy[1:])]
    return np.concatenate(pieces)


def _area(box: np.ndarray) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap_areas(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Area of `box` (x0, y0, x1, y1) shared with each row of `others`."""
    width = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    height = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


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
    _save(fig, path, dpi=120)


def plot_all_reduce_profile(samples, predicted: np.ndarray, path: Path | str, title: str) -> None:
    """Measured (dots) and modelled (lines, `predicted` seconds) all-reduce time against payload, a colour per
    GPU count."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, gpus in enumerate(np.unique(samples.gpus)):
        mine = samples.gpus == gpus
        order = np.argsort(samples.payload_bytes[mine])
        sizes = samples.payload_bytes[mine][order]
        ax.plot(sizes, samples.measured_s[mine][order] * 1e6, "o", color=f"C{i}", ms=4, label=f"{gpus} GPUs measured")
        ax.plot(sizes, predicted[mine][order] * 1e6, "-", color=f"C{i}", lw=1.2, label=f"{gpus} GPUs model")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("payload per GPU (bytes)")
    ax.set_ylabel("all-reduce time (us)")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    _save(fig, path, dpi=120)


def plot_run(result, path: Path | str, title: str) -> None:
    """Batch size, KV-cache use and queue over simulated time, and the latency distributions."""
    _save(run_figure(result, title), path, dpi=110)


TIME_BINS = 200  # the panels over time: ~2.5 pixels a bin at 110 dpi, however many steps the run took


class BinnedSteps(NamedTuple):
    """A per-step series summed up per time bin: NaN where no step ran in the bin."""
    mean: np.ndarray  # weighted by the time each step ran within the bin
    low: np.ndarray  # the lowest step value seen in the bin
    high: np.ndarray  # the highest


def bin_steps(start_s: np.ndarray, duration_s: np.ndarray, values: np.ndarray, edges_s: np.ndarray) -> BinnedSteps:
    """Steps of one replica (ordered, not overlapping; step i holds values[i] from start_s[i] for
    duration_s[i]) summed up per bin between consecutive `edges_s`. The time-weighted mean is exact: the
    running integral of a step function is piecewise linear between the steps' starts and ends."""
    end_s = start_s + duration_s
    knots_s = np.maximum.accumulate(np.column_stack([start_s, end_s]).ravel())
    before = np.concatenate([[0.0], np.cumsum(values * duration_s)[:-1]])
    integral = np.column_stack([before, before + values * duration_s]).ravel()
    busy = np.column_stack([np.cumsum(duration_s) - duration_s, np.cumsum(duration_s)]).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.diff(np.interp(edges_s, knots_s, integral)) / np.diff(np.interp(edges_s, knots_s, busy))
    low, high = np.full(len(edges_s) - 1, np.inf), np.full(len(edges_s) - 1, -np.inf)
    for t in (start_s, end_s):  # a step reaches the bins from its start's to its end's
        bins = np.clip(np.searchsorted(edges_s, t, side="right") - 1, 0, len(edges_s) - 2)
        np.minimum.at(low, bins, values)
        np.maximum.at(high, bins, values)
    # A bin inside one long step saw that step alone: its value, which is the bin's mean.
    low = np.fmin(np.where(np.isfinite(low), low, np.nan), mean)
    high = np.fmax(np.where(np.isfinite(high), high, np.nan), mean)
    return BinnedSteps(mean, low, high)


def run_figure(result, title: str):
    """The figure `plot_run` saves. Runs take thousands of steps, far more than the panels' pixels, so the
    panels over time show each replica's series per time bin (TIME_BINS of them): its time-weighted mean as
    a line over a pale band from its lowest to its highest step."""
    plt = _pyplot()
    tl, t = result.timeline, result.table
    done = t["state"] == "done"
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=110)
    over_time = ((axes[0, 0], "batch_seqs", 1, "sequences in the step", "batch size", "C0"),
                 (axes[0, 1], "kv_blocks_used", 100 / result.total_blocks, "% of KV blocks in use", "KV cache", "C0"),
                 (axes[1, 0], "queue_len", 1, "waiting requests", "queue", "C3"))
    for ax, column, scale, ylabel, title_text, color in over_time:
        ax.set(xlabel="simulated time (s)", ylabel=ylabel, title=title_text)
        if tl is None:  # too many steps to keep (sim.metrics): the summary still has the means and peaks
            ax.text(0.5, 0.5, "run too long to keep\na per-step timeline", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        end_s = float(np.max(tl["start_s"] + tl["duration_s"], initial=0.0)) or 1.0
        edges_s = np.linspace(0.0, end_s, TIME_BINS + 1)
        replicas = np.unique(tl["replica"])
        for replica in replicas:
            mine = tl["replica"] == replica
            binned = bin_steps(tl["start_s"][mine], tl["duration_s"][mine], scale * tl[column][mine], edges_s)
            shade = color if len(replicas) == 1 else f"C{replica % 10}"
            ax.stairs(binned.high, edges_s, baseline=binned.low, fill=True, color=shade, alpha=0.25, lw=0,
                      label=f"per {edges_s[1]:.2g} s: lowest to highest step" if replica == replicas[0] else None)
            ax.stairs(binned.mean, edges_s, color=shade, lw=0.9,
                      label="time-weighted mean" if len(replicas) == 1 else f"replica {replica}: mean")
        ax.set_ylim(bottom=0)
    if tl is not None and len(tl["replica"]):
        axes[0, 0].legend(fontsize=7, loc="upper right")
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
    return fig


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
    _save(fig, paths[0], dpi=110)

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
    _save(fig, paths[1], dpi=110)
    return paths


def plot_serving(comparisons: list, path: Path | str, title: str) -> None:
    """Mean TTFT and ITL against request rate per configuration, measured (dots) and simulated (crosses on
    lines, so that a configuration of one rate shows too), and
    their 99th percentiles (hollow dots, dashed lines) where the runs measured them."""
    _save(serving_figure(comparisons, title), path, dpi=120)


def serving_figure(comparisons: list, title: str):
    """The figure `plot_serving` saves. The rate axis is in octaves, ticked at powers of two; runs of
    unbounded rate stand one octave past the highest finite rate's tick, on a tick of their own: "all at
    once"."""
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    configs: dict = {}
    from infersim.serving import series_keys
    for c, key in zip(comparisons, series_keys([c.run for c in comparisons])):
        configs.setdefault(key, []).append(c)
    finite = [c.run.request_rate_per_s for c in comparisons if np.isfinite(c.run.request_rate_per_s)]
    octaves = np.arange(np.floor(np.log2(min(finite))), np.ceil(np.log2(max(finite))) + 1) if finite else np.zeros(1)
    unbounded_at = 2.0 ** (octaves[-1] + 1)
    ticks = list(2.0 ** octaves) + ([unbounded_at] if len(finite) < len(comparisons) else [])
    for i, (label, runs) in enumerate(sorted(configs.items())):
        runs = sorted(runs, key=lambda c: c.run.request_rate_per_s)
        rates = [c.run.request_rate_per_s if np.isfinite(c.run.request_rate_per_s) else unbounded_at for c in runs]
        color = f"C{i % 10}"
        for ax, measured, predicted in ((axes[0], "mean_ttft_ms", "ttft_ms"), (axes[1], "mean_itl_ms", "itl_ms")):
            ax.plot(rates, [getattr(c, predicted) for c in runs], "-x", color=color, lw=1.2, ms=4, label=label)
            ax.plot(rates, [np.nan if getattr(c.run, measured) is None else getattr(c.run, measured) for c in runs],
                    "o", color=color, ms=4)
            tail = [getattr(c.run, f"p99_{predicted}") for c in runs]
            if any(t is not None for t in tail):
                ax.plot(rates, [getattr(c, f"p99_{predicted}") for c in runs], "--x", color=color, lw=1, ms=4)
                ax.plot(rates, [np.nan if t is None else t for t in tail], "o", color=color, ms=5, mfc="none")
    tails = any(c.run.p99_ttft_ms is not None or c.run.p99_itl_ms is not None for c in comparisons)
    rate_text = FuncFormatter(lambda v, _: "all at once" if v == unbounded_at else f"{v:g}")
    for ax, name in ((axes[0], "TTFT (ms)"), (axes[1], "ITL (ms)")):
        name = f"{name}: mean, p99 dashed" if tails else f"mean {name}"
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(rate_text)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel("request rate (requests/s)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.2)
    axes[0].legend(fontsize=7, title="crosses, lines: simulated; dots: measured" + ("; dashed, hollow: p99" if tails else ""),
                   title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
            ax.bar_label(bars, labels=["" if np.isnan(r) else f"{r:.3g}x" if r < 1000 else f"{r:.0f}x"
                                                 for r in ratios[:, i]], fontsize=7)
        shown = ratios[np.isfinite(ratios) & (ratios > 0)]
        if not len(shown):  # the baseline, or every other scenario, has none of these figures (nothing completed)
            ax.text(0.5, 0.75, f"no ratio to {_plain(names[0])}:\na side has none of these figures", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8, color="0.4")
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
    _save(fig, path, dpi=110)


def _plain(text: str) -> str:
    """A name drawn as itself in a legend or axis label, where a pair of `$` would start a TeX formula."""
    return text.replace("$", r"\$")


def _save(fig, path: Path | str, dpi: int) -> None:
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
