"""What a run measured: per-step timeline and inter-token gaps gathered into NumPy arrays (never one
Python object per step or token), and the summary statistics computed from them and from the requests."""
from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import numpy as np
from numba import njit

from infersim.roofline.step import UtilizationPeaks

from .blocks import cumulative_new_blocks
from .request import DONE, REJECTED, Request

class StepRecord(NamedTuple):
    """One step of the timeline."""

    start_s: float
    duration_s: float
    replica: int
    batch_seqs: int
    prefill_tokens: int
    decode_tokens: int
    kv_blocks_used: int  # when it ended, before its finished requests freed theirs
    queue_len: int  # requests waiting when the scheduler planned it, before it admitted any
    kv_tokens: int  # tokens whose K/V those blocks hold (a prompt shared by n sequences counts n times)


TIMELINE_COLUMNS = StepRecord._fields


class RunRecord(NamedTuple):
    """A run of decode steps of one batch; its steps' rows follow from these and its block growth."""

    replica: int
    batch_seqs: int
    kv_blocks_before: int
    queue_len: int  # requests waiting when the scheduler planned the run
    queue_len_after_plan: int  # ... and once it had (what the run's later steps see)
    growing_seqs: int  # sequences whose blocks grow (0 when reservations never do)
    pending_copies: int
    kv_tokens_before: int


_STEP_DTYPE = np.dtype([(c, np.float64 if c.endswith("_s") else np.int64) for c in TIMELINE_COLUMNS])
_RUN_DTYPE = np.dtype([(c, np.int64) for c in RunRecord._fields])
GATHER = 4096  # appended rows or arrays made into one NumPy array at a time
CHUNK_ROWS = 1 << 18  # timeline rows sealed into one compact chunk (summing one takes ~25 B a row)
STREAM_AFTER_ROWS = 1 << 24  # a longer timeline is not kept: its totals are summed chunk by chunk instead


class Rows:
    """Rows (scalars, tuples of a structured dtype, or arrays of one width) appended one call at a time: a
    call costs a list append, and every `GATHER` rows become one NumPy array, so no Python object per row
    lives for long."""

    def __init__(self, dtype):
        self._dtype, self._pending, self._gathered, self.n = np.dtype(dtype), [], [], 0

    def append(self, row) -> None:
        self._pend(row, 1)

    def _pend(self, item, rows: int) -> None:
        self._pending.append(item)
        self.n += rows
        if len(self._pending) == GATHER:
            self._gather()

    def _gather(self) -> None:
        if self._pending:
            self._gathered.append(self._joined(self._pending))
            self._pending = []

    def _joined(self, pending: list) -> np.ndarray:
        return np.array(pending, dtype=self._dtype)

    def absorb(self, other: "Rows") -> None:
        """Append another's rows (or arrays) after these."""
        self.add_array(other.values)

    def add_array(self, values: np.ndarray) -> None:
        """Append rows already made into an array (of this dtype)."""
        self._gather()
        self._gathered.append(values)
        self.n += len(values)

    @property
    def values(self) -> np.ndarray:
        self._gather()
        if len(self._gathered) != 1:
            self._gathered = [np.concatenate(self._gathered) if self._gathered else np.zeros(0, dtype=self._dtype)]
        return self._gathered[0]


class Arrays(Rows):
    """One-dimensional arrays appended one call at a time, read as their concatenation."""

    def extend(self, values: np.ndarray) -> None:
        self._pend(values, len(values))

    def _joined(self, pending: list) -> np.ndarray:
        return np.concatenate(pending, dtype=self._dtype)


