"""What a run measured: per-step timeline and inter-token gaps kept as NumPy chunks (never one Python
object per token), and the summary statistics computed from them and from the requests."""
from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import numpy as np

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


class Metrics:
    def __init__(self):
        self._steps: list[StepRecord] = []
        self._runs: list[RunRecord] = []
        self._run_ends: list[np.ndarray] = []  # each run's per-step end times and durations
        self._run_durations: list[np.ndarray] = []
        self._run_crossings: list[np.ndarray] = []  # and how its blocks grow (see blocks.BlockGrowth)
        self._itl_values: list[np.ndarray] = []
        self._itl_weights: list[np.ndarray] = []
        self._itl_run_values: list[np.ndarray] = []  # gaps that all stand for the same number of tokens
        self._itl_run_weights: list[int] = []
        self.flops = 0.0
        self.bytes = 0.0
        self.preemptions = 0
        self.swapped_blocks = 0
        self.speculating_rows = 0  # decoding rows of speculative steps, and the tokens they emitted
        self.speculated_tokens = 0
        self.exit_steps = 0  # decode steps of an early-exit model, and the share of its layers each ran
        self.exit_layers = 0.0

    def step(self, record: StepRecord) -> None:
        self._steps.append(record)

    def run(self, end_s: np.ndarray, duration_s: np.ndarray, record: RunRecord, crossings_cdf: np.ndarray) -> None:
        """A run of decode steps; the blocks in use after each step follow from the running sum of the
        histogram of its sequences' first block-boundary steps (see blocks.BlockGrowth) and are counted for
        all runs at once in `timeline`; each step caches one more token per sequence."""
        self._run_ends.append(end_s)
        self._run_durations.append(duration_s)
        self._runs.append(record)
        self._run_crossings.append(crossings_cdf)

    def inter_token_gaps(self, gaps_s: np.ndarray, tokens: np.ndarray) -> None:
        """tokens[i] tokens each came gaps_s[i] after their sequence's previous token."""
        self._itl_values.append(gaps_s)
        self._itl_weights.append(tokens)

    def step_gaps(self, gaps_s: np.ndarray, tokens: int) -> None:
        """`tokens` tokens came after each of the gaps (every sequence of a batch, at each step)."""
        self._itl_run_values.append(gaps_s)
        self._itl_run_weights.append(tokens)

    def timeline(self) -> dict[str, np.ndarray]:
        """One row per step, ordered by start time (then replica)."""
        steps = np.array(self._steps, dtype=np.float64).reshape(-1, len(TIMELINE_COLUMNS))
        runs = dict(zip(RunRecord._fields, np.array(self._runs, dtype=np.int64).reshape(-1, len(RunRecord._fields)).T))
        lengths = np.array([len(ends) for ends in self._run_ends], dtype=np.int64)
        run_of_step = np.repeat(np.arange(len(lengths)), lengths)
        step_in_run = np.arange(len(run_of_step)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        of_run = {name: column[run_of_step] for name, column in runs.items()}
        from_runs = {
            "duration_s": np.concatenate(self._run_durations) if self._run_durations else np.zeros(0),
            "replica": of_run["replica"], "batch_seqs": of_run["batch_seqs"],
            "prefill_tokens": np.zeros(len(run_of_step)), "decode_tokens": of_run["batch_seqs"],
            "kv_blocks_used": of_run["kv_blocks_before"] + self._run_growth(of_run, run_of_step, step_in_run),
            "queue_len": np.where(step_in_run == 0, of_run["queue_len"], of_run["queue_len_after_plan"]),
            "kv_tokens": of_run["kv_tokens_before"] + of_run["batch_seqs"] * (step_in_run + 1)}
        from_runs["start_s"] = (np.concatenate(self._run_ends) if self._run_ends else np.zeros(0)) - from_runs["duration_s"]
        out = {c: np.concatenate((steps[:, i], from_runs[c])) for i, c in enumerate(TIMELINE_COLUMNS)}
        for c in TIMELINE_COLUMNS[2:]:
            out[c] = out[c].astype(np.int64)
        order = np.lexsort((out["replica"], out["start_s"]))
        return {c: v[order] for c, v in out.items()}

    def _run_growth(self, of_run: dict, run_of_step: np.ndarray, step_in_run: np.ndarray) -> np.ndarray:
        """Blocks each run had added by the end of each of its steps, for all runs at once."""
        if not self._run_crossings:
            return np.zeros(len(run_of_step), dtype=np.int64)
        assert len(self._run_crossings) == len(self._runs)  # one allocator, one block size per simulation
        block_size = len(self._run_crossings[0])
        cdf = np.concatenate(self._run_crossings).reshape(-1, block_size)
        return cumulative_new_blocks(of_run["growing_seqs"], of_run["pending_copies"], cdf, run_of_step,
                                     step_in_run, block_size)

    def itl_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._itl_values and not self._itl_run_values:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        lengths = [len(gaps) for gaps in self._itl_run_values]
        values = np.concatenate(self._itl_values + self._itl_run_values)
        weights = np.concatenate(self._itl_weights + [np.repeat(np.asarray(self._itl_run_weights, dtype=np.int64), lengths)])
        return values, weights


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, quantiles) -> np.ndarray:
    """The smallest value with at least q of the total weight at or below it (inverted weighted CDF)."""
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(weights[order])
    idx = np.searchsorted(cdf, np.asarray(quantiles) * cdf[-1], side="left")
    return values[order][np.minimum(idx, len(values) - 1)]


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


