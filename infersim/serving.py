"""Measured serving runs against the simulator: each run's workload (model, GPU, tensor parallelism, prompt and
output lengths, request rate) simulated under an engine preset, and predicted against measured mean TTFT,
mean inter-token latency and output tokens/s.

Measurements come as a CSV table with one run a row (the columns of NVIDIA's TensorRT-LLM online-serving
table: model, hardware, tensor_parallel, input_tokens, output_tokens, num_requests, request_rate_per_s
(`inf`: every request at once), mean_ttft_ms, mean_itl_ms, output_tokens_per_s, and optionally
max_concurrency), or as the JSON `vllm bench serve --save-result` writes (one run a file, so a rate sweep is one file per
rate; its model, GPU and tensor parallelism given on the command line). Arrivals of a finite rate are Poisson, as benchmark clients send them
(Gamma with the run's shape where vllm bench serve had --burstiness), drawn given that their gaps average
1 / rate (the run's nominal rate exactly, not a seed's luck); lengths are fixed at the run's means, or, where
the CSV gives their standard deviations (optional columns input_tokens_stddev and output_tokens_stddev),
drawn with that mean and deviation (`spread_lengths`). A JSON
saved with --save-detailed lists every request: those completed are simulated with their own prompt and
output lengths, sent when they were sent (`start_times`) where the file records it. A run with
max_concurrency at an unbounded rate is a closed loop (`vllm bench serve --max-concurrency`): that many
clients, each sending its next request when it has its last, the engine's front-end time (frontend_s) apart.
Where a run gives its 99th percentiles (vllm bench serve's p99_ttft_ms and p99_tpot_ms; CSV columns
p99_ttft_ms and p99_itl_ms), they are predicted and compared too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersim.roofline.boundary import check_readable, load_json_records, number, number_cell, read_rows
from infersim.roofline.errors import HardwareLimit, SpecError, closest_name


@dataclass(frozen=True)
class MeasuredRequests:
    """A run's own completed requests, as `vllm bench serve --save-detailed` lists them, in the order sent:
    prompt and output tokens of each, and when each was sent, in seconds from the first (None where the file
    does not record it)."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    sent_s: np.ndarray | None


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
    mean_ttft_ms: float | None  # None: not measured (a maximum-throughput run may give tokens/s alone)
    # GenAI-Perf's inter-token latency: per request (end-to-end - TTFT) / (output tokens - 1), averaged over
    # requests; vllm bench serve calls it mean_tpot_ms (its mean_itl_ms weights every gap alike instead)
    mean_itl_ms: float | None
    output_tokens_per_s: float
    max_concurrency: int | None = None  # closed loop: this many clients (the rate is then inf); None: open loop
    p99_ttft_ms: float | None = None  # None: not measured
    p99_itl_ms: float | None = None  # of the per-request figure mean_itl_ms averages (vllm bench serve's TPOT)
    burstiness: float = 1.0  # vllm bench serve --burstiness: the Gamma shape of the gaps (1: Poisson)
    requests: MeasuredRequests | None = None  # the run's own requests, where the file lists them
    quantization: str = "fp16"  # a preset of roofline.quant (the CSV's precision: bf16, fp8, ...)
    # lengths drawn around input_tokens and output_tokens with these standard deviations (0: fixed)
    input_tokens_stddev: float = 0.0
    output_tokens_stddev: float = 0.0
    achieved_requests_per_s: float | None = None  # completed requests over the run's duration, where measured

    @property
    def lengths_text(self) -> str:
        """'in/out', each mean with its spread where lengths vary: 202/214, 202+-60/214+-80."""
        def one(mean_tokens: int, stddev_tokens: float) -> str:
            return f"{mean_tokens}+-{stddev_tokens:g}" if stddev_tokens else str(mean_tokens)
        return (f"{one(self.input_tokens, self.input_tokens_stddev)}/"
                f"{one(self.output_tokens, self.output_tokens_stddev)}")

    @property
    def config_key(self) -> str:
        """What a series of runs at different request rates shares: model, GPU, parallelism and lengths."""
        return f"{self.model} {self.hardware} TP{self.tensor_parallel} {self.lengths_text}"

    def same_series(self, other: ServingRun) -> bool:
        """Whether `other` is a run of this one's sweep: the same model, GPU, parallelism and precision, each
        mean length within `SERIES_LENGTHS` of this one's and spread alike."""
        def near(a: float, b: float) -> bool:
            return abs(a - b) <= SERIES_LENGTHS * max(a, b)
        return ((self.model, self.hardware, self.tensor_parallel, self.quantization)
                == (other.model, other.hardware, other.tensor_parallel, other.quantization)
                and near(self.input_tokens, other.input_tokens) and near(self.output_tokens, other.output_tokens)
                and near(self.input_tokens_stddev, other.input_tokens_stddev)
                and near(self.output_tokens_stddev, other.output_tokens_stddev))


# Runs of one sweep may average lengths a little apart: a dataset's outputs that end on their own (EOS) come out
# a few tokens longer or shorter from one request rate to the next. Within this share, they are one series.
SERIES_LENGTHS = 0.05


def series_keys(runs: list[ServingRun]) -> list[str]:
    """Each run's series, named by the `config_key` of its sweep's first run (`ServingRun.same_series`)."""
    firsts: list[ServingRun] = []
    keys = []
    for run in runs:
        first = next((f for f in firsts if f.same_series(run)), None)
        if first is None:
            firsts.append(run)
            first = run
        keys.append(first.config_key)
    return keys


