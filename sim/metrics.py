"""What a run measured: per-step timeline and inter-token gaps kept as NumPy chunks (never one Python
object per token), and the summary statistics computed from them and from the requests."""
from __future__ import annotations

from operator import attrgetter

import numpy as np

from .blocks import cumulative_new_blocks
from .request import DONE, REJECTED, Request

# queue_len: requests waiting when the step started; kv_blocks_used: blocks in use when it ended;
# kv_tokens: tokens whose K/V those blocks hold (a prompt shared by n sequences counts n times)
TIMELINE_COLUMNS = ("start_s", "duration_s", "replica", "batch_seqs", "prefill_tokens", "decode_tokens",
                    "kv_blocks_used", "queue_len", "kv_tokens")


class Metrics:
    def __init__(self):
        self._steps: list[tuple] = []  # one step: a row of TIMELINE_COLUMNS
        self._run_ends: list[np.ndarray] = []  # runs of decode steps: per-step end times and durations,
        self._run_durations: list[np.ndarray] = []
        self._runs: list[tuple] = []  # (replica, batch_seqs, kv_blocks_before, queue_len, seqs, copies, kv_tokens)
        self._run_crossings: list[np.ndarray] = []  # and how their blocks grow (see blocks.BlockGrowth)
        self._itl_values: list[np.ndarray] = []
        self._itl_weights: list[np.ndarray] = []
        self._itl_run_values: list[np.ndarray] = []  # gaps that all stand for the same number of tokens
        self._itl_run_weights: list[int] = []
        self.flops = 0.0
        self.bytes = 0.0
        self.preemptions = 0
        self.swapped_blocks = 0

    def step(self, *row) -> None:
        self._steps.append(row)

    def run(self, end_s: np.ndarray, duration_s: np.ndarray, replica: int, seqs: int, kv_blocks_before: int,
            growth, queue_len: int, kv_tokens_before: int) -> None:
        """A run of decode steps; the blocks in use after each step follow from `growth` (a BlockGrowth, or
        None when they do not grow) and are counted for all runs at once in `timeline`; each step caches
        one more token per sequence."""
        self._run_ends.append(end_s)
        self._run_durations.append(duration_s)
        growing_seqs, copies = (growth.seqs, growth.copies) if growth is not None else (0, 0)
        self._runs.append((replica, seqs, kv_blocks_before, queue_len, growing_seqs, copies, kv_tokens_before))
        if growth is not None:
            self._run_crossings.append(growth.crossings_cdf)

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
        runs = np.array(self._runs, dtype=np.int64).reshape(-1, 7)
        lengths = np.array([len(ends) for ends in self._run_ends], dtype=np.int64)
        run_of_step = np.repeat(np.arange(len(lengths)), lengths)
        step_in_run = np.arange(len(run_of_step)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        from_runs = {
            "duration_s": np.concatenate(self._run_durations) if self._run_durations else np.zeros(0),
            "replica": runs[run_of_step, 0], "batch_seqs": runs[run_of_step, 1],
            "prefill_tokens": np.zeros(len(run_of_step)), "decode_tokens": runs[run_of_step, 1],
            "kv_blocks_used": runs[run_of_step, 2] + self._run_growth(runs, run_of_step, step_in_run),
            "queue_len": runs[run_of_step, 3],
            "kv_tokens": runs[run_of_step, 6] + runs[run_of_step, 1] * (step_in_run + 1)}
        from_runs["start_s"] = (np.concatenate(self._run_ends) if self._run_ends else np.zeros(0)) - from_runs["duration_s"]
        out = {c: np.concatenate((steps[:, i], from_runs[c])) for i, c in enumerate(TIMELINE_COLUMNS)}
        for c in TIMELINE_COLUMNS[2:]:
            out[c] = out[c].astype(np.int64)
        order = np.lexsort((out["replica"], out["start_s"]))
        return {c: v[order] for c, v in out.items()}

    def _run_growth(self, runs: np.ndarray, run_of_step: np.ndarray, step_in_run: np.ndarray) -> np.ndarray:
        """Blocks each run had added by the end of each of its steps, for all runs at once."""
        if not self._run_crossings:
            return np.zeros(len(run_of_step), dtype=np.int64)
        assert len(self._run_crossings) == len(self._runs)  # one allocator, one block size per simulation
        block_size = len(self._run_crossings[0])
        cdf = np.concatenate(self._run_crossings).reshape(-1, block_size)
        return cumulative_new_blocks(runs[run_of_step, 4], runs[run_of_step, 5], cdf, run_of_step, step_in_run,
                                     block_size)

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
    """mean, p50, p90, p99 (NaN when empty); with weights, of the weighted distribution."""
    if len(values) == 0:
        return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
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


def summarize(t: dict, tl: dict, metrics: Metrics, total_blocks: int, block_size: int, replicas: int,
              ttft_slo_s: float | None, tpot_slo_s: float | None, peak_flops_per_s: float,
              bandwidth_bytes_per_s: float) -> dict:
    """The aggregate figures of summary.json (see README, "What comes out"). KV fragmentation is the
    time-weighted share of the slots of blocks in use that hold no token (the rest of each sequence's last
    block when paged, the unused part of each reservation when contiguous). `t` is the request table,
    `tl` the timeline."""
    done = t["state"] == DONE
    start = float(t["arrival_s"].min()) if len(t["arrival_s"]) else 0.0
    end = float(np.nanmax(t["completion_s"])) if done.any() else start
    elapsed = max(end - start, 1e-12)
    ok = done.copy()
    if ttft_slo_s is not None:
        ok &= t["ttft_s"] <= ttft_slo_s
    if tpot_slo_s is not None:
        ok &= np.nan_to_num(t["tpot_s"], nan=0.0) <= tpot_slo_s
    busy = tl["duration_s"]
    per_replica_time = elapsed * replicas
    kv_util = float(np.sum(busy * tl["kv_blocks_used"]) / (total_blocks * per_replica_time)) if len(busy) else 0.0
    slots = tl["kv_blocks_used"] * block_size
    held = np.minimum(tl["kv_tokens"], slots)
    slot_time = np.sum(busy * slots)
    frag = float(np.sum(busy * (slots - held)) / slot_time) if slot_time else 0.0
    gaps, weights = metrics.itl_gaps()
    output_tokens = float(np.sum(t["output_tokens"][done] * t["num_seqs"][done]))
    return {
        "ttft_s": stats(t["ttft_s"][done]),
        "tpot_s": stats(t["tpot_s"][done & (t["output_tokens"] > 1)]),
        "itl_s": stats(gaps, weights),
        "e2e_s": stats(t["e2e_s"][done]),
        "queueing_s": stats(t["queueing_s"][done]),
        "throughput_tokens_per_s": output_tokens / elapsed,
        "throughput_requests_per_s": float(done.sum()) / elapsed,
        "goodput_requests_per_s": float(ok.sum()) / elapsed,
        "slo_attainment": float(ok.sum()) / max(1, len(done)),
        "requests_completed": int(done.sum()),
        "requests_rejected": int(np.sum(t["state"] == REJECTED)),
        "preemptions": metrics.preemptions,
        "kv_blocks_swapped": metrics.swapped_blocks,
        "kv_utilization_mean": kv_util,
        "kv_utilization_peak": float(tl["kv_blocks_used"].max() / total_blocks) if len(busy) else 0.0,
        "kv_fragmentation_mean": frag,
        "batch_size_mean": float(np.sum(busy * tl["batch_seqs"]) / busy.sum()) if len(busy) else 0.0,
        "busy_fraction": float(busy.sum() / per_replica_time),
        "model_flops_utilization": metrics.flops / (per_replica_time * peak_flops_per_s),
        "model_bandwidth_utilization": metrics.bytes / (per_replica_time * bandwidth_bytes_per_s),
        "simulated_time_s": end,
        "steps": int(len(busy)),
    }
