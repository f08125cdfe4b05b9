"""Measured serving runs against the simulator: each run's workload (model, GPU, tensor parallelism, prompt and
output lengths, request rate) simulated under an engine preset, and predicted against measured mean TTFT,
mean inter-token latency and output tokens/s.

Measurements come as a CSV table with one run a row (the columns of NVIDIA's TensorRT-LLM online-serving
table: model, hardware, tensor_parallel, input_tokens, output_tokens, num_requests, request_rate_per_s
(`inf`: every request at once), mean_ttft_ms, mean_itl_ms, output_tokens_per_s, and optionally
max_concurrency), or as the JSON `vllm bench serve --save-result` writes (one run; its model, GPU and tensor
parallelism given on the command line). Arrivals of a finite rate are Poisson, as benchmark clients send them,
drawn given that their gaps average 1 / rate (the run's nominal rate exactly, not a seed's luck); lengths are
fixed at the run's. A run with max_concurrency at an unbounded rate is a closed loop (`vllm bench serve
--max-concurrency`): that many clients, each sending its next request when it has its last, the engine's
front-end time (frontend_s) apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infersim.roofline.boundary import load_json, number, number_cell, read_rows
from infersim.roofline.errors import SpecError


@dataclass(frozen=True)
class ServingRun:
    where: str  # file:line, for messages
    model: str
    hardware: str
    tensor_parallel: int
    input_tokens: int
    output_tokens: int
    num_requests: int
    request_rate_per_s: float  # inf: every request at once
    mean_ttft_ms: float
    # GenAI-Perf's inter-token latency: per request (end-to-end - TTFT) / (output tokens - 1), averaged over
    # requests; vllm bench serve calls it mean_tpot_ms (its mean_itl_ms weights every gap alike instead)
    mean_itl_ms: float
    output_tokens_per_s: float
    max_concurrency: int | None = None  # closed loop: this many clients (the rate is then inf); None: open loop

    @property
    def config_key(self) -> str:
        """What a series of runs at different request rates shares: model, GPU, parallelism and lengths."""
        return f"{self.model} {self.hardware} TP{self.tensor_parallel} {self.input_tokens}/{self.output_tokens}"


@dataclass(frozen=True)
class Comparison:
    run: ServingRun
    ttft_ms: float
    itl_ms: float
    output_tokens_per_s: float

    def errors(self) -> dict:
        """Relative error of each prediction: (predicted - measured) / measured."""
        r = self.run
        return {"ttft": self.ttft_ms / r.mean_ttft_ms - 1, "itl": self.itl_ms / r.mean_itl_ms - 1,
                "output_tokens_per_s": self.output_tokens_per_s / r.output_tokens_per_s - 1}


_TOKENS = dict(whole=True, minimum=1, maximum=1 << 24)
_POSITIVE = dict(minimum=1e-9, maximum=1e12)
# The columns of a CSV of runs (max_concurrency is optional).
RUN_COLUMNS = ("model", "hardware", "tensor_parallel", "input_tokens", "output_tokens", "num_requests",
               "request_rate_per_s", "mean_ttft_ms", "mean_itl_ms", "output_tokens_per_s")
# A measured inter-token latency needs two output tokens a request: one has no gap between tokens.
_NO_ITL = "a run of one output token a request has no inter-token latency to compare"


def _rate(value, field: str, where: str) -> float:
    """A request rate: a number, or inf (the text `inf`, or JSON's Infinity) for every request at once."""
    if (isinstance(value, str) and value.strip().lower() in ("inf", "infinity")) or value == math.inf:
        return math.inf
    return number(value, field, where, minimum=1e-6, maximum=1e9)


def _clients(value, rate_per_s: float, where: str) -> int | None:
    """A run's max_concurrency: None (missing, null or an empty cell) for an open loop, else its clients,
    which drive a closed loop only at an unbounded rate: vllm bench serve at a finite rate with
    --max-concurrency sends at the rate and holds each send while that many are in flight, which the
    simulator does not drive."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    clients = int(number(value, "max_concurrency", where, whole=True, minimum=1, maximum=1 << 20))
    if not math.isinf(rate_per_s):
        raise SpecError("max_concurrency", f"is simulated as a closed loop, at request_rate_per_s inf only (this "
                        f"run's is {rate_per_s:g}: requests sent at a rate and capped in flight is not modelled)",
                        clients, file=where)
    return clients


def read_csv_runs(path: Path) -> list[ServingRun]:
    runs = []
    for where, row in read_rows(path, "serving runs"):
        missing = [column for column in RUN_COLUMNS if column not in row]
        if len(missing) == len(RUN_COLUMNS):  # cells split on another delimiter than the comma, or another table
            raise SpecError("", f"names none of the columns of serving runs ({', '.join(RUN_COLUMNS)}): is it "
                            "comma-separated?", ", ".join(map(str, row)), file=where)
        if missing:
            raise SpecError(missing[0], "is not a column of this file (is it misspelt?)", ", ".join(map(str, row)),
                            file=where)
        for column in ("model", "hardware"):
            if not isinstance(row.get(column), str) or not row[column].strip():
                raise SpecError(column, "is empty or missing: it must name a model or GPU (infersim models, "
                                "infersim hardware)",
                                row.get(column), file=where)
        rate_per_s = _rate(row["request_rate_per_s"], "request_rate_per_s", where)
        output_tokens = int(number_cell(row, "output_tokens", where, **_TOKENS))
        if output_tokens < 2:
            raise SpecError("output_tokens", f"must be >= 2 ({_NO_ITL}, mean_itl_ms)", row["output_tokens"], file=where)
        runs.append(ServingRun(
            where, row["model"], row["hardware"],
            int(number_cell(row, "tensor_parallel", where, whole=True, minimum=1, maximum=1024)),
            int(number_cell(row, "input_tokens", where, **_TOKENS)), output_tokens,
            int(number_cell(row, "num_requests", where, whole=True, minimum=1, maximum=10_000_000)),
            rate_per_s,
            number_cell(row, "mean_ttft_ms", where, **_POSITIVE), number_cell(row, "mean_itl_ms", where, **_POSITIVE),
            number_cell(row, "output_tokens_per_s", where, **_POSITIVE),
            _clients(row.get("max_concurrency"), rate_per_s, where)))
    return runs


def read_vllm_bench_json(path: Path, model: str, hardware: str, tensor_parallel: int) -> list[ServingRun]:
    """One `vllm bench serve --save-result` file: its mean lengths (total tokens over completed requests),
    request rate, its clients if it had --max-concurrency, and measured means (TPOT as the inter-token
    latency, the per-request mean the simulator's TPOT and GenAI-Perf's ITL are)."""
    data = load_json(path, "serving runs", "a vllm bench serve result")
    if not isinstance(data, dict):
        raise SpecError("", "must hold the JSON object vllm bench serve --save-result writes", file=path.name)
    where = path.name
    completed = number(data.get("completed"), "completed", where, whole=True, minimum=1, maximum=10_000_000)
    rate_per_s = _rate(data.get("request_rate", "inf"), "request_rate", where)
    total_output = number(data.get("total_output_tokens"), "total_output_tokens", where, minimum=1)
    if round(total_output / completed) < 2:
        raise SpecError("total_output_tokens", f"averages {total_output / completed:.3g} tokens over the "
                        f"{completed:g} completed requests; {_NO_ITL} (mean_tpot_ms)", total_output, file=where)
    return [ServingRun(
        where, model, hardware, tensor_parallel,
        max(1, round(number(data.get("total_input_tokens"), "total_input_tokens", where, minimum=1) / completed)),
        round(total_output / completed), int(completed), rate_per_s,
        number(data.get("mean_ttft_ms"), "mean_ttft_ms", where, **_POSITIVE),
        number(data.get("mean_tpot_ms"), "mean_tpot_ms", where, **_POSITIVE),
        number(data.get("output_throughput"), "output_throughput", where, **_POSITIVE),
        _clients(data.get("max_concurrency"), rate_per_s, where))]


def arrivals_of(run: ServingRun, seed: int) -> np.ndarray:
    """When the run's requests are sent: all at once (rate `inf`, or a single request), or a Poisson draw from
    0 whose n - 1 gaps are scaled to average 1 / rate. One draw of 500 misses its rate by 4.5% (1 sigma),
    where a benchmark achieves its nominal rate at light load (NVIDIA's table: 2.0 requests/s at 2)."""
    from infersim.sim.workload import arrival_times

    n = run.num_requests
    if math.isinf(run.request_rate_per_s) or n == 1:
        return np.zeros(n)
    arrivals = arrival_times("poisson", run.request_rate_per_s, n, np.random.default_rng(seed))
    return arrivals * ((n - 1) / run.request_rate_per_s / arrivals[-1])


def simulate_run(run: ServingRun, preset: str, seed: int = 0, overhead=None) -> Comparison:
    """The run's workload through the preset's engine on the run's model, GPU and tensor parallelism (with
    another host model than the preset's, if given), driven by its clients when it had max_concurrency."""
    from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    from infersim.sim.workload import Workload

    try:
        model, hardware = get_model(run.model), get_hardware(run.hardware)
        if run.input_tokens + run.output_tokens > model.max_context_tokens:
            raise SpecError("input_tokens", f"+ output_tokens = {run.input_tokens + run.output_tokens:,} tokens "
                            f"exceeds {model.name}'s context of {model.max_context_tokens:,}, so no request could "
                            "be served", run.input_tokens)
        n = run.num_requests
        workload = Workload(arrivals_of(run, seed), np.full(n, run.input_tokens), np.full(n, run.output_tokens))
        max_model_len = min(model.max_context_tokens, run.input_tokens + run.output_tokens)
        cfg = preset_config(preset, model, hardware, StepOptions(parallel=Parallelism(run.tensor_parallel)),
                            max_model_len, concurrency=run.max_concurrency,
                            **({"overhead": overhead} if overhead is not None else {}))
        summary = simulate(cfg, requests_from(workload)).summary
    except SpecError as err:
        raise err.in_file(run.where) from None
    if summary["ttft_s"]["mean"] is None:
        raise SpecError("", "no request of this run could be served (see infersim run for the reason)", file=run.where)
    itl_s = summary["tpot_s"]["mean"] if summary["tpot_s"]["mean"] is not None else math.nan
    return Comparison(run, summary["ttft_s"]["mean"] * 1e3, itl_s * 1e3, summary["throughput_tokens_per_s"])


def error_summary(comparisons: list[Comparison]) -> dict:
    """Median and 90th-percentile |relative error| of each figure, over the runs that have it."""
    out = {}
    for key in ("ttft", "itl", "output_tokens_per_s"):
        errors = np.abs([c.errors()[key] for c in comparisons])
        errors = errors[np.isfinite(errors)]
        out[key] = {"median_abs_err": float(np.median(errors)), "p90_abs_err": float(np.percentile(errors, 90)),
                    "runs": int(errors.size)}
    return out


def highest_rate_within(comparisons: list[Comparison], ttft_ms: float, measured: bool) -> dict:
    """Per configuration (model, GPU, TP, lengths), the highest finite request rate whose mean TTFT, measured
    or simulated, stays under `ttft_ms`."""
    best: dict = {}
    for c in comparisons:
        r = c.run
        if math.isinf(r.request_rate_per_s):
            continue
        if (r.mean_ttft_ms if measured else c.ttft_ms) < ttft_ms:
            best[r.config_key] = max(best.get(r.config_key, 0.0), r.request_rate_per_s)
        else:
            best.setdefault(r.config_key, 0.0)
    return best


@dataclass(frozen=True)
class HostFit:
    fixed_s: float
    per_seq_s: float
    frontend_s: float
    errors_before: dict
    errors_after: dict


def fit_host_overhead(runs: list[ServingRun], preset: str, progress=lambda text: None) -> HostFit:
    """The preset's host time per step (fixed and per sequence; whether it overlaps the GPU stays the
    preset's) and the front end's time per request that best predict the runs' mean TTFT and ITL: the mean
    of their median |relative errors|. Overlapped host time changes nothing until it outlasts the GPU's
    step, so the search is a grid, not a descent: the fixed part over 0.1-30 ms, the per-sequence part over
    1-300 us, then the front end over 0.5-50 ms (each trial simulates every run)."""
    from dataclasses import replace

    from infersim.roofline import get_hardware
    from infersim.sim.engines import ENGINES

    first = runs[0]
    start = ENGINES[preset].defaults(get_hardware(first.hardware), first.input_tokens + first.output_tokens,
                                     first.tensor_parallel).overhead

    def loss_of(overhead) -> tuple[float, dict]:
        errors = error_summary([simulate_run(run, preset, overhead=overhead) for run in runs])
        return (errors["ttft"]["median_abs_err"] + errors["itl"]["median_abs_err"]) / 2, errors

    best_loss, before = loss_of(start)
    best, errors = start, before
    for name, grid in (("fixed_s", np.geomspace(1e-4, 3e-2, 10)), ("per_seq_s", np.geomspace(1e-6, 3e-4, 6)),
                       ("frontend_s", np.geomspace(5e-4, 5e-2, 9))):
        for value in grid:
            trial = replace(best, **{name: float(value)})
            loss, trial_errors = loss_of(trial)
            progress(f"{name} {value:.3g}: loss {loss:.4f}")
            if loss < best_loss - 1e-6:
                best, best_loss, errors = trial, loss, trial_errors
    return HostFit(best.fixed_s, best.per_seq_s, best.frontend_s, before, errors)
