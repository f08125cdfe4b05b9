"""A replica's whole story as one compiled loop, for the runs where it is the common case and Python's time
per event is the cost: an open loop (arrivals known in advance, each replica's fixed by a round-robin
router), a stall-free scheduler (`vllm-v1`, `sarathi`: decode every running sequence, then fill the step's
token budget with prompt chunks), paged KV blocks, recomputation on preemption, one sequence per request,
no prefix-cache hits and no decoding technique (speculation, early exit, contrastive decoding).

It is the SimPy `replica.Replica` driving `schedulers.SarathiScheduler` (or `VllmV1Scheduler`) over a
`kv_cache.KVCacheManager`, told once more without the event queue: the same plan (`make_room_for_decode`,
`continue_prefills`, `admit` with the next step's blocks reserved, `plan`), the same execution (a mixed step,
or a run of decode steps cut after the step an arrival lands in), the same admission (an overlapped host's
scheduler sees an arrival a step late: `Replica`) and the same records. The decode batch is
`batch.DecodeBatch`'s table, updated by its compiled functions; the steps are costed from the replica's
`StepTimer`s' tables (`roofline.latency.CostTables`) by the compiled functions those timers use themselves,
so both tell the same seconds. Waiting requests are a queue in arrival order (a request's index in its
replica's list): a preempted request waits again at its place, ahead of every later arrival.

tests/test_compiled_replica.py holds its request table, timeline and summary to the SimPy replica's, under
load, under KV pressure (preemptions), with CUDA graphs (padded or not) and an overlapped host. Requests
reach a replica when SimPy's arrival process would submit them (its clock can be a bit off their arrival
times: `_replay_clock`). An arrival at the very instant a step ends is seen by the scheduler's next plan here
(under an overlapped host: held until the step after it is formed); in SimPy that depends on which event was
queued first (a tie that random arrival times never produce).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from numba import njit

from infersim.roofline.kernel_set import Replay
from infersim.roofline.latency import CostTables, StepTimer, _decode_line_run, decode_run_totals, ragged_flash_attention

from .batch import CONTEXT, MAX_ITL, REMAINING, REQUEST, _add_request, _advance, _pop_finished, _scan
from .blocks import steps_within
from .cluster import Colocated, Shard
from .metrics import _RUN_DTYPE, _STEP_DTYPE, Metrics
from .request import DECODING, DONE, PREFILLING, REJECTED, WAITING, Request
from .router import make_router
from .schedulers.base import MAX_DECODE_STEPS, most_new_blocks_per_seq
from .schedulers.sarathi import SarathiScheduler

_STATES = (WAITING, PREFILLING, DECODING, DONE)
_NO_EMITTED = np.zeros(0, dtype=np.int64)


def applies(cfg, requests: list[Request]) -> bool:
    """Whether `cfg` and `requests` are a run this loop tells exactly as the SimPy replicas would."""
    cluster = cfg.cluster
    if not (issubclass(cfg.scheduler_class, SarathiScheduler) and cfg.limits.preemption == "recompute"
            and cfg.allocator == "paged"
            and cfg.options.flash_attention and cfg.jumps and cfg.concurrency is None
            and cfg.speculative is None and cfg.early_exit is None and cfg.contrastive is None):
        return False
    if isinstance(cluster, Colocated):
        if cluster.split(requests[:0]) is None:
            return False
    elif not isinstance(cluster, Shard):
        return False
    arrivals = np.fromiter((r.arrival_s for r in requests), dtype=np.float64, count=len(requests))
    ids = np.fromiter((r.id for r in requests), dtype=np.int64, count=len(requests))
    return bool(np.all(np.diff(arrivals) >= 0) and np.all(np.diff(ids) > 0)
                and all(r.num_seqs == 1 and r.priority == requests[0].priority and not r.kv_arrived
                        and r.state == WAITING and r.generated_tokens == 0
                        and (r.prefix_id < 0 or not cfg.kv_cache.prefix_caching) for r in requests))


class CompiledReplica(NamedTuple):
    """What a replica run as a compiled loop leaves behind: its index, the KV blocks still in use and the
    requests it accepted but did not complete when the run ended (both 0 once every request is served)."""

    index: int
    kv_blocks_in_use: int
    unfinished: int


class LoopSpec(NamedTuple):
    """The scheduler's limits, the cache's size and the host's time, as the compiled loop reads them."""

    max_seqs: int
    step_token_budget: int
    max_decode_steps: int  # the longest decode run one plan covers
    admits_after_preempting: bool  # may a step that preempted admit (SarathiScheduler.admits_after_preempting)
    most_blocks_per_seq: int  # what one sequence's decode step opens at most (most_new_blocks_per_seq)
    total_blocks: int
    watermark_blocks: int
    block_size: int
    host_fixed_s: float  # the engine's host time per step, per sequence, and whether it overlaps the GPU
    host_per_seq_s: float
    host_overlaps: bool
    pieces_max_tokens: int  # steps of up to this many tokens that replay no whole graph replay pieces (0: never)
    pieces_attention_s: float  # what such a step's eagerly launched attention adds (KernelSet.eager_attention_s)


