"""Where requests come from: generated arrival processes and length distributions, or trace files.

Arrivals: Poisson (exponential gaps), Gamma gaps with a coefficient of variation (cv > 1 is burstier than
Poisson, cv < 1 smoother; cv = 1 is Poisson) or a constant rate. Lengths: fixed, uniform, normal,
lognormal (given the mean and standard deviation of the tokens themselves), Zipf, or rows sampled from a
lengths file. Traces: CSV or JSONL with `arrival_time_s, prompt_tokens, output_tokens`, the Azure LLM
inference trace (`TIMESTAMP, ContextTokens, GeneratedTokens`) and Vidur's processed traces (`arrived_at,
num_prefill_tokens, num_decode_tokens`). Everything is drawn from one seeded NumPy generator.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from infersim.roofline.errors import SpecError

ARRIVAL_PROCESSES = ("poisson", "gamma", "constant")
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
    return np.cumsum(gaps)


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


def _rows(path: Path):
    """Dict rows of a CSV or JSONL file, with their line numbers."""
    if not path.is_file():
        raise SpecError("workload.trace", "file not found (paths are relative to the scenario file)", str(path))
    with path.open(newline="") as f:
        if path.suffix in (".jsonl", ".json"):
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield line_no, json.loads(line)
                    except json.JSONDecodeError as e:
                        raise SpecError(f"{path.name}:{line_no}", f"is not valid JSON ({e.msg})", line.strip()[:40])
        else:
            for line_no, row in enumerate(csv.DictReader(f), 2):
                yield line_no, row


def _timestamp_s(text) -> float:
    """Seconds from a number or an Azure-trace timestamp such as 2023-11-16 18:15:46.6805900."""
    try:
        return float(text)
    except ValueError:
        head, _, frac = str(text).partition(".")
        return datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)


def _columns(path: Path, header, need_arrival: bool) -> tuple:
    for arrival, prompt, output in TRACE_COLUMNS:
        if prompt in header and output in header and (arrival in header or not need_arrival):
            return arrival, prompt, output
    wanted = " or ".join(", ".join(c if need_arrival else c[1:]) for c in TRACE_COLUMNS)
    raise SpecError(f"workload.trace ({path.name})", f"needs columns {wanted}", ", ".join(header))


def _read(path: Path, need_arrival: bool) -> tuple[list, list, list]:
    arrivals, prompts, outputs = [], [], []
    cols = None
    for line_no, row in _rows(path):
        if cols is None:
            cols = _columns(path, list(row), need_arrival)
        try:
            if need_arrival:
                arrivals.append(_timestamp_s(row[cols[0]]))
            prompts.append(int(float(row[cols[1]])))
            outputs.append(int(float(row[cols[2]])))
        except (ValueError, TypeError, KeyError):
            raise SpecError(f"{path.name}:{line_no}", "needs numbers in " + ", ".join(cols[not need_arrival:]),
                            {k: row.get(k) for k in cols if k in row})
    if not prompts:
        raise SpecError("workload.trace", "holds no requests", str(path))
    return arrivals, prompts, outputs


def read_trace(path: Path | str, rate_scale: float = 1.0, max_requests: int | None = None) -> Workload:
    """A trace replayed from its first arrival; `rate_scale` = 2 replays it twice as fast (twice the load,
    the same burstiness). Lengths below one token are raised to one."""
    arrivals, prompts, outputs = _read(Path(path), need_arrival=True)
    t = np.asarray(arrivals, dtype=np.float64)
    order = np.argsort(t, kind="stable")[:max_requests]
    t = (t[order] - t[order[0]]) / rate_scale
    return Workload(t, np.maximum(1, np.asarray(prompts)[order]), np.maximum(1, np.asarray(outputs)[order]))


def read_lengths(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, output) token counts of every row of a trace or lengths-only file."""
    _, prompts, outputs = _read(Path(path), need_arrival=False)
    return np.maximum(1, np.asarray(prompts)), np.maximum(1, np.asarray(outputs))