@dataclass(frozen=True)
class Comparison:
    run: ServingRun
    ttft_ms: float
    itl_ms: float
    output_tokens_per_s: float
    p99_ttft_ms: float = math.nan
    p99_itl_ms: float = math.nan

    def errors(self) -> dict:
        """Relative error of each prediction: (predicted - measured) / measured, of the figures the run
        measured."""
        r = self.run
        errors = {"output_tokens_per_s": self.output_tokens_per_s / r.output_tokens_per_s - 1}
        if r.mean_ttft_ms is not None:
            errors["ttft"] = self.ttft_ms / r.mean_ttft_ms - 1
        if r.mean_itl_ms is not None:
            errors["itl"] = self.itl_ms / r.mean_itl_ms - 1
        if r.p99_ttft_ms is not None:
            errors["p99_ttft"] = self.p99_ttft_ms / r.p99_ttft_ms - 1
        if r.p99_itl_ms is not None:
            errors["p99_itl"] = self.p99_itl_ms / r.p99_itl_ms - 1
        return errors


_TOKENS = dict(whole=True, minimum=1, maximum=1 << 24)
_POSITIVE = dict(minimum=1e-9, maximum=1e12)
# The columns a CSV of runs must have; mean_ttft_ms, mean_itl_ms, their p99_ columns, max_concurrency and
# precision are optional.
RUN_COLUMNS = ("model", "hardware", "tensor_parallel", "input_tokens", "output_tokens", "num_requests",
               "request_rate_per_s", "output_tokens_per_s")
OPTIONAL_RUN_COLUMNS = ("mean_ttft_ms", "mean_itl_ms", "p99_ttft_ms", "p99_itl_ms", "max_concurrency", "precision",
                        "input_tokens_stddev", "output_tokens_stddev", "achieved_requests_per_s", "burstiness")
# Other names tables give these figures (vllm bench serve's among them), each taken for the column it means:
# read as a column of the table's own, it would leave the figure silently unread
_COLUMN_SYNONYMS = {"quantization": "precision", "dtype": "precision", "mean_tpot_ms": "mean_itl_ms",
                    "tpot_ms": "mean_itl_ms", "itl_ms": "mean_itl_ms", "ttft_ms": "mean_ttft_ms",
                    "p99_tpot_ms": "p99_itl_ms", "max_clients": "max_concurrency", "concurrency": "max_concurrency",
                    "request_rate": "request_rate_per_s", "output_throughput": "output_tokens_per_s",
                    "request_throughput": "achieved_requests_per_s", "tp": "tensor_parallel",
                    "tensor_parallel_size": "tensor_parallel", "gpu": "hardware"}
# A length's standard deviation at most this many times its mean: beyond, a lognormal's median is ~0 and nearly
# every drawn length 1 token (ShareGPT's lengths vary by about 1-2 times their means)
_MAX_LENGTH_CV = 10.0
# A measured inter-token latency needs two output tokens a request: one has no gap between tokens.
_NO_ITL = "a run of one output token a request has no inter-token latency to compare"


def _rate(value, field: str, where: str) -> float:
    """A request rate: a number, or inf (the text `inf`, or JSON's Infinity) for every request at once."""
    if (isinstance(value, str) and value.strip().lower() in ("inf", "infinity")) or value == math.inf:
        return math.inf
    try:
        return number(value, field, where, minimum=1e-6, maximum=1e9)
    except SpecError as err:
        if err.got is None:  # empty or missing: nothing was written to offer inf against
            raise
        raise SpecError(field, f"{err.problem}, or inf (every request at once)", err.got, file=where) from None


def _blank(value) -> bool:
    """Whether a run leaves a column out: missing, null or an empty cell."""
    return value is None or (isinstance(value, str) and not value.strip())


def _clients(value, rate_per_s: float, where: str, rate_key: str, text: bool = True) -> int | None:
    """A run's max_concurrency: None (missing, null or an empty cell) for an open loop, else its clients,
    which drive a closed loop only at an unbounded rate (`rate_key`, as the file names it): vllm bench
    serve at a finite rate with --max-concurrency sends at the rate and holds each send while that many are
    in flight, which the simulator does not drive."""
    if _blank(value):
        return None
    clients = int(number(value, "max_concurrency", where, whole=True, minimum=1, maximum=1 << 20, text=text))
    if not math.isinf(rate_per_s):
        raise SpecError("max_concurrency", f"is simulated as a closed loop, at {rate_key} inf only (this "
                        f"run's is {rate_per_s:g}: requests sent at a rate and capped in flight is not modelled)",
                        clients, file=where)
    return clients


def _quantization(value, where: str) -> str:
    """A run's precision column as a quantization preset (fp16 where there is none: bf16 costs the same)."""
    from infersim.roofline.quant import PRESETS
    if _blank(value):
        return "fp16"
    name = value.strip().lower()
    if name not in PRESETS:
        raise SpecError("precision", f"must be a quantization preset: {', '.join(PRESETS)}", value, file=where)
    return name


def _stddev(value, field: str, where: str, mean_tokens: int) -> float:
    """A length's standard deviation in tokens: 0 (fixed lengths) where missing, null or an empty cell; at most
    `_MAX_LENGTH_CV` times the mean."""
    if _blank(value):
        return 0.0
    stddev = number(value, field, where, minimum=0.0, maximum=_TOKENS["maximum"])
    if stddev > _MAX_LENGTH_CV * mean_tokens:
        raise SpecError(field, f"is {stddev / mean_tokens:,.0f} times its mean of {mean_tokens:,} tokens: beyond "
                        f"{_MAX_LENGTH_CV:g} times, nearly every drawn length would be 1 token (ShareGPT's vary by "
                        f"1-2 times their means)", value, file=where)
    return stddev