# How a decode step of a batch size runs its kernels (ReplicaTables.replays, kernel_set.Replay), as the
# compiled loop reads them
_EAGER, _GRAPH, _PIECES = int(Replay.EAGER), int(Replay.GRAPH), int(Replay.PIECES)


class ReplicaTables(NamedTuple):
    """What every replica of a run shares: its limits, its cache's size and its costs."""

    spec: LoopSpec
    replays: np.ndarray  # per decode batch size: how its step runs (_EAGER, _GRAPH or _PIECES)
    rows: np.ndarray  # per decode batch size: the rows its step runs, padding included (KernelSet.padding_rows)
    dense_tokens: np.ndarray  # per token count of a piecewise-replayed step: the tokens its pieces run
    eager: CostTables
    graph: CostTables  # a graph replay's costs (whole or piecewise), of steps up to pieces_max_tokens tokens


class LoopOutput(NamedTuple):
    """What the compiled loop tells of one replica. Per accepted request (in order): its state (an index
    into `_STATES`), tokens generated, preemptions, prefill progress, and `times` (first scheduled, first
    token, last token, completion, longest gap between tokens). Then its records, in buffers longer than
    what they hold (the `n_*` rows are written): the steps planned alone (`metrics.StepRecord`: start and
    duration; batch sequences, prefill tokens, decode tokens, KV blocks used, queue length, KV tokens), the
    decode runs (`metrics.RunRecord` from its batch_seqs on, with their crossings histograms), the runs' steps'
    end times and durations, the gaps before each row's first token of a step (values and how many rows
    had each) and the later gaps of runs and resumed requests (`Metrics.step_gaps`: values, then per call its
    tokens and how many gaps). Last, the model FLOPs and bytes, the preemptions, and the blocks still held."""

    state: np.ndarray
    generated: np.ndarray
    preemptions: np.ndarray
    prefill_tokens: np.ndarray
    prefilled: np.ndarray
    times: np.ndarray
    steps_f: np.ndarray
    steps_i: np.ndarray
    n_steps: int
    runs_i: np.ndarray
    crossings: np.ndarray
    n_runs: int
    run_ends_s: np.ndarray
    run_durations_s: np.ndarray
    run_lengths: np.ndarray
    n_run_steps: int
    first_gaps: np.ndarray
    first_weights: np.ndarray
    n_first: int
    step_gaps: np.ndarray
    group_weights: np.ndarray
    group_lengths: np.ndarray
    n_gaps: int
    n_groups: int
    flops: float
    bytes: float
    preempted: int
    blocks_in_use: int