class _Records:
    """Compact records of a stretch of the timeline: one row per step planned alone (`steps`), and per
    decode run one row (`runs`), its steps' end times and durations, and its block growth."""

    def __init__(self):
        self.steps, self.runs = Rows(_STEP_DTYPE), Rows(_RUN_DTYPE)
        self.run_ends_s, self.run_durations_s = Arrays(np.float64), Arrays(np.float64)
        self.run_lengths = Rows(np.int64)
        self.crossings = Rows(np.int64)  # (see blocks.BlockGrowth), rows as wide as a block

    @property
    def rows(self) -> int:
        return self.steps.n + self.run_ends_s.n

    def add_run(self, end_s: np.ndarray, duration_s: np.ndarray, record: RunRecord, crossings_cdf: np.ndarray) -> None:
        self.runs.append(record)
        self.run_ends_s.extend(end_s)
        self.run_durations_s.extend(duration_s)
        self.run_lengths.append(len(end_s))
        self.crossings.append(crossings_cdf)

    def rows_by_column(self) -> dict[str, np.ndarray]:
        """Its timeline rows, unordered: the steps planned alone, then every run's steps."""
        steps = self.steps.values
        runs = {name: self.runs.values[name] for name in RunRecord._fields}
        lengths = self.run_lengths.values
        run_of_step = np.repeat(np.arange(len(lengths)), lengths)
        step_in_run = np.arange(len(run_of_step)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        of_run = {name: column[run_of_step] for name, column in runs.items()}
        durations_s = self.run_durations_s.values
        from_runs = {
            "start_s": self.run_ends_s.values - durations_s, "duration_s": durations_s,
            "replica": of_run["replica"], "batch_seqs": of_run["batch_seqs"],
            "prefill_tokens": np.zeros(len(run_of_step), dtype=np.int64), "decode_tokens": of_run["batch_seqs"],
            "kv_blocks_used": of_run["kv_blocks_before"] + self._run_growth(of_run, run_of_step, step_in_run),
            "queue_len": np.where(step_in_run == 0, of_run["queue_len"], of_run["queue_len_after_plan"]),
            "kv_tokens": of_run["kv_tokens_before"] + of_run["batch_seqs"] * (step_in_run + 1)}
        return {c: np.concatenate((steps[c], from_runs[c])) for c in TIMELINE_COLUMNS}

    def _run_growth(self, of_run: dict, run_of_step: np.ndarray, step_in_run: np.ndarray) -> np.ndarray:
        """Blocks each run had added by the end of each of its steps, for all runs at once."""
        if not self.crossings.n:
            return np.zeros(len(run_of_step), dtype=np.int64)
        cdf = self.crossings.values  # rows of one width: one allocator, one block size per simulation
        return cumulative_new_blocks(of_run["growing_seqs"], of_run["pending_copies"], cdf, run_of_step,
                                     step_in_run, cdf.shape[1])


class TimelineTotals(NamedTuple):
    """What the summary needs of the timeline: its steps, sums weighted by each step's duration (KV blocks
    used, their token slots, the slots no token fills, batch sequences) and the most blocks in use."""

    steps: int
    busy_s: float
    block_s: float
    slot_s: float
    empty_slot_s: float
    seq_s: float
    peak_blocks: int

    @classmethod
    def of(cls, tl: dict, block_size_tokens: int) -> "TimelineTotals":
        busy = tl["duration_s"]
        if not len(busy):
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        slots = tl["kv_blocks_used"] * block_size_tokens
        held = np.minimum(tl["kv_tokens"], slots)
        return cls(len(busy), busy.sum(), np.sum(busy * tl["kv_blocks_used"]), np.sum(busy * slots),
                   np.sum(busy * (slots - held)), np.sum(busy * tl["batch_seqs"]), int(tl["kv_blocks_used"].max()))

    def __add__(self, other: "TimelineTotals") -> "TimelineTotals":
        return TimelineTotals(*(a + b for a, b in zip(self[:-1], other[:-1])), max(self.peak_blocks, other.peak_blocks))


class Metrics:
    """Compact records of the timeline (sealed every `chunk_rows` rows) and the inter-token gaps, gathered
    into NumPy arrays. Given the KV block size (which the totals need), a run whose timeline outgrows
    `stream_after_rows` rows keeps only its totals: each chunk is summed once sealed and dropped, and
    `timeline()` is None."""

    def __init__(self, block_size_tokens: int | None = None, stream_after_rows: int = STREAM_AFTER_ROWS,
                 chunk_rows: int = CHUNK_ROWS):
        self._block_size = block_size_tokens
        self._stream_after_rows, self._chunk_rows = stream_after_rows, chunk_rows
        self._chunks: list[_Records] = []
        self._open = _Records()
        self._rows = 0  # in the sealed chunks
        self._folded: TimelineTotals | None = None  # of the chunks dropped once streaming
        # tokens per gap (a batch's rows at most) as int32: a long run has tens of millions of gaps
        self._itl_values, self._itl_weights = Arrays(np.float64), Arrays(np.int32)
        self._itl_run_values = Arrays(np.float64)  # gaps that all stand for the same number of tokens
        self._itl_run_weights, self._itl_run_lengths = Rows(np.int32), Rows(np.int64)
        self.flops = 0.0
        self.bytes = 0.0
        self.preemptions = 0
        self.swapped_blocks = 0
        self.speculating_rows = 0  # decoding rows of speculative steps, and the tokens they emitted
        self.speculated_tokens = 0
        self.exit_steps = 0  # decode steps of an early-exit model, and the share of its layers each ran
        self.exit_layers = 0.0

    def step(self, record: StepRecord) -> None:
        self._open.steps.append(record)
        if self._open.steps.n >= self._chunk_rows:
            self._seal()

    def run(self, end_s: np.ndarray, duration_s: np.ndarray, record: RunRecord, crossings_cdf: np.ndarray) -> None:
        """A run of decode steps; the blocks in use after each step follow from the running sum of the
        histogram of its sequences' first block-boundary steps (see blocks.BlockGrowth) and are counted for
        all runs at once in `timeline`; each step caches one more token per sequence."""
        self._open.add_run(end_s, duration_s, record, crossings_cdf)
        if self._open.rows >= self._chunk_rows:
            self._seal()

    def add_records(self, steps: np.ndarray, runs: np.ndarray, run_ends_s: np.ndarray, run_durations_s: np.ndarray,
                    run_lengths: np.ndarray, crossings_cdf: np.ndarray) -> None:
        """`step` and `run` for many at once, as arrays: rows of the steps planned alone and of the runs (in
        their dtypes), the runs' steps' end times and durations one run after another, how many steps each
        run has, and each run's crossings histogram (a row each)."""
        records = self._open
        records.steps.add_array(steps)
        records.runs.add_array(runs)
        records.run_ends_s.add_array(run_ends_s)
        records.run_durations_s.add_array(run_durations_s)
        records.run_lengths.add_array(run_lengths)
        records.crossings.add_array(crossings_cdf)
        if records.rows >= self._chunk_rows:
            self._seal()

    def _seal(self) -> None:
        self._rows += self._open.rows
        self._chunks.append(self._open)
        self._open = _Records()
        self._fold_if_streamed()

    def _fold_if_streamed(self) -> None:
        """Once the timeline is too long to keep, sum every sealed chunk into the totals and drop it."""
        if self.streamed:
            for chunk in self._chunks:
                totals = TimelineTotals.of(chunk.rows_by_column(), self._block_size)
                self._folded = totals if self._folded is None else self._folded + totals
            self._chunks = []

    @property
    def streamed(self) -> bool:
        """Has the timeline outgrown what is kept (only its totals are)?"""
        return self._block_size is not None and self._rows + self._open.rows > self._stream_after_rows

    def streamed_totals(self) -> TimelineTotals:
        """The totals of a streamed timeline."""
        assert self.streamed
        self._fold_if_streamed()
        totals = TimelineTotals.of(self._open.rows_by_column(), self._block_size)
        return totals if self._folded is None else self._folded + totals

    def absorb(self, other: "Metrics") -> None:
        """Add what `other` measured (replicas simulated apart from these: `sim.shards`)."""
        self._chunks += other._chunks + [other._open]
        self._rows += other._rows + other._open.rows
        if other._folded is not None:
            self._folded = other._folded if self._folded is None else self._folded + other._folded
        for mine, theirs in ((self._itl_values, other._itl_values), (self._itl_weights, other._itl_weights),
                             (self._itl_run_values, other._itl_run_values),
                             (self._itl_run_weights, other._itl_run_weights),
                             (self._itl_run_lengths, other._itl_run_lengths)):
            mine.absorb(theirs)
        for counter in ("flops", "bytes", "preemptions", "swapped_blocks", "speculating_rows", "speculated_tokens",
                        "exit_steps", "exit_layers"):
            setattr(self, counter, getattr(self, counter) + getattr(other, counter))
        self._fold_if_streamed()

    def inter_token_gaps(self, gaps_s: np.ndarray, tokens: np.ndarray) -> None:
        """tokens[i] tokens each came gaps_s[i] after their sequence's previous token."""
        self._itl_values.extend(gaps_s)
        self._itl_weights.extend(tokens)

    def add_gaps(self, gaps_s: np.ndarray, tokens: np.ndarray, run_gaps_s: np.ndarray, run_tokens: np.ndarray,
                 run_lengths: np.ndarray) -> None:
        """`inter_token_gaps` and `step_gaps` for many at once: the latter's gaps one call after another, with
        each call's tokens and how many gaps it had."""
        self._itl_values.add_array(gaps_s)
        self._itl_weights.add_array(tokens.astype(np.int32))
        self._itl_run_values.add_array(run_gaps_s)
        self._itl_run_weights.add_array(run_tokens.astype(np.int32))
        self._itl_run_lengths.add_array(run_lengths)

    def step_gaps(self, gaps_s: np.ndarray, tokens: int) -> None:
        """`tokens` tokens came after each of the gaps (every sequence of a batch, at each step)."""
        self._itl_run_values.extend(gaps_s)
        self._itl_run_weights.append(tokens)
        self._itl_run_lengths.append(len(gaps_s))

    def timeline(self) -> dict[str, np.ndarray] | None:
        """One row per step, ordered by start time (then replica); None when the run kept only totals."""
        if self.streamed:
            return None
        parts = [chunk.rows_by_column() for chunk in self._chunks + [self._open]]
        out = {c: np.concatenate([p[c] for p in parts]) for c in TIMELINE_COLUMNS}
        order = np.lexsort((out["replica"], out["start_s"]))
        return {c: v[order] for c, v in out.items()}

    def itl_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.concatenate((self._itl_values.values, self._itl_run_values.values))
        weights = np.concatenate((self._itl_weights.values,
                                  np.repeat(self._itl_run_weights.values, self._itl_run_lengths.values)))
        return values, weights


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, quantiles) -> np.ndarray:
    """The smallest value with at least q of the total weight at or below it (inverted weighted CDF), for
    each q in `quantiles` (ascending), found by selection rather than by sorting (a long run has tens of
    millions of gaps)."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    assert np.all(np.diff(quantiles) >= 0), f"quantiles must be ascending: {quantiles}"
    values, weights = np.array(values), np.array(weights)  # one copy, reordered by the selection
    total = int(weights.sum(dtype=np.int64))
    return _weighted_select(values, weights, quantiles * total)


@njit(cache=True)
def _weighted_select(values, weights, targets):
    """Quickselect with a three-way partition for several ascending targets at once, in place (it reorders
    the pairs): for each target, the smallest v with sum(weights[values <= v]) >= target (the largest value
    when the whole weight falls short of it). A partition sends each target to the side it lies in, so the
    targets share the passes over the whole array."""
    v, w = values, weights
    out = np.empty(len(targets))
    stack = [(0, len(v), 0, 0, len(targets))]  # ranges [lo, hi) of the pairs, their weight before lo, targets
    while stack:
        lo, hi, below, first, last = stack.pop()
        if first == last:
            continue
        if hi - lo <= 1:
            out[first:last] = v[lo]
            continue
        a, b, c = v[lo], v[(lo + hi) // 2], v[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        lt, i, gt = lo, lo, hi  # [lo, lt) < pivot, [lt, i) == pivot, [gt, hi) > pivot
        while i < gt:
            if v[i] < pivot:
                v[lt], v[i], w[lt], w[i] = v[i], v[lt], w[i], w[lt]
                lt += 1
                i += 1
            elif v[i] > pivot:
                gt -= 1
                v[gt], v[i], w[gt], w[i] = v[i], v[gt], w[i], w[gt]
            else:
                i += 1
        less = below + w[lo:lt].sum()
        at_most = less + w[lt:gt].sum()
        left = first
        while left < last and targets[left] <= less:
            left += 1
        right = left
        while right < last and (targets[right] <= at_most or gt == hi):
            out[right] = pivot
            right += 1
        stack.append((lo, lt, below, first, left))
        stack.append((gt, hi, at_most, right, last))
    return out


def stats(values: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """mean, p50, p90, p99 (None when there is nothing to measure); with weights, of the weighted
    distribution."""
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    if weights is None:
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"mean": float(np.mean(values)), "p50": float(p50), "p90": float(p90), "p99": float(p99)}
    p50, p90, p99 = weighted_percentiles(values, weights, [0.5, 0.9, 0.99])
    return {"mean": float(np.average(values, weights=weights)), "p50": float(p50), "p90": float(p90),
            "p99": float(p99)}


_REQUEST_COLUMNS = {"id": np.int64, "replica": np.int64, "arrival_s": np.float64, "prompt_tokens": np.int64,
                    "output_tokens": np.int64, "num_seqs": np.int64, "first_scheduled_s": np.float64,
                    "first_token_s": np.float64, "completion_s": np.float64, "preemptions": np.int64,
                    "max_itl_s": np.float64}


def request_table(requests: list[Request], frontend_s: float = 0.0) -> dict[str, np.ndarray]:
    """One row per request: what it asked for and when each stage happened. `frontend_s` is each request's
    time outside the engine (replica.EngineOverhead.frontend_s): its TTFT and E2E count it."""
    table = {c: np.fromiter(map(attrgetter(c), requests), dtype=dtype, count=len(requests))
             for c, dtype in _REQUEST_COLUMNS.items()}
    for c in ("state", "reject_reason"):
        table[c] = np.array([getattr(r, c) for r in requests], dtype=str)
    table["queueing_s"] = table["first_scheduled_s"] - table["arrival_s"]
    table["ttft_s"] = table["first_token_s"] - table["arrival_s"] + frontend_s
    table["e2e_s"] = table["completion_s"] - table["arrival_s"] + frontend_s
    with np.errstate(invalid="ignore", divide="ignore"):
        table["tpot_s"] = np.where(table["output_tokens"] > 1, (table["completion_s"] - table["first_token_s"])
                                   / (table["output_tokens"] - 1), np.nan)
    return table


@dataclass(frozen=True)
class Slo:
    """Latency targets a request must meet to count towards goodput (None: no target)."""

    ttft_s: float | None = None
    tpot_s: float | None = None

    @property
    def is_set(self) -> bool:
        return self.ttft_s is not None or self.tpot_s is not None


def summarize(t: dict, tl: dict, metrics: Metrics, *, kv_blocks_per_replica: int, block_size_tokens: int,
              replicas: int, slo: Slo, peaks: UtilizationPeaks) -> dict:
    """The aggregate figures of summary.json (see README, "What comes out"). KV fragmentation is the
    time-weighted share of the slots of blocks in use that hold no token (the rest of each sequence's last
    block when paged, the unused part of each reservation when contiguous). `t` is the request table,
    `tl` the timeline (None when `metrics` streamed it: its totals then come from there). Goodput and SLO
    attainment are None when no SLO is set."""
    done = t["state"] == DONE
    start = float(t["arrival_s"].min()) if len(t["arrival_s"]) else 0.0
    end = float(np.nanmax(t["completion_s"])) if done.any() else start
    elapsed = max(end - start, 1e-12)
    ok = done.copy()
    if slo.ttft_s is not None:
        ok &= t["ttft_s"] <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= np.nan_to_num(t["tpot_s"], nan=0.0) <= slo.tpot_s
    totals = TimelineTotals.of(tl, block_size_tokens) if tl is not None else metrics.streamed_totals()
    total_blocks, stepped = kv_blocks_per_replica, totals.steps > 0
    per_replica_time = elapsed * replicas
    kv_util = float(totals.block_s / (total_blocks * per_replica_time)) if stepped else 0.0
    frag = float(totals.empty_slot_s / totals.slot_s) if totals.slot_s else 0.0
    gaps, weights = metrics.itl_gaps()
    output_tokens = float(np.sum(t["output_tokens"][done] * t["num_seqs"][done]))
    techniques = {}
    if metrics.speculating_rows:
        techniques["speculative_tokens_per_step"] = metrics.speculated_tokens / metrics.speculating_rows
    if metrics.exit_steps:
        techniques["early_exit_depth_mean"] = metrics.exit_layers / metrics.exit_steps
    return techniques | {
        "ttft_s": stats(t["ttft_s"][done]),
        "tpot_s": stats(t["tpot_s"][done & (t["output_tokens"] > 1)]),
        "itl_s": stats(gaps, weights),
        "e2e_s": stats(t["e2e_s"][done]),
        "queueing_s": stats(t["queueing_s"][done]),
        "throughput_tokens_per_s": output_tokens / elapsed,
        "throughput_requests_per_s": float(done.sum()) / elapsed,
        "goodput_requests_per_s": float(ok.sum()) / elapsed if slo.is_set else None,
        "slo_attainment": float(ok.sum()) / max(1, len(done)) if slo.is_set else None,
        "requests_completed": int(done.sum()),
        "requests_rejected": int(np.sum(t["state"] == REJECTED)),
        # neither: the run ended with them still queued, which a configuration check should have refused
        "requests_unfinished": int(np.sum((t["state"] != DONE) & (t["state"] != REJECTED))),
        "preemptions": metrics.preemptions,
        "kv_blocks_swapped": metrics.swapped_blocks,
        "kv_utilization_mean": kv_util,
        "kv_utilization_peak": totals.peak_blocks / total_blocks if stepped else 0.0,
        "kv_fragmentation_mean": frag,
        "batch_size_mean": float(totals.seq_s / totals.busy_s) if stepped else 0.0,
        "busy_fraction": float(totals.busy_s / per_replica_time),
        "model_flops_utilization": metrics.flops / (per_replica_time * peaks.flops_per_s),
        "model_bandwidth_utilization": metrics.bytes / (per_replica_time * peaks.bytes_per_s),
        "simulated_time_s": end,
        "steps": totals.steps,
    }