def _burstiness(value, where: str, text: bool = True) -> float:
    """vllm bench serve's --burstiness, the Gamma shape of the gaps between sends: 1 (Poisson) where missing,
    null or an empty cell; inf (the text `inf`, or JSON's Infinity) sends at even gaps, as its client does
    (vllm/benchmarks/serve.py `get_request`: a constant delay where burstiness is infinite)."""
    if _blank(value):
        return 1.0
    if (isinstance(value, str) and value.strip().lower() in ("inf", "infinity")) or value == math.inf:
        return math.inf
    return number(value, "burstiness", where, minimum=1e-3, maximum=1e3, text=text)


def _optional(value, field: str, where: str, text: bool = True) -> float | None:
    """A measured figure a run may leave out: None where missing, null or an empty cell (text spelling a
    number is refused where `text` is False, in JSON)."""
    if value is None or (text and _blank(value)):
        return None
    return number(value, field, where, text=text, **_POSITIVE)


def _per_request(data: dict, field: str, where: str, count: int | None, *, whole: bool = True,
                 minimum: float = 0.0, maximum: float = _TOKENS["maximum"]) -> np.ndarray:
    """`data[field]` as a list of finite (whole, if `whole`) numbers from `minimum` to `maximum`, one per
    request (`count` of them if given)."""
    values = data.get(field)
    if not isinstance(values, list) or not values:
        raise SpecError(field, "must be a list with one number per request (as vllm bench serve --save-detailed "
                        "writes it)", type(values).__name__ if values is not None else None, file=where)
    if count is not None and len(values) != count:
        raise SpecError(field, f"must list as many requests as input_lens ({count}), not {len(values)}", file=where)
    for i, v in enumerate(values):
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not minimum <= v <= maximum
                or (whole and v != int(v))):
            kind = "whole numbers" if whole else "finite numbers"
            spec = ",.0f" if whole else "g"
            bounds = (f" from {minimum:{spec}} to {maximum:{spec}}" if math.isfinite(minimum) and math.isfinite(maximum)
                      else f" >= {minimum:{spec}}" if math.isfinite(minimum) else "")
            raise SpecError(field, f"must hold {kind}{bounds} only (request {i} has {v!r})", file=where)
    return np.asarray(values, dtype=np.float64)


def _measured_requests(data: dict, where: str) -> MeasuredRequests | None:
    """The completed requests of a --save-detailed file (output_lens >= 1; a failed request has 0), sorted by
    when they were sent; None where the file lists no requests."""
    if data.get("input_lens") is None and data.get("output_lens") is None:
        return None
    inputs = _per_request(data, "input_lens", where, None)
    outputs = _per_request(data, "output_lens", where, len(inputs))
    sent = None if data.get("start_times") is None else _per_request(data, "start_times", where, len(inputs),
                                                                      whole=False, minimum=-math.inf,
                                                                      maximum=math.inf)
    done = (outputs >= 1) & (inputs >= 1)
    if not done.any():
        raise SpecError("output_lens", "lists no completed request (each has 0 output tokens or 0 prompt tokens)",
                        file=where)
    inputs, outputs = inputs[done].astype(np.int64), outputs[done].astype(np.int64)
    if outputs.max() < 2:
        raise SpecError("output_lens", f"has no completed request of 2 or more output tokens; {_NO_ITL}", file=where)
    if sent is not None:
        from infersim.sim.workload import check_span
        sent = sent[done]
        order = np.argsort(sent, kind="stable")
        inputs, outputs, sent = inputs[order], outputs[order], sent[order] - sent[order][0]
        check_span(sent, "start_times", "check the send times", file=where)
    return MeasuredRequests(inputs, outputs, sent)


def _check_misspelt_columns(row: dict, where: str) -> None:
    """Other columns are the table's own, but one that looks like an optional column infersim reads (which the
    row lacks or leaves empty) is taken for a typo where it holds a value: read as nothing, it would leave a
    figure silently uncompared. Looks like: the same name in other letter case, another name for it (`_COLUMN_SYNONYMS`: vllm bench serve's
    mean_tpot_ms is the mean_itl_ms column), or a close spelling."""
    absent = [column for column in OPTIONAL_RUN_COLUMNS if column not in row]
    for column in row:
        meant = _column_meant(column, absent)
        if meant is not None and _blank(row.get(meant)) and not _blank(row[column]):
            raise SpecError(column, f"is not a column infersim reads: did you mean {meant}?", file=where)


def _column_meant(column, candidates) -> str | None:
    """The column infersim reads that a table's `column` stands for: itself in other letter case, another name
    for it (`_COLUMN_SYNONYMS`), or one of `candidates` it misspells; None for a column of the table's own."""
    known = RUN_COLUMNS + OPTIONAL_RUN_COLUMNS
    if column in known or not isinstance(column, str):
        return None
    name = column.strip().lower()
    return name if name in known else _COLUMN_SYNONYMS.get(name) or closest_name(name, candidates)


