"""Where requests come from: generated arrival processes and length distributions, or trace files.

Arrivals: Poisson (exponential gaps), Gamma gaps with a coefficient of variation (cv > 1 is burstier than
Poisson, cv < 1 smoother; cv = 1 is Poisson) or a constant rate. Lengths: fixed, uniform, normal,
lognormal (given the mean and standard deviation of the tokens themselves), Zipf, or rows sampled from a
lengths file. Traces: CSV or JSONL with `arrival_time_s, prompt_tokens, output_tokens`, the Azure LLM
inference trace (`TIMESTAMP, ContextTokens, GeneratedTokens`; timestamps without a zone are UTC) and Vidur's processed traces (`arrived_at,
num_prefill_tokens, num_decode_tokens`). Everything is drawn from one seeded NumPy generator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from infersim.roofline.boundary import number_cell, read_rows
from infersim.roofline.errors import SpecError, closest_name
from infersim.roofline.models import MAX_CONTEXT_TOKENS

ARRIVAL_PROCESSES = ("poisson", "gamma", "constant")
MAX_SPAN_S = 1e8  # at 1e8 s a float64 clock still resolves 15 ns, a thousandth of the shortest step
LENGTH_KINDS = ("fixed", "uniform", "normal", "lognormal", "zipf")
# (arrival, prompt, output) column names of each supported trace format
TRACE_COLUMNS = (("arrival_time_s", "prompt_tokens", "output_tokens"),
                 ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
                 ("arrived_at", "num_prefill_tokens", "num_decode_tokens"))


@dataclass(frozen=True)
class Workload:
    """Requests as parallel arrays, sorted by arrival."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def arrival_times(process: str, rate_per_s: float, count: int, rng: np.random.Generator,
                  cv: float = 1.0) -> np.ndarray:
    """Arrival times of `count` requests starting at 0 with mean rate `rate_per_s`."""
    if process == "poisson":
        gaps = rng.exponential(1.0 / rate_per_s, count)
    elif process == "gamma":
        shape = 1.0 / cv ** 2  # Gamma(k, theta): mean k theta, cv 1/sqrt(k)
        gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), count)
    elif process == "constant":
        gaps = np.full(count, 1.0 / rate_per_s)
    else:
        raise SpecError("workload.arrival.process", f"must be one of {', '.join(ARRIVAL_PROCESSES)}", process)
    gaps[0] = 0.0
    times = np.cumsum(gaps)
    check_span(times, "workload.arrival.rate_per_s", "raise the rate or simulate fewer requests")
    return times


def sample_lengths(kind: str, count: int, rng: np.random.Generator, *, value: int = 0, low: int = 1,
                   high: int = 1, mean: float = 0.0, std: float = 0.0, zipf_a: float = 1.5,
                   max_tokens: int = 1 << 30) -> np.ndarray:
    """`count` token lengths, rounded and clipped to [1, max_tokens]."""
    if kind == "fixed":
        x = np.full(count, float(value))
    elif kind == "uniform":
        x = rng.integers(low, high, count, endpoint=True).astype(np.float64)
    elif kind == "normal":
        x = rng.normal(mean, std, count)
    elif kind == "lognormal":
        sigma2 = np.log1p((std / mean) ** 2)  # moments of a lognormal: mean e^(mu + s^2/2), cv^2 = e^(s^2) - 1
        x = rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), count)
    elif kind == "zipf":
        x = rng.zipf(zipf_a, count).astype(np.float64) * max(1, value)
    else:
        raise SpecError("workload.lengths.kind", f"must be one of {', '.join(LENGTH_KINDS)} or a file", kind)
    return np.clip(np.rint(x), 1, max_tokens).astype(np.int64)


SECONDS, NAIVE, ZONED = "seconds", "a timestamp without a time zone", "a timestamp with a time zone"
_FRACTION = re.compile(r"(?<=:[0-9][0-9])\.([0-9]+)")  # the fraction of a second after hh:mm:ss


def _arrival_s(row: dict, column: str, where: str) -> tuple[float, str]:
    """(seconds, which of SECONDS, NAIVE, ZONED the cell held): seconds (a finite number >= 0) or a
    timestamp such as the Azure trace's 2023-11-16 18:15:46.6805900, read as UTC unless it names its zone."""
    text = row.get(column)
    if isinstance(text, str):
        try:
            float(text)
        except ValueError:
            return _timestamp_s(text, column, where)
    return number_cell(row, column, where), SECONDS


