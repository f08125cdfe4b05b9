"""Scenarios side by side: several scenario files simulated (in parallel on the local cores) and their
headline figures tabulated, each with its ratio to the first scenario's. `infersim compare` prints the
table and writes it as compare.json, compare.md and compare.png."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from infersim.report import figure, json_safe, table


@dataclass(frozen=True)
class ScenarioResult:
    """What one simulated scenario file sends back from its worker process: a summary, not the RunResult
    (whose replicas hold SimPy processes, which do not pickle)."""

    path: str
    name: str
    deployment: str  # model, GPU, parallelism and scheduler, in words
    summary: dict  # sim.metrics.summarize's keys, plus gpus and kv_blocks_per_replica
    block_size_tokens: int


def simulate_file(path: str) -> ScenarioResult:
    """Load and simulate one scenario file; a mistake in it is a SpecError naming the file (as `infersim
    run` reports it), which pickles back from a worker process intact."""
    from infersim.roofline.boundary import shown
    from infersim.roofline.errors import errors_in
    from infersim.scenario import load_run
    from infersim.sim.cascade import CascadeConfig, simulate_cascade
    from infersim.sim.run import simulate
    scenario, cfg, requests = load_run(path)
    cascade = isinstance(cfg, CascadeConfig)
    with errors_in(Path(path).name):  # what the simulator finds wrong is the scenario's too
        result = (simulate_cascade if cascade else simulate)(cfg, requests)
    if cascade:
        tiers = " -> ".join(f"{t['model']} x{t['replicas']} ({t['gpus']} GPUs)" for t in result.summary["tiers"])
        return ScenarioResult(str(path), scenario.name or shown(Path(path).stem),
                              f"cascade ({cfg.policy}): {tiers}, {len(requests):,} requests", result.summary,
                              cfg.tiers[-1].run.kv_cache.block_size_tokens)
    p = cfg.options.parallel
    deployment = (f"{cfg.model.name} on {cfg.hardware.name} (TP={p.tensor_parallel}, PP={p.pipeline_parallel}), "
                  f"{scenario.engine.preset} engine, {cfg.scheduler} scheduler, {len(requests):,} requests")
    return ScenarioResult(str(path), scenario.name or shown(Path(path).stem), deployment, result.summary,
                          cfg.kv_cache.block_size_tokens)


def simulate_files(paths: list[str], jobs: int, progress: Callable[[int, int], None] | None = None) \
        -> list[ScenarioResult]:
    """Every file simulated, results in the order of `paths`. With `jobs` > 1 the runs spread over that many
    worker processes (the planner's local executor); each run depends on its file alone (its seed included),
    so the numbers are those of one run after another. `progress(done, total)` is called as runs finish."""
    from functools import partial

    from infersim.executors import LocalExecutor
    from infersim.scenario import load_scenario
    for path in paths:  # every file read and validated before any run: a typo in the last one fails at once
        load_scenario(path)
    return LocalExecutor(jobs).map([partial(simulate_file, path) for path in paths], progress)


@dataclass(frozen=True)
class Column:
    """A column of the comparison: its key in compare.json (unit in the name), what it shows, in which unit
    and format."""

    key: str
    name: str
    unit: str
    value: Callable[[ScenarioResult], float | None]
    spec: str

    @property
    def heading(self) -> str:
        return f"{self.name} {self.unit}".strip()


def _latency_ms(metric: str, quantile: str) -> Callable[[ScenarioResult], float | None]:
    def value(result: ScenarioResult) -> float | None:
        seconds = result.summary[metric][quantile]
        return None if seconds is None else seconds * 1e3
    return value


def _kv_capacity_tokens(result: ScenarioResult) -> int | None:
    """Tokens one replica's KV cache holds: its blocks times the tokens a block holds."""
    blocks = result.summary["kv_blocks_per_replica"]  # None for a cascade: its tiers' caches differ
    return None if blocks is None else blocks * result.block_size_tokens


COLUMNS = (
    Column("ttft_p50_ms", "TTFT p50", "ms", _latency_ms("ttft_s", "p50"), ",.1f"),
    Column("ttft_p99_ms", "TTFT p99", "ms", _latency_ms("ttft_s", "p99"), ",.1f"),
    Column("tpot_p50_ms", "TPOT p50", "ms", _latency_ms("tpot_s", "p50"), ",.2f"),
    Column("tpot_p99_ms", "TPOT p99", "ms", _latency_ms("tpot_s", "p99"), ",.2f"),
    Column("itl_p50_ms", "ITL p50", "ms", _latency_ms("itl_s", "p50"), ",.2f"),
    Column("itl_p99_ms", "ITL p99", "ms", _latency_ms("itl_s", "p99"), ",.2f"),
    Column("output_tokens_per_s", "output", "tok/s", lambda r: r.summary["throughput_tokens_per_s"], ",.0f"),
    Column("goodput_requests_per_s", "goodput", "req/s", lambda r: r.summary["goodput_requests_per_s"], ".2f"),
    Column("kv_capacity_tokens", "KV cache", "tokens/replica", _kv_capacity_tokens, ",.0f"),
    Column("batch_size_mean", "mean batch", "", lambda r: r.summary["batch_size_mean"], ".1f"),
    Column("gpus", "GPUs", "", lambda r: r.summary["gpus"], ".0f"),
)
# The columns compare.png draws, by panel: latencies (lower is better) and capacity (higher is better).
PLOTTED = {"latency (lower is better)": ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms", "itl_p50_ms",
                                         "itl_p99_ms"),
           "capacity (higher is better)": ("output_tokens_per_s", "goodput_requests_per_s", "kv_capacity_tokens",
                                           "batch_size_mean")}