def read_csv_runs(path: Path) -> list[ServingRun]:
    runs = []
    for where, row in read_rows(path, "serving runs"):
        missing = [column for column in RUN_COLUMNS if column not in row]
        if len(missing) == len(RUN_COLUMNS):  # cells split on another delimiter than the comma, or another table
            raise SpecError("", f"names none of the columns of serving runs ({', '.join(RUN_COLUMNS)}): is it "
                            "comma-separated?", ", ".join(map(str, row)), file=where)
        if missing:
            written = next((c for c in row if _column_meant(c, missing) == missing[0]), None)
            if written is not None:
                raise SpecError(written, f"is not a column infersim reads: did you mean {missing[0]}?", file=where)
            raise SpecError(missing[0], "is not a column of this file (is it misspelt?)", ", ".join(map(str, row)),
                            file=where)
        _check_misspelt_columns(row, where)
        for column in ("model", "hardware"):
            if not isinstance(row.get(column), str) or not row[column].strip():
                raise SpecError(column, "is empty or missing: it must name a model or GPU (infersim models, "
                                "infersim hardware)",
                                row.get(column), file=where)
        rate_per_s = _rate(row["request_rate_per_s"], "request_rate_per_s", where)
        input_tokens = int(number_cell(row, "input_tokens", where, **_TOKENS))
        output_tokens = int(number_cell(row, "output_tokens", where, **_TOKENS))
        mean_itl_ms = _optional(row.get("mean_itl_ms"), "mean_itl_ms", where)
        if output_tokens < 2 and mean_itl_ms is not None:
            raise SpecError("output_tokens", f"must be >= 2 ({_NO_ITL}, mean_itl_ms)", row["output_tokens"], file=where)
        runs.append(ServingRun(
            where, row["model"], row["hardware"],
            int(number_cell(row, "tensor_parallel", where, whole=True, minimum=1, maximum=1024)),
            input_tokens, output_tokens,
            int(number_cell(row, "num_requests", where, whole=True, minimum=1, maximum=10_000_000)),
            rate_per_s,
            _optional(row.get("mean_ttft_ms"), "mean_ttft_ms", where), mean_itl_ms,
            number_cell(row, "output_tokens_per_s", where, **_POSITIVE),
            _clients(row.get("max_concurrency"), rate_per_s, where, "request_rate_per_s"),
            _optional(row.get("p99_ttft_ms"), "p99_ttft_ms", where),
            _optional(row.get("p99_itl_ms"), "p99_itl_ms", where), _burstiness(row.get("burstiness"), where),
            quantization=_quantization(row.get("precision"), where),
            input_tokens_stddev=_stddev(row.get("input_tokens_stddev"), "input_tokens_stddev", where, input_tokens),
            output_tokens_stddev=_stddev(row.get("output_tokens_stddev"), "output_tokens_stddev", where,
                                         output_tokens),
            achieved_requests_per_s=_optional(row.get("achieved_requests_per_s"), "achieved_requests_per_s", where)))
    return runs


# What other benchmark clients' files hold instead of a vllm bench serve result, by a key only theirs: the fix
_OTHER_EXPORTS = {
    "time_to_first_token": "is a GenAI-Perf or AIPerf profile export, which compare-serving does not read: give its "
                           "figures as a row of a CSV table (README, \"Checking against measured serving runs\")",
    "benchmark": "is vLLM's copy of a result in the PyTorch benchmark format (SAVE_TO_PYTORCH_BENCHMARK_FORMAT), not "
                 "the result itself: leave it out",
}


def _not_a_result(data, where: str) -> SpecError:
    """Why `data` is not a vllm bench serve result, naming the client that wrote it where a key tells."""
    record = data[0] if isinstance(data, list) and data else data
    if isinstance(record, dict):
        for key, problem in _OTHER_EXPORTS.items():
            if key in record and "completed" not in record:
                return SpecError("", problem, file=where)
    return SpecError("", "must hold the JSON object vllm bench serve --save-result writes (or one a line, as "
                     "--append-result and SGLang's bench_serving write them)", file=where)


def read_vllm_bench_json(path: Path, model: str, hardware: str, tensor_parallel: int,
                         quantization: str = "fp16") -> list[ServingRun]:
    """The runs of a `vllm bench serve --save-result` file: its one result, or one a line where the client
    appended them (vllm bench serve --append-result; SGLang's bench_serving.py writes its results so, with
    the same keys). Each run: its mean lengths (total tokens over completed requests), request rate and
    burstiness, its clients if it had --max-concurrency, measured means and 99th percentiles (TPOT as the
    inter-token latency, the per-request figure the simulator's TPOT and GenAI-Perf's ITL are), and, saved
    with --save-detailed, its own requests (`_measured_requests`)."""
    records = load_json_records(path, "serving runs", "a vllm bench serve result")
    return [_bench_run(data, where, model, hardware, tensor_parallel, quantization) for where, data in records]