def replica_tables(cfg, total_blocks: int) -> ReplicaTables:
    limits, kernels = cfg.limits, cfg.kernels
    budget = cfg.scheduler_class.step_token_budget(limits)
    replays = np.array([kernels.replay(True, b, b) for b in range(limits.max_num_seqs + 1)], dtype=np.int64)
    rows = np.array([b + kernels.decode_padding_rows(Replay(replay), b, b) for b, replay in enumerate(replays)],
                    dtype=np.int64)
    eager = StepTimer(cfg.model, kernels.eager(cfg.hardware), cfg.options).tables(max(budget, limits.max_num_seqs),
                                                                                  limits.max_num_seqs)
    graph_hw = kernels.graph_hardware(cfg.hardware)
    pieces_tokens = min(kernels.piecewise_max_tokens, max(budget, limits.max_num_seqs))  # no step is larger
    # a mixed step's tokens as its padded pieces run them (KernelSet.padding_tokens)
    dense_tokens = np.array([t + kernels.padding_tokens(t) for t in range(pieces_tokens + 1)], dtype=np.int64)
    graph = (StepTimer(cfg.model, graph_hw, cfg.options).tables(int(dense_tokens.max()), int(rows.max()))
             if graph_hw else eager)
    overhead, block_size = cfg.overhead, cfg.kv_cache.block_size_tokens
    spec = LoopSpec(limits.max_num_seqs, budget, MAX_DECODE_STEPS, cfg.scheduler_class.admits_after_preempting,
                    most_new_blocks_per_seq(1, block_size), total_blocks,
                    int(cfg.kv_cache.watermark_fraction * total_blocks), block_size, float(overhead.fixed_s),
                    float(overhead.per_seq_s), bool(overhead.overlaps_gpu), int(kernels.piecewise_max_tokens),
                    float(kernels.eager_attention_s(cfg.hardware, cfg.model.num_layers)))
    return ReplicaTables(spec, replays, rows, dense_tokens, eager, graph)


def serve(cfg, requests: list[Request], metrics: Metrics, total_blocks: int, refuses: Callable[[Request], str],
          progress=None) -> list[CompiledReplica]:
    """Every replica of `cfg.cluster` (a colocated cluster or a shard of one) over the requests its router
    sends it: their outcome written into the requests, what was measured into `metrics`; what each replica
    left behind. `refuses` says why a replica refuses a request on arrival (sim.run.refusal, the SimPy
    replicas' own check)."""
    cluster = cfg.cluster
    positions = list(range(len(requests)))
    if isinstance(cluster, Shard):
        indices, split = cluster.indices, [[] for _ in cluster.indices]
        for position, replica in zip(positions, cluster.serves):
            split[replica].append(position)
    else:
        indices = range(cluster.replicas)
        split = make_router(cluster.router, list(indices)).split(positions)
    tables = replica_tables(cfg, total_blocks)
    reached_s = _replay_clock(np.fromiter((r.arrival_s for r in requests), dtype=np.float64, count=len(requests)))
    replicas = []
    for done, (index, mine) in enumerate(zip(indices, split)):
        served = [requests[i] for i in mine]
        replicas.append(_serve_replica(index, served, reached_s[mine], refuses, tables, metrics))
        if progress is not None:
            progress((done + 1) / len(split), max((r.completion_s for r in served if r.state == DONE), default=0.0))
    return replicas