@dataclass(frozen=True)
class Figure:
    """One cell: the scenario's value and its ratio to the first scenario's (None where either has no value,
    e.g. no SLO set, or the first's is 0)."""

    value: float | None
    ratio: float | None


@dataclass(frozen=True)
class Row:
    result: ScenarioResult
    figures: dict[str, Figure]  # by Column.key


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _ratio(value, baseline) -> float | None:
    if not (_finite(value) and _finite(baseline)) or baseline == 0:
        return None
    return value / baseline


def distinct_names(results: list[ScenarioResult]) -> list[ScenarioResult]:
    """The results, each name that two or more share followed by its file's (and, for one file given twice,
    its place in the list), so that rows, legend and plot tell them apart."""
    def repeated(names):
        return {n for n in names if names.count(n) > 1}
    from infersim.roofline.boundary import shown
    shared = repeated([r.name for r in results])
    named = [dataclasses.replace(r, name=f"{r.name} ({shown(r.path)})") if r.name in shared else r for r in results]
    still = repeated([r.name for r in named])
    return [dataclasses.replace(r, name=f"{r.name} #{i + 1}") if r.name in still else r for i, r in enumerate(named)]


def build_rows(results: list[ScenarioResult]) -> list[Row]:
    """A row per scenario (names made distinct); every ratio is to the first scenario's figure."""
    results = distinct_names(results)
    first = {c.key: c.value(results[0]) for c in COLUMNS}
    return [Row(r, {c.key: Figure(c.value(r), _ratio(c.value(r), first[c.key])) for c in COLUMNS}) for r in results]


def _cell(column: Column, fig: Figure, with_ratio: bool) -> str:
    text = figure(fig.value, column.spec)
    return f"{text} ({ratio_text(fig.ratio)})" if with_ratio and fig.ratio is not None else text


def ratio_text(ratio: float) -> str:
    """0.62 -> '0.62x'; a ratio that two decimals would show as 0.00x keeps two significant digits."""
    return f"{ratio:.2g}x" if 0 < ratio < 0.01 else f"{ratio:.2f}x"


def _cells(rows: list[Row]) -> list[list[str]]:
    """The table's cells: every scenario after the first shows its ratio to the first in brackets."""
    return [[row.result.name, *(_cell(c, row.figures[c.key], i > 0) for c in COLUMNS)] for i, row in enumerate(rows)]


def legend(rows: list[Row]) -> list[str]:
    """A line per scenario: its name, file and deployment."""
    from infersim.roofline.boundary import shown
    return [f"{row.result.name}: {shown(row.result.path)}, {row.result.deployment}" for row in rows]


def text_table(rows: list[Row]) -> str:
    """The comparison for the terminal."""
    return table(["scenario", *(c.heading for c in COLUMNS)], _cells(rows))


def markdown_table(rows: list[Row]) -> str:
    """The comparison as a Markdown table (GitHub's pipe tables), the scenarios listed above it."""
    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    lines = [f"- {text}" for text in legend(rows)]
    lines += ["", f"Ratios in brackets are to the first scenario, {rows[0].result.name}.", "",
              line(["scenario", *(c.heading for c in COLUMNS)]), "|---" + "|--:" * len(COLUMNS) + "|"]
    lines += [line(cells) for cells in _cells(rows)]
    return "\n".join(lines) + "\n"


def comparison_json(rows: list[Row]) -> dict:
    """Every number of the table, ratios included, and each scenario's file and full summary (strict JSON:
    a figure without a value is null)."""
    return json_safe({
        "baseline": rows[0].result.name,
        "columns": [{"key": c.key, "heading": c.heading} for c in COLUMNS],
        "scenarios": [{"name": row.result.name, "path": row.result.path, "deployment": row.result.deployment,
                       "block_size_tokens": row.result.block_size_tokens,
                       "figures": {key: {"value": f.value, "ratio": f.ratio} for key, f in row.figures.items()},
                       "summary": row.result.summary} for row in rows]})


def write_comparison(rows: list[Row], out_dir: Path | str, plot: bool = True) -> list[Path]:
    """compare.json, compare.md and (with `plot`) compare.png under out_dir; returns the paths written."""
    import json
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "compare.json", out / "compare.md"]
    paths[0].write_text(json.dumps(comparison_json(rows), indent=2, allow_nan=False) + "\n")
    paths[1].write_text(markdown_table(rows))
    if plot:
        from infersim.plots import plot_ratios
        columns = {c.key: c for c in COLUMNS}
        panels = {title: {f"{columns[k].name}\n{_cell(columns[k], rows[0].figures[k], False)} {columns[k].unit}":
                          [row.figures[k].ratio for row in rows[1:]] for k in keys}
                  for title, keys in PLOTTED.items()}
        paths.append(out / "compare.png")
        plot_ratios([row.result.name for row in rows], panels, paths[-1],
                    f"ratio to {rows[0].result.name} (its value under each label)")
    return paths