def _bench_run(data, where: str, model: str, hardware: str, tensor_parallel: int, quantization: str) -> ServingRun:
    """One vllm bench serve (or SGLang bench_serving) result. A figure the client did not measure is left
    uncompared: missing (--percentile-metrics without it) or 0 (vLLM writes the mean of no samples so, as a
    backend that does not stream gives no TTFT)."""
    if not isinstance(data, dict) or "completed" not in data:
        raise _not_a_result(data, where)

    def figure(field: str, **bounds) -> float:
        return number(data.get(field), field, where, text=False, **bounds)

    def measured(field: str) -> float | None:
        return None if data.get(field) == 0 else _optional(data.get(field), field, where, text=False)

    for field in ("best_of", "n"):
        if isinstance(data.get(field), (int, float)) and data[field] > 1 or data.get("use_beam_search") is True:
            raise SpecError("best_of" if field == "n" and data.get("use_beam_search") is True else field,
                            "samples several sequences a request, which compare-serving simulates as one: compare "
                            "a run of one", data.get(field), file=where)
    completed = int(figure("completed", whole=True, minimum=1, maximum=10_000_000))
    rate_per_s = _rate(data.get("request_rate"), "request_rate", where)
    total_input = figure("total_input_tokens", minimum=1, maximum=completed * _TOKENS["maximum"])
    total_output = figure("total_output_tokens", minimum=1, maximum=completed * _TOKENS["maximum"])
    mean_itl_ms = measured("mean_tpot_ms")
    if round(total_output / completed) < 2 and mean_itl_ms is not None:
        raise SpecError("total_output_tokens", f"averages {total_output / completed:.3g} tokens over the "
                        f"{completed:g} completed requests; {_NO_ITL} (mean_tpot_ms)", total_output, file=where)
    requests = _measured_requests(data, where)
    if requests is not None:
        _check_requests_match_totals(requests, data, completed, total_input, total_output, where)
    if data.get("ramp_up_strategy") is not None and (requests is None or requests.sent_s is None):
        raise SpecError("ramp_up_strategy", "sends at a changing rate, which only the send times of --save-detailed "
                        "(start_times) tell: save the run with --save-detailed or at a fixed --request-rate",
                        data["ramp_up_strategy"], file=where)
    # vllm bench serve's 0 clients is no limit (`if max_concurrency else None`); its first releases spelt the
    # achieved rate request_inthroughput
    clients = data.get("max_concurrency") or None
    achieved = data.get("request_throughput", data.get("request_inthroughput"))
    spreads = (0.0, 0.0) if requests is not None else _random_dataset_spreads(data, where)
    return ServingRun(
        where, model, hardware, tensor_parallel, max(1, round(total_input / completed)),
        max(1, round(total_output / completed)), completed, rate_per_s, measured("mean_ttft_ms"), mean_itl_ms,
        figure("output_throughput", **_POSITIVE), _clients(clients, rate_per_s, where, "request_rate", text=False),
        measured("p99_ttft_ms"), measured("p99_tpot_ms"), _burstiness(data.get("burstiness"), where, text=False),
        requests, _quantization(quantization, where), input_tokens_stddev=spreads[0],
        output_tokens_stddev=spreads[1],
        achieved_requests_per_s=_optional(achieved, "request_throughput", where, text=False))


def _random_dataset_spreads(data: dict, where: str) -> tuple[float, float]:
    """The standard deviations of prompt and output lengths of a run on SGLang's random dataset, which its
    result records (dataset_name, random_input_len, random_output_len, random_range_ratio): each length is drawn
    uniformly from the whole numbers max(1, int(L x ratio)) to L (bench_serving.py `sample_random_requests`;
    outputs run to their length, ignore_eos on by default), so n = L - low + 1 of them, deviation
    sqrt((n^2 - 1) / 12). (0, 0) for any other dataset, or a file that does not say."""
    if data.get("dataset_name") != "random" or data.get("random_range_ratio") is None:
        return 0.0, 0.0
    ratio = number(data["random_range_ratio"], "random_range_ratio", where, text=False, minimum=0.0, maximum=1.0)

    def spread(field: str) -> float:
        longest = int(number(data.get(field), field, where, text=False, **_TOKENS))
        values = longest - max(1, int(longest * ratio)) + 1
        return math.sqrt((values ** 2 - 1) / 12)
    return spread("random_input_len"), spread("random_output_len")


def _check_requests_match_totals(requests: MeasuredRequests, lists: dict, completed: int, total_input: float,
                                 total_output: float, where: str) -> None:
    """A --save-detailed file's lists are of the run its totals count. vllm bench serve lists every request sent
    (a failed one with 0 output tokens) and counts as completed, and sums the prompts of, the successful ones,
    an empty generation among them (0 output tokens too, so not simulated here): at most `completed` requests
    are simulated, at least as many listed, and the output tokens listed sum to total_output_tokens (1%)."""
    simulated, listed = len(requests.input_tokens), len(lists["input_lens"])
    if not simulated <= completed <= listed:
        raise SpecError("output_lens", f"lists {listed:,} requests, {simulated:,} of them with output tokens, but "
                        f"completed is {completed:,}: are the lists from another run?", file=where)
    listed_output, listed_input = float(sum(lists["output_lens"])), float(sum(lists["input_lens"]))
    if abs(listed_output - total_output) > 0.01 * total_output:
        raise SpecError("output_lens", f"sums to {listed_output:,.0f} tokens but total_output_tokens is "
                        f"{total_output:,.0f}: are the lists from another run?", file=where)
    simulated_input = requests.input_tokens.sum()
    if not simulated_input <= 1.01 * total_input <= 1.02 * listed_input:
        raise SpecError("input_lens", f"sums to {listed_input:,.0f} tokens over all requests and "
                        f"{simulated_input:,.0f} over those with output tokens, but total_input_tokens "
                        f"is {total_input:,.0f}: are the lists from another run?", file=where)