def request_table(requests: list[Request]) -> dict[str, np.ndarray]:
    """One row per request: what it asked for and when each stage happened."""
    cols = ("id", "replica", "arrival_s", "prompt_tokens", "output_tokens", "num_seqs", "state",
            "first_scheduled_s", "first_token_s", "completion_s", "preemptions", "max_itl_s", "reject_reason")
    values = list(zip(*map(attrgetter(*cols), requests))) or [()] * len(cols)
    table = {c: np.array(v) for c, v in zip(cols, values)}
    table["queueing_s"] = table["first_scheduled_s"] - table["arrival_s"]
    table["ttft_s"] = table["first_token_s"] - table["arrival_s"]
    table["e2e_s"] = table["completion_s"] - table["arrival_s"]
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
    `tl` the timeline. Goodput and SLO attainment are None when no SLO is set."""
    done = t["state"] == DONE
    start = float(t["arrival_s"].min()) if len(t["arrival_s"]) else 0.0
    end = float(np.nanmax(t["completion_s"])) if done.any() else start
    elapsed = max(end - start, 1e-12)
    ok = done.copy()
    if slo.ttft_s is not None:
        ok &= t["ttft_s"] <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= np.nan_to_num(t["tpot_s"], nan=0.0) <= slo.tpot_s
    total_blocks, block_size = kv_blocks_per_replica, block_size_tokens
    busy = tl["duration_s"]
    per_replica_time = elapsed * replicas
    kv_util = float(np.sum(busy * tl["kv_blocks_used"]) / (total_blocks * per_replica_time)) if len(busy) else 0.0
    slots = tl["kv_blocks_used"] * block_size
    held = np.minimum(tl["kv_tokens"], slots)
    slot_time = np.sum(busy * slots)
    frag = float(np.sum(busy * (slots - held)) / slot_time) if slot_time else 0.0
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
        "kv_utilization_peak": float(tl["kv_blocks_used"].max() / total_blocks) if len(busy) else 0.0,
        "kv_fragmentation_mean": frag,
        "batch_size_mean": float(np.sum(busy * tl["batch_seqs"]) / busy.sum()) if len(busy) else 0.0,
        "busy_fraction": float(busy.sum() / per_replica_time),
        "model_flops_utilization": metrics.flops / (per_replica_time * peaks.flops_per_s),
        "model_bandwidth_utilization": metrics.bytes / (per_replica_time * peaks.bytes_per_s),
        "simulated_time_s": end,
        "steps": int(len(busy)),
    }