def _serve_replica(index: int, mine: list[Request], reached_s: np.ndarray, refuses: Callable[[Request], str],
                   tables: ReplicaTables, metrics: Metrics) -> CompiledReplica:
    """One replica over its requests, which reach it at `reached_s` (`_replay_clock`)."""
    refused = np.zeros(len(mine), dtype=bool)
    for i, req in enumerate(mine):  # what the scheduler refuses on arrival
        reason = refuses(req)
        if reason:
            req.state, req.reject_reason, refused[i] = REJECTED, reason, True
    accepted = [r for r, no in zip(mine, refused) if not no]
    asked = np.array([(r.prompt_tokens, r.output_tokens) for r in accepted], dtype=np.int64).reshape(-1, 2)
    arrival_s = np.fromiter((r.arrival_s for r in mine), dtype=np.float64, count=len(mine))
    out: LoopOutput = _serve(reached_s[~refused], asked[:, 0].copy(), asked[:, 1].copy(), arrival_s, tables.spec,
                             tables.replays, tables.rows, tables.dense_tokens, tables.eager, tables.graph)
    states = [_STATES[s] for s in out.state.tolist()]
    for req, s, g, p, (scheduled, first, last, completed, longest), to_fill, filled in zip(
            accepted, states, out.generated.tolist(), out.preemptions.tolist(), out.times.tolist(),
            out.prefill_tokens.tolist(), out.prefilled.tolist()):
        req.state, req.replica, req.generated_tokens, req.preemptions = s, index, g, p
        req.prefill_tokens, req.prefilled_tokens = to_fill, filled
        req.first_scheduled_s, req.first_token_s, req.last_token_s, req.completion_s, req.max_itl_s = (
            scheduled, first, last, completed, longest)
    steps = np.empty(out.n_steps, dtype=_STEP_DTYPE)
    steps["start_s"], steps["duration_s"] = out.steps_f[:out.n_steps, 0], out.steps_f[:out.n_steps, 1]
    steps["replica"] = index
    for k, name in enumerate(_STEP_DTYPE.names[3:]):  # after start_s, duration_s and replica
        steps[name] = out.steps_i[:out.n_steps, k]
    runs = np.empty(out.n_runs, dtype=_RUN_DTYPE)
    runs["replica"] = index
    for k, name in enumerate(_RUN_DTYPE.names[1:]):
        runs[name] = out.runs_i[:out.n_runs, k]
    metrics.add_records(steps, runs, out.run_ends_s[:out.n_run_steps].copy(),
                        out.run_durations_s[:out.n_run_steps].copy(), out.run_lengths[:out.n_runs].copy(),
                        out.crossings[:out.n_runs].copy())
    metrics.add_gaps(out.first_gaps[:out.n_first].copy(), out.first_weights[:out.n_first],
                     out.step_gaps[:out.n_gaps].copy(), out.group_weights[:out.n_groups],
                     out.group_lengths[:out.n_groups].copy())
    metrics.flops += out.flops
    metrics.bytes += out.bytes
    metrics.preemptions += out.preempted
    return CompiledReplica(index, out.blocks_in_use, int(np.count_nonzero(out.state != _DONE)))


# -- the compiled loop ---------------------------------------------------------------------------------------
_WAITING, _PREFILLING, _DECODING, _DONE = range(4)  # indices into _STATES
FIRST_SCHEDULED, FIRST_TOKEN, LAST_TOKEN, COMPLETION, LONGEST_GAP = range(5)  # columns of a request's times


@njit(cache=True)
def _replay_clock(arrival_s):
    """When each request reaches its replica as `run.replay_arrivals` replays them in order: SimPy's clock
    advances by timeouts, so a request arriving after the last reaches it at last + (arrival - last), which
    can differ from its arrival time in the last bit."""
    reached_s = np.empty(len(arrival_s))
    now = 0.0
    for i in range(len(arrival_s)):
        if arrival_s[i] > now:
            now = now + (arrival_s[i] - now)
        reached_s[i] = now
    return reached_s


@njit(cache=True)
def _room(a, n):
    """`a`, or a copy twice as long, so that it has a row n."""
    if n < len(a):
        return a
    return np.concatenate((a, np.empty_like(a)))


@njit(cache=True)
def _appended(buffer, n, values):
    """`buffer` (grown as needed) with `values` written from row n on."""
    while n + len(values) > len(buffer):
        buffer = _room(buffer, len(buffer))
    buffer[n:n + len(values)] = values
    return buffer


@njit(cache=True)
def _gaps_appended(values, weights, n, gaps, rows):
    """`Metrics.inter_token_gaps` into the loop's buffers: `rows[i]` tokens came `gaps[i]` after their last."""
    return _appended(values, n, gaps), _appended(weights, n, rows), n + len(gaps)