def read_runs(paths: list[Path], model: str | None = None, hardware: str | None = None,
              tensor_parallel: int | None = None, quantization: str | None = None) -> list[ServingRun]:
    """Every run of `paths`, in order: the rows of CSV tables (each naming its model, GPU, parallelism and
    optionally precision) and `vllm bench serve --save-result` files, a run each (one per request rate of a
    sweep), on the `model`, `hardware`, `tensor_parallel` and `quantization` given, which the files do not
    say and which apply to them only."""
    given = {"--model": model, "--hardware": hardware, "--tp": tensor_parallel, "--quant": quantization}
    for path in paths:
        check_readable(path, "serving runs")
    if not any(_is_json(path) for path in paths):
        for flag, value in given.items():
            if value is not None:
                raise SpecError(flag, "applies to a vllm bench serve JSON only (each row of a CSV names its model, "
                                "hardware, tensor_parallel and precision)", value)
    elif not (model and hardware):
        raise SpecError("--model, --hardware", "are needed with a vllm bench serve JSON (it does not say which "
                        "model and GPU it measured)")
    else:
        quantization = "fp16" if quantization is None else quantization
        _check_json_flags(model, hardware, tensor_parallel or 1, quantization)
    return [run for path in paths
            for run in (read_vllm_bench_json(path, model, hardware, tensor_parallel or 1, quantization)
                        if _is_json(path) else read_csv_runs(path))]


def _is_json(path: Path) -> bool:
    """Whether `path` holds benchmark clients' JSON results (.json, or .jsonl: one a line) rather than a CSV."""
    return path.suffix.lower() in (".json", ".jsonl")


def _check_json_flags(model: str, hardware: str, tensor_parallel: int, quantization: str) -> None:
    """What the flags say of the JSON files' runs holds together, each error naming its flag: the model's
    heads split over --tp GPUs of one fabric, and --quant a preset the GPU has the peak for."""
    from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
    from infersim.roofline.quant import check_runs_on, get_quant
    from infersim.roofline.step import check_fabric, layer_widths

    spec, gpu = get_model(model, field="--model"), get_hardware(hardware, field="--hardware")
    try:
        quant = get_quant(quantization)
    except SpecError as err:
        raise SpecError("--quant", err.problem, quantization) from None
    check_runs_on(quant, gpu, "--quant", quantization)
    try:
        layer_widths(spec, tensor_parallel)
        check_fabric(gpu, StepOptions(parallel=Parallelism(tensor_parallel)))
    except SpecError as err:
        raise SpecError("--tp", err.problem, tensor_parallel) from None


def arrivals_of(run: ServingRun, seed: int, n: int | None = None) -> np.ndarray:
    """When `n` requests (the run's count if None) are sent: all at once (rate `inf`, or a single request),
    or a Poisson draw from 0 whose n - 1 gaps are scaled to average 1 / rate; Gamma gaps of shape
    `run.burstiness` where that is not 1 (vllm bench serve draws its gaps so: coefficient of variation
    1 / sqrt(burstiness); even gaps where it is inf). One draw of 500 misses its rate by 4.5% (1 sigma), where a benchmark achieves its
    nominal rate at light load (NVIDIA's table: 2.0 requests/s at 2)."""
    from infersim.sim.workload import arrival_times

    n = run.num_requests if n is None else n
    if math.isinf(run.request_rate_per_s) or n == 1:
        return np.zeros(n)
    rng = np.random.default_rng(seed)
    if math.isinf(run.burstiness):
        arrivals = arrival_times("constant", run.request_rate_per_s, n, rng)
    elif run.burstiness == 1.0:
        arrivals = arrival_times("poisson", run.request_rate_per_s, n, rng)
    else:
        arrivals = arrival_times("gamma", run.request_rate_per_s, n, rng, cv=1 / math.sqrt(run.burstiness))
    if arrivals[-1] == 0:  # every Gamma gap rounded to 0 (a burstiness near 0): all sent at once
        return np.zeros(n)
    return arrivals * ((n - 1) / run.request_rate_per_s / arrivals[-1])


# How much longer than fixed lengths allow a run may last before its lengths are taken to vary: a draw of 500
# Poisson arrivals spans its nominal time to within 4.5% (1 sigma), and a table's rounded rate (NVIDIA's gives
# whole requests/s) is off by up to 4% at 13 requests/s
LONGER_THAN_FIXED = 1.15


def lengths_note(run: ServingRun) -> str | None:
    """A note where a run lasted longer than fixed lengths allow: its requests, sent over (n - 1) / rate, end
    by then plus its mean TTFT and (output - 1) mean inter-token gaps of the last one, unless some outputs
    are longer than the mean (a dataset's lengths vary) or its client fell behind its rate. None where the run
    gives no achieved rate, sent at an unbounded rate or by clients, or is simulated with varying lengths
    already."""
    if (run.achieved_requests_per_s is None or run.mean_ttft_ms is None or run.mean_itl_ms is None
            or math.isinf(run.request_rate_per_s) or run.max_concurrency is not None or run.requests is not None
            or run.input_tokens_stddev or run.output_tokens_stddev):
        return None
    sending_s = (run.num_requests - 1) / run.request_rate_per_s
    fixed_s = sending_s + (run.mean_ttft_ms + (run.output_tokens - 1) * run.mean_itl_ms) / 1e3
    lasted_s = run.num_requests / run.achieved_requests_per_s
    if lasted_s <= LONGER_THAN_FIXED * fixed_s:
        return None
    fix = ("save the run with --save-detailed, which lists each request's lengths" if _is_json(Path(run.where.split(":")[0]))
           else "give their spread (output_tokens_stddev) or each request's (a vllm bench serve --save-detailed file)")
    return (f"{run.where}: it lasted {lasted_s:.0f} s ({run.num_requests} requests at {run.achieved_requests_per_s:g} "
            f"requests/s), but requests sent over {sending_s:.0f} s with {run.output_tokens}-token outputs at its "
            f"{run.mean_itl_ms:g} ms ITL end by {fixed_s:.0f} s: its outputs likely vary in length (a long one ends "
            f"last), so fixed lengths will overstate its tokens/s; {fix}")