def _timestamp_s(text: str, column: str, where: str) -> tuple[float, str]:
    """Seconds since the epoch; the fraction of a second is read here, as fromisoformat keeps microseconds only
    (and Python 3.10's takes no other count of digits, nor a Z)."""
    stamp = text.strip()
    fraction = _FRACTION.search(stamp)
    if fraction:
        stamp = stamp[:fraction.start()] + stamp[fraction.end():]
    try:
        moment = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
    except ValueError:
        raise SpecError(column, "must be seconds (a finite number >= 0) or a timestamp such as "
                        "2023-11-16 18:15:46.68", text, file=where) from None
    kind = NAIVE if moment.tzinfo is None else ZONED
    seconds = moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp()
    return seconds + (float("0." + fraction[1]) if fraction else 0.0), kind


def _columns(path: Path, header, need_arrival: bool) -> tuple:
    for arrival, prompt, output in TRACE_COLUMNS:
        if prompt in header and output in header and (arrival in header or not need_arrival):
            return arrival, prompt, output
    wanted = " or ".join(", ".join(c if need_arrival else c[1:]) for c in TRACE_COLUMNS)
    # the format the header comes nearest to (most of its columns present, then most one slip away), and the
    # columns of that format its others slip from
    def slips_from(columns) -> list[str]:
        return [f"{closest} for {h}" for h in map(str, header) if h not in columns
                for closest in [closest_name(h, columns, cutoff=0.75)] if closest]
    nearest = max(TRACE_COLUMNS, key=lambda columns: (sum(c in header for c in columns), len(slips_from(columns))))
    slips = slips_from(nearest)
    meant = f" (did you mean {', '.join(slips)}?)" if slips else ""
    raise SpecError("", f"needs columns {wanted} in its header (line 1), which holds "
                    f"{', '.join(map(str, header))}{meant}", file=path.name)


def _read(path: Path, field: str, need_arrival: bool) -> tuple[list, list, list]:
    """Arrival times, prompt and output tokens of every row; prompts hold >= 1 token, outputs >= 0."""
    arrivals, prompts, outputs = [], [], []
    cols = first = None
    for where, row in read_rows(path, field):
        if cols is None:
            cols = _columns(path, list(row), need_arrival)
        if need_arrival:
            seconds, kind = _arrival_s(row, cols[0], where)
            first = first or (kind, where)
            if kind != first[0]:  # a naive timestamp beside a zoned one is hours off, or seconds beside dates
                raise SpecError(cols[0], f"is {kind} but {first[1]} holds {first[0]}; give every row the same kind",
                                row[cols[0]], file=where)
            arrivals.append(seconds)
        prompts.append(int(number_cell(row, cols[1], where, whole=True, minimum=1, maximum=MAX_CONTEXT_TOKENS)))
        outputs.append(int(number_cell(row, cols[2], where, whole=True, minimum=0, maximum=MAX_CONTEXT_TOKENS)))
    return arrivals, prompts, outputs


def check_span(arrival_s: np.ndarray, field: str, fix: str, file: str | None = None) -> None:
    """Arrivals must fall within MAX_SPAN_S: beyond it float seconds no longer resolve a step's time."""
    span_s = float(arrival_s[-1] - arrival_s[0]) if len(arrival_s) else 0.0
    if not span_s <= MAX_SPAN_S:
        raise SpecError(field, f"{len(arrival_s):,} arrivals span {span_s:.3g} s, beyond the {MAX_SPAN_S:.0e} s "
                        f"(3 years) the simulated clock resolves; {fix}", file=file)


def read_trace(path: Path | str, rate_scale: float = 1.0, max_requests: int | None = None,
               field: str = "workload.trace.path") -> Workload:
    """A trace replayed from its first arrival; `rate_scale` = 2 replays it twice as fast (twice the load,
    the same burstiness). Outputs of zero tokens are raised to one."""
    path = Path(path)
    arrivals, prompts, outputs = _read(path, field, need_arrival=True)
    t = np.asarray(arrivals, dtype=np.float64)
    order = np.argsort(t, kind="stable")[:max_requests]
    with np.errstate(over="ignore"):
        t = (t[order] - t[order[0]]) / rate_scale
    check_span(t, "", "replay it faster (workload.trace.rate_scale) or use fewer rows", file=path.name)
    return Workload(t, np.asarray(prompts)[order], np.maximum(1, np.asarray(outputs)[order]))


def read_lengths(path: Path | str, field: str = "workload.lengths_file") -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) token counts of every row of a trace or lengths-only file (outputs of zero tokens
    are raised to one)."""
    _, prompts, outputs = _read(Path(path), field, need_arrival=False)
    return np.asarray(prompts), np.maximum(1, np.asarray(outputs))