@njit(cache=True)
def _step_gaps_appended(values, tokens, lengths, n_values, n_calls, gaps, rows):
    """`Metrics.step_gaps` into the loop's buffers: `rows` tokens came after each of `gaps`."""
    tokens, lengths = _room(tokens, n_calls), _room(lengths, n_calls)
    tokens[n_calls], lengths[n_calls] = rows, len(gaps)
    return _appended(values, n_values, gaps), tokens, lengths, n_values + len(gaps), n_calls + 1


@njit(cache=True)
def _complete(r, end_s, state, generated, output, times, held):
    """`Scheduler._complete`: the request's tokens are all out at `end_s`; returns the blocks it frees."""
    state[r], generated[r], times[r, COMPLETION] = _DONE, output[r], end_s
    freed, held[r] = held[r], 0
    return freed


@njit(cache=True)
def _heap_push(heap, n, value):
    i = n
    heap[i] = value
    while i > 0 and heap[(i - 1) // 2] > heap[i]:
        parent = (i - 1) // 2
        heap[i], heap[parent] = heap[parent], heap[i]
        i = parent
    return n + 1


@njit(cache=True)
def _heap_pop(heap, n):
    """Drop the smallest; returns the new size."""
    n -= 1
    heap[0] = heap[n]
    i = 0
    while True:
        small, left, right = i, 2 * i + 1, 2 * i + 2
        if left < n and heap[left] < heap[small]:
            small = left
        if right < n and heap[right] < heap[small]:
            small = right
        if small == i:
            return n
        heap[i], heap[small] = heap[small], heap[i]
        i = small


@njit(cache=True)
def _next_step_blocks(ints, n, block_size):
    """Blocks the batch's next decode step opens (`blocks.BlockGrowth.next_step` of its scan)."""
    _, _, _, crossings_cdf, copies = _scan(ints, n, block_size)
    return crossings_cdf[0] + copies


@njit(cache=True)
def _serve(reached_s, prompt, output, cut_s, spec, replays, padded_rows, dense_tokens, eager, graph):
    """The replica's story: its accepted requests reach it at `reached_s` (sorted); `cut_s` are the arrival times
    of every request routed to it, refused ones included, which cut decode runs (`Replica._decode_run`)."""
    n = len(reached_s)
    max_seqs, step_budget, max_decode_steps = spec.max_seqs, spec.step_token_budget, spec.max_decode_steps
    admits_after_preempting, most_per_seq = spec.admits_after_preempting, spec.most_blocks_per_seq
    total_blocks, watermark, block_size = spec.total_blocks, spec.watermark_blocks, spec.block_size
    host_fixed_s, host_per_seq_s, overlaps = spec.host_fixed_s, spec.host_per_seq_s, spec.host_overlaps
    pieces_max_tokens, pieces_attention_s = spec.pieces_max_tokens, spec.pieces_attention_s
    # each request: its state and counters; when it was first scheduled, got its first and last tokens, was
    # completed, and its longest gap between tokens
    state = np.zeros(n, dtype=np.int64)
    generated, prefill_tokens, prefilled = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    held, preemptions = np.zeros(n, np.int64), np.zeros(n, np.int64)
    times = np.full((n, 5), np.nan)
    times[:, LONGEST_GAP] = 0.0
    # waiting: preempted requests (a heap of indices), then the arrivals [fresh, arrived) in order
    heap, heap_n, fresh, arrived = np.empty(max(n, 1), np.int64), 0, 0, 0
    prefilling, n_prefilling = np.empty(max_seqs + 1, np.int64), 0
    ints, floats, running = np.zeros((4, max_seqs + 1), np.int64), np.zeros((2, max_seqs + 1)), 0
    chunk_request, chunk_tokens = np.empty(max_seqs + 1, np.int64), np.empty(max_seqs + 1, np.int64)
    chunk_cached = np.empty(max_seqs + 1, np.int64)
    new, cached = np.empty(2 * max_seqs + 2), np.empty(2 * max_seqs + 2)
    one_end, one_latency = np.empty(1), np.empty(1)
    free = total_blocks
    # records (see metrics.StepRecord, RunRecord, Metrics.inter_token_gaps and step_gaps)
    steps_f, steps_i, n_steps = np.empty((1024, 2)), np.empty((1024, 6), np.int64), 0
    runs_i, crossings, n_runs = np.empty((1024, 7), np.int64), np.empty((1024, block_size), np.int64), 0
    run_ends_s, run_durations_s, run_lengths, n_run_steps = np.empty(4096), np.empty(4096), np.empty(1024, np.int64), 0
    first_gaps, first_weights, n_first = np.empty(4096), np.empty(4096, np.int64), 0
    step_gaps, group_weights, group_lengths, n_gaps, n_groups = np.empty(4096), np.empty(1024, np.int64), \
        np.empty(1024, np.int64), 0, 0
    flops, nbytes, preempted_total = 0.0, 0.0, 0
    cut = 0
    now = formed = 0.0  # formed: when the step that ended last started (an overlapping host formed the next then)
    while True:
        seen_s = formed if overlaps else now  # arrivals by then are the scheduler's (Replica's held requests)
        while arrived < n and reached_s[arrived] <= seen_s:
            arrived += 1
        queued = heap_n + arrived - fresh
        # -- the plan (SarathiScheduler.plan_step) --
        preempted = 0
        if running and free < most_per_seq * running:  # make_room_for_decode
            while running and _next_step_blocks(ints, running, block_size) > free:
                r = ints[REQUEST, running - 1]
                generated[r] = output[r] - ints[REMAINING, running - 1]
                times[r, LONGEST_GAP] = max(times[r, LONGEST_GAP], floats[MAX_ITL, running - 1])
                preemptions[r] += 1
                preempted += 1
                free += held[r]
                held[r] = 0
                state[r] = _WAITING
                running -= 1
                heap_n = _heap_push(heap, heap_n, r)
        budget = step_budget - running
        chunks = 0
        for k in range(n_prefilling):  # continue_prefills
            if budget <= 0:
                break
            r = prefilling[k]
            chunk_request[chunks], chunk_cached[chunks] = r, prefilled[r]
            chunk_tokens[chunks] = min(prefill_tokens[r] - prefilled[r], budget)
            budget -= chunk_tokens[chunks]
            chunks += 1
        if (admits_after_preempting or not preempted) and budget > 0 and (heap_n or fresh < arrived):  # admit
            seqs = running + n_prefilling
            reserve = _next_step_blocks(ints, running, block_size)
            while budget > 0 and (heap_n or fresh < arrived):
                r = heap[0] if heap_n else fresh
                context = prompt[r] + generated[r]
                blocks = -(-context // block_size)
                if seqs + 1 > max_seqs or free - reserve - blocks < watermark:
                    break
                if heap_n:
                    heap_n = _heap_pop(heap, heap_n)
                else:
                    fresh += 1
                seqs += 1
                free -= blocks
                held[r] = blocks
                if np.isnan(times[r, FIRST_SCHEDULED]):
                    times[r, FIRST_SCHEDULED] = now
                prefill_tokens[r], prefilled[r], state[r] = context, 0, _PREFILLING
                prefilling[n_prefilling] = r
                n_prefilling += 1
                chunk_request[chunks], chunk_cached[chunks], chunk_tokens[chunks] = r, 0, min(context, budget)
                budget -= chunk_tokens[chunks]
                chunks += 1
        if not running and not chunks:  # nothing to run until the next arrival
            if arrived == n:
                break
            if reached_s[arrived] > now:
                now = reached_s[arrived]
            formed = now  # held arrivals run in the next step, as does one reaching an idle replica
            continue
        preempted_total += preempted
        fewest, context_sum, _, cdf, copies = _scan(ints, running, block_size)
        if chunks:  # -- a step of prompt chunks and one token for each running sequence (Replica._step) --
            start_s = formed = now
            decoding, seqs = running, running + chunks
            sampled, prompt_tokens = decoding, 0
            for k in range(chunks):
                new[k], cached[k] = chunk_tokens[k], chunk_cached[k]
                prompt_tokens += chunk_tokens[k]
                sampled += prefilled[chunk_request[k]] + chunk_tokens[k] == prefill_tokens[chunk_request[k]]
            for i in range(decoding):
                new[chunks + i], cached[chunks + i] = 1.0, ints[CONTEXT, i]
            tokens = prompt_tokens + decoding
            pieces = tokens <= pieces_max_tokens
            timer = graph if pieces else eager
            attn_s, attn_flops, attn_bytes = ragged_flash_attention(
                new[:seqs], cached[:seqs], timer.q_tile_tokens, timer.sram_tokens, timer.flash,
                timer.overlap_exponent, timer.launch_s)
            dense = dense_tokens[tokens] if pieces else tokens
            gpu_s = timer.token_latency_s[dense] + timer.layers * attn_s + timer.sampled_latency_s[sampled]
            if pieces:  # each layer's attention launched eagerly between the graph's pieces
                gpu_s = gpu_s + pieces_attention_s
            flops += eager.token_flops[tokens] + eager.layers * attn_flops + eager.sampled_flops[sampled]
            nbytes += eager.token_bytes[tokens] + eager.layers * attn_bytes + eager.sampled_bytes[sampled]
            host_s = host_fixed_s + host_per_seq_s * seqs
            latency_s = max(gpu_s, host_s) if overlaps else gpu_s + host_s
            now = now + latency_s
            end_s = now
            if decoding:  # Scheduler.apply
                one_end[0], one_latency[0] = end_s, latency_s
                opened, gaps, rows = _advance(ints, floats, decoding, one_end, one_latency, block_size, True, held, 0,
                                              _NO_EMITTED)
                free -= opened
                first_gaps, first_weights, n_first = _gaps_appended(first_gaps, first_weights, n_first, gaps, rows)
            for k in range(chunks):
                prefilled[chunk_request[k]] += chunk_tokens[k]
            for k in range(chunks):
                r = chunk_request[k]
                if prefilled[r] != prefill_tokens[r]:
                    continue
                at = 0  # the prompt is in: it leaves the prefilling list and samples its token (_finish_prefill)
                while prefilling[at] != r:
                    at += 1
                prefilling[at:n_prefilling - 1] = prefilling[at + 1:n_prefilling].copy()
                n_prefilling -= 1
                if generated[r]:  # recomputed after preemption: the gap since its last token
                    one_latency[0] = end_s - times[r, LAST_TOKEN]
                    step_gaps, group_weights, group_lengths, n_gaps, n_groups = _step_gaps_appended(
                        step_gaps, group_weights, group_lengths, n_gaps, n_groups, one_latency, 1)
                    times[r, LONGEST_GAP] = max(times[r, LONGEST_GAP], end_s - times[r, LAST_TOKEN])
                else:
                    times[r, FIRST_TOKEN] = end_s
                generated[r] += 1
                times[r, LAST_TOKEN] = end_s
                if generated[r] == output[r]:
                    free += _complete(r, end_s, state, generated, output, times, held)
                else:
                    _add_request(ints, floats, running, r, 1, prefill_tokens[r], output[r] - generated[r], 0, end_s)
                    running += 1
                    state[r] = _DECODING
            context_now = 0
            for i in range(running):
                context_now += ints[CONTEXT, i]
            for k in range(n_prefilling):
                context_now += prefilled[prefilling[k]]
            steps_f, steps_i = _room(steps_f, n_steps), _room(steps_i, n_steps)
            steps_f[n_steps, 0], steps_f[n_steps, 1] = start_s, latency_s
            steps_i[n_steps, 0], steps_i[n_steps, 1], steps_i[n_steps, 2] = seqs, prompt_tokens, decoding
            steps_i[n_steps, 3], steps_i[n_steps, 4], steps_i[n_steps, 5] = total_blocks - free, queued, context_now
            n_steps += 1
            finished = decoding > 0 and 1 >= fewest
        else:  # -- a run of decode steps of the same batch, cut after the step an arrival lands in --
            seqs = running
            queued_after_plan = heap_n + arrived - fresh
            steps = 1 if preempted else steps_within(cdf, seqs, copies, min(fewest, max_decode_steps), free)
            timer = eager if replays[seqs] == _EAGER else graph
            padded = padded_rows[seqs]  # a padded graph's one-token rows with no context, which never grows
            line = timer.lines[padded]
            other_s = line[0] + pieces_attention_s if replays[seqs] == _PIECES else line[0]
            latency_all, ends_all = _decode_line_run(float(context_sum + padded), float(seqs), steps, line[1], line[2],
                                                     line[3], line[4], timer.overlap_exponent, timer.launch_s,
                                                     timer.layers, other_s, host_fixed_s + host_per_seq_s * seqs,
                                                     overlaps, now)
            used_blocks = total_blocks - free
            if overlaps and arrived < n and reached_s[arrived] <= now:  # held: seen after the first step
                steps = 1
            while cut < len(cut_s) and cut_s[cut] < now:
                cut += 1
            if cut < len(cut_s) and cut_s[cut] < ends_all[steps - 1]:  # overlapped: one step later (Replica._cut)
                steps = 1 if cut_s[cut] <= now else min(np.searchsorted(ends_all, cut_s[cut]) + 1 + int(overlaps), steps)
            formed = ends_all[steps - 2] if steps > 1 else now
            now = now + (ends_all[steps - 1] - now)  # as SimPy's clock adds the timeout: the same bits
            real = timer.lines[seqs]  # the model's work is the real rows' (MFU, MBU)
            run_flops, run_bytes = decode_run_totals(steps, context_sum, seqs, real[5], real[6], real[7], real[8])
            flops += run_flops
            nbytes += run_bytes
            ends_s, latencies_s = ends_all[:steps], latency_all[:steps]
            opened, gaps, rows = _advance(ints, floats, seqs, ends_s, latencies_s, block_size, True, held, 0,
                                          _NO_EMITTED)
            free -= opened
            first_gaps, first_weights, n_first = _gaps_appended(first_gaps, first_weights, n_first, gaps, rows)
            if steps > 1:
                step_gaps, group_weights, group_lengths, n_gaps, n_groups = _step_gaps_appended(
                    step_gaps, group_weights, group_lengths, n_gaps, n_groups, latencies_s[1:], seqs)
            runs_i, crossings = _room(runs_i, n_runs), _room(crossings, n_runs)
            run_lengths = _room(run_lengths, n_runs)
            runs_i[n_runs, 0], runs_i[n_runs, 1], runs_i[n_runs, 2], runs_i[n_runs, 3] = seqs, used_blocks, queued, \
                queued_after_plan
            runs_i[n_runs, 4], runs_i[n_runs, 5], runs_i[n_runs, 6] = seqs, copies, context_sum
            crossings[n_runs] = cdf
            run_lengths[n_runs] = steps
            n_runs += 1
            run_ends_s = _appended(run_ends_s, n_run_steps, ends_s)
            run_durations_s = _appended(run_durations_s, n_run_steps, latencies_s)
            n_run_steps += steps
            end_s = ends_s[steps - 1]
            finished = steps >= fewest
        if finished:  # Scheduler.retire_finished
            done, longest_gap, running = _pop_finished(ints, floats, running)
            for k in range(len(done)):
                r = done[k]
                times[r, LONGEST_GAP] = max(times[r, LONGEST_GAP], longest_gap[k])
                times[r, LAST_TOKEN] = end_s
                free += _complete(r, end_s, state, generated, output, times, held)
    return LoopOutput(state, generated, preemptions, prefill_tokens, prefilled, times, steps_f, steps_i, n_steps,
                      runs_i, crossings, n_runs, run_ends_s, run_durations_s, run_lengths, n_run_steps, first_gaps,
                      first_weights, n_first, step_gaps, group_weights, group_lengths, n_gaps, n_groups, flops,
                      nbytes, preempted_total, total_blocks - free)