def spread_lengths(mean_tokens: int, stddev_tokens: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` token lengths drawn lognormal with the run's mean and standard deviation (positive and
    right-skewed, as a dataset's lengths are; a normal of a deviation near its mean would put a sixth of its
    draws below zero, and cutting them off would raise the mean the run measured), rounded to whole tokens
    and at least one (which lifts the mean of a spread many times the mean), fixed where the deviation is 0."""
    from infersim.sim.workload import sample_lengths

    if stddev_tokens <= 0:
        return np.full(count, mean_tokens, dtype=np.int64)
    return sample_lengths("lognormal", count, rng, mean=mean_tokens, std=stddev_tokens)


def workload_of(run: ServingRun, seed: int):
    """The run's requests: its own where the file lists them (sent when they were, where it says so, else at
    `arrivals_of`), otherwise `num_requests` of its lengths (fixed, or drawn with its standard deviations)
    sent at `arrivals_of`."""
    from infersim.sim.workload import Workload

    own = run.requests
    if own is None:
        n = run.num_requests
        rng = np.random.default_rng([seed, 1])  # apart from the arrivals' stream: a spread leaves them as they are
        return Workload(arrivals_of(run, seed),
                        spread_lengths(run.input_tokens, run.input_tokens_stddev, n, rng),
                        spread_lengths(run.output_tokens, run.output_tokens_stddev, n, rng))
    sent_s = own.sent_s if own.sent_s is not None else arrivals_of(run, seed, len(own.input_tokens))
    return Workload(sent_s, own.input_tokens, own.output_tokens)


def deployment_of(engine):
    """An engine as simulate_run takes it: a preset's name, or an EngineFile (a preset with a scenario's
    engine, scheduler and kv_cache keys over it), as an EngineFile."""
    from infersim.scenario import EngineFile, EngineSection
    return engine if isinstance(engine, EngineFile) else EngineFile(engine=EngineSection(preset=engine))


def run_setup(run: ServingRun, engine, seed: int = 0):
    """(RunConfig, Workload) of the run under `engine` (a preset's name or an EngineFile): its model, GPU,
    quantization and tensor parallelism, contexts up to its longest request, its clients when it had
    max_concurrency. Mistakes are named as the run's file, or the engine file, writes them."""
    from infersim.roofline import Parallelism, get_hardware, get_model
    from infersim.roofline.quant import get_quant
    from infersim.scenario import deployed_config
    try:
        model = get_model(run.model)
        workload = workload_of(run, seed)
        longest = int((workload.prompt_tokens + workload.output_tokens).max())
        if longest > model.max_context_tokens:
            spreads = [(column, value) for column, value in (
                ("input_tokens_stddev", run.input_tokens_stddev), ("output_tokens_stddev", run.output_tokens_stddev))
                if value]
            if spreads and run.requests is None:
                raise SpecError(" and ".join(column for column, _ in spreads),
                                f"draw a request of {longest:,} tokens, beyond {model.name}'s context of "
                                f"{model.max_context_tokens:,}: lower the spread",
                                ", ".join(f"{value:g}" for _, value in spreads))
            field = "input_lens + output_lens" if run.requests is not None else "input_tokens + output_tokens"
            raise SpecError(field, f"reach {longest:,} tokens, beyond {model.name}'s context of "
                            f"{model.max_context_tokens:,}, so no request could be served", longest)
        return deployed_config(deployment_of(engine), model, get_hardware(run.hardware), get_quant(run.quantization),
                               Parallelism(run.tensor_parallel), longest, concurrency=run.max_concurrency), workload
    except SpecError as err:
        raise _in_run_terms(err, run, engine) from None


def simulate_run(run: ServingRun, engine, seed: int = 0, overhead=None) -> Comparison:
    """The run's workload through `engine` (a preset's name or an EngineFile) on the run's model, GPU and
    tensor parallelism (with another host model than the engine's, if given), driven by its clients when it
    had max_concurrency."""
    from dataclasses import replace

    from infersim.sim.run import requests_from, simulate

    cfg, workload = run_setup(run, engine, seed)
    if overhead is not None:
        cfg = replace(cfg, overhead=overhead)
    try:
        summary = simulate(cfg, requests_from(workload)).summary
    except SpecError as err:
        raise _in_run_terms(err, run, engine) from None
    if summary["ttft_s"]["mean"] is None:
        raise SpecError("", "no request of this run could be served (see infersim run for the reason)", file=run.where)

    def ms(figure: str, stat: str) -> float:
        value = summary[figure][stat]
        return math.nan if value is None else value * 1e3

    return Comparison(run, ms("ttft_s", "mean"), ms("tpot_s", "mean"), summary["throughput_tokens_per_s"],
                      ms("ttft_s", "p99"), ms("tpot_s", "p99"))


# The scenario fields a simulation's error may name, as a CSV row's column and a vllm bench serve JSON's field
# or flag call them, with the run's value of each
_RUN_TERMS = {"parallelism.tensor_parallel": ("tensor_parallel", "--tp", lambda run: run.tensor_parallel),
              "quantization": ("precision", "--quant", lambda run: run.quantization),
              "workload.arrival.rate_per_s": ("request_rate_per_s", "request_rate",
                                              lambda run: run.request_rate_per_s)}


def _in_run_terms(err: SpecError, run: ServingRun, engine) -> SpecError:
    """A simulation's error as found in the file that set what it names: the engine file for its own keys,
    else the run's file, naming the column (or JSON field) the user wrote, with its value, rather than the
    scenario field it became."""
    deployment = deployment_of(engine)
    if deployment.file and err.field.split(".")[0] in type(deployment).model_fields:
        return err.in_file(deployment.file)
    if deployment.file and isinstance(err, HardwareLimit):  # the GPU the run names, with what the file sets
        return err.in_file(f"{run.where} under {deployment.file}")
    if err.field not in _RUN_TERMS:
        return err.in_file(run.where)
    column, json_field, value_of = _RUN_TERMS[err.field]
    name = json_field if _is_json(Path(run.where.split(":")[0])) else column
    return type(err)(name, err.problem, value_of(run) if err.got is None else err.got, err.file or run.where)


def error_summary(comparisons: list[Comparison]) -> dict:
    """Median and 90th-percentile |relative error| of each figure, over the runs that have it (a figure no
    run has, e.g. a 99th percentile nobody measured, is left out)."""
    out = {}
    for key in ("ttft", "itl", "output_tokens_per_s", "p99_ttft", "p99_itl"):
        errors = np.abs([e[key] for e in (c.errors() for c in comparisons) if key in e])
        errors = errors[np.isfinite(errors)]
        if not errors.size:
            continue
        out[key] = {"median_abs_err": float(np.median(errors)), "p90_abs_err": float(np.percentile(errors, 90)),
                    "runs": int(errors.size)}
    return out


def highest_rate_within(comparisons: list[Comparison], ttft_ms: float, measured: bool) -> dict:
    """Per series (model, GPU, TP, lengths: `series_keys`), the highest finite request rate whose mean TTFT,
    measured or simulated, stays under `ttft_ms`."""
    best: dict = {}
    for c, key in zip(comparisons, series_keys([c.run for c in comparisons])):
        r = c.run
        if math.isinf(r.request_rate_per_s):
            continue
        if r.mean_ttft_ms is None:  # not measured: neither side can say
            continue
        if (r.mean_ttft_ms if measured else c.ttft_ms) < ttft_ms:
            best[key] = max(best.get(key, 0.0), r.request_rate_per_s)
        else:
            best.setdefault(key, 0.0)
    return best


@dataclass(frozen=True)
class HostFit:
    fixed_s: float
    per_seq_s: float
    frontend_s: float
    errors_before: dict
    errors_after: dict
    # what the runs leave loose: a parameter's name -> why its value is not to be trusted
    loose: dict = field(default_factory=dict)


_FLAT_LOSS = 0.002  # a parameter moving the fitted error by less than this (0.2 points) over its grid is unpinned


def fit_host_overhead(runs: list[ServingRun], engine, progress=lambda text: None) -> HostFit:
    """The host time per step of `engine` (a preset's name or an EngineFile; fixed and per sequence, starting
    from the engine's; whether it overlaps the GPU stays the engine's) and the front end's time per request
    that best predict the runs' mean TTFT and ITL: the mean
    of their median |relative errors|. Overlapped host time changes nothing until it outlasts the GPU's
    step, so the search is a grid, not a descent: the fixed part over 0.1-30 ms, the per-sequence part over
    1-300 us, then the front end over 0.5-50 ms (each trial simulates every run)."""
    from dataclasses import replace

    start = run_setup(runs[0], engine)[0].overhead

    if not any(r.mean_ttft_ms is not None or r.mean_itl_ms is not None for r in runs):
        raise SpecError("--from-serving", "the runs measure no mean TTFT or ITL for the host time to be fitted to")

    def loss_of(overhead) -> tuple[float, dict]:
        errors = error_summary([simulate_run(run, engine, overhead=overhead) for run in runs])
        latencies = [errors[key]["median_abs_err"] for key in ("ttft", "itl") if key in errors]
        return sum(latencies) / len(latencies), errors

    best_loss, before = loss_of(start)
    best, errors, loose = start, before, {}
    for name, grid in (("fixed_s", np.geomspace(1e-4, 3e-2, 10)), ("per_seq_s", np.geomspace(1e-6, 3e-4, 6)),
                       ("frontend_s", np.geomspace(5e-4, 5e-2, 9))):
        losses = []
        for value in grid:
            trial = replace(best, **{name: float(value)})
            loss, trial_errors = loss_of(trial)
            losses.append(loss)
            progress(f"{name} {value:.3g}: loss {loss:.4f}")
            if loss < best_loss - 1e-6:
                best, best_loss, errors = trial, loss, trial_errors
        span = f"{grid[0]:.3g}-{grid[-1]:.3g} s"
        if max(losses) - min(losses) < _FLAT_LOSS:
            loose[name] = f"the runs do not pin it down (the error moves less than 0.2 points over {span})"
        elif getattr(best, name) in (grid[0], grid[-1]):
            loose[name] = f"it sits at an end of its grid ({span}): the runs may want a value beyond it"
    return HostFit(best.fixed_s, best.per_seq_s, best.frontend_s, before, errors, loose)
