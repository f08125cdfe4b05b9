"""One serving replica (a model on one or more GPUs) as a SimPy process.

The story of the replica is a loop: ask the scheduler for the next step, cost it with the roofline
(`StepTimer`) plus the engine's own per-step overhead, let that much simulated time pass, hand out the
tokens. When the step is pure decode of a batch that nothing can change before some sequence finishes or
runs out of blocks, the replica advances all those steps in one exact jump (each step still has its own
latency); an arrival cuts the jump at the end of the step in flight, so that the scheduler sees it exactly
when it would have stepping one iteration at a time.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import simpy

from infersim.roofline.latency import StepTimer

from .batch import Rows
from .kv_cache import KVCacheManager
from .metrics import Metrics
from .request import DECODING, DONE, REJECTED, SWAPPED, WAITING, Request

_NO_ROWS = Rows(1)


@dataclass(frozen=True)
class EngineOverhead:
    """Host-side time per step outside the GPU kernels: scheduling, input preparation, sampling
    book-keeping, detokenization and output processing. Defaults are an order-of-magnitude estimate of
    vLLM's CPU overhead (Vidur profiles it per step; the WukLab study "Can Scheduling Overhead Dominate LLM
    Inference Performance?", 2024, finds it can exceed half of vLLM's step time). Set both to 0 for the
    pure roofline."""

    fixed_s: float = 1.0e-3
    per_seq_s: float = 10e-6

    def step_s(self, seqs: int):
        return self.fixed_s + self.per_seq_s * seqs


class Step(NamedTuple):
    prefills: list | tuple = ()  # (request, tokens of its prompt this step)
    decode: bool = False
    extra_s: float = 0.0  # blocking KV swap traffic
    can_jump: bool = False


def decode_step(swap_s: float) -> Step:
    """Decode every running sequence; a run of such steps can be jumped over unless swapping blocks it."""
    return DECODE_RUN if swap_s == 0 else Step(decode=True, extra_s=swap_s)


DECODE_RUN = Step(decode=True, can_jump=True)


class Replica:
    """A replica of role "both" prefills and decodes; "prefill" hands each request to `on_prefilled` after
    its first token; "decode" takes prefilled requests (their KV cache arrives with them)."""

    def __init__(self, env: simpy.Environment, index: int, timer: StepTimer, kv: KVCacheManager, scheduler,
                 metrics: Metrics, overhead: EngineOverhead = EngineOverhead(), role: str = "both",
                 kv_bytes_per_token: float = 0.0, host_bandwidth_bytes_per_s: float = 1.0,
                 swap_blocks: int = 0, jumps: bool = True, max_run_steps: int = 4096, on_prefilled=None,
                 requests: list | None = None):
        self._requests = requests  # every request of the run, indexed by id
        self.env, self.index, self.timer, self.kv, self.scheduler = env, index, timer, kv, scheduler
        self.metrics, self.overhead, self.role = metrics, overhead, role
        self.block_bytes = kv_bytes_per_token * kv.block_size
        self.host_bandwidth_bytes_per_s = host_bandwidth_bytes_per_s
        self.swap_blocks_free = swap_blocks
        self.jumps, self.max_run_steps = jumps, max_run_steps
        self.on_prefilled = on_prefilled
        self.waiting: list = []  # heap of (-priority, arrival_s, id, request)
        self.swapped: deque[Request] = deque()
        self.prefilling: list[Request] = []
        self.decoding = Rows()
        self.outstanding = 0
        self._wake: simpy.Event | None = None  # triggered by an arrival while idle
        self._in_run = False  # in a decode run that an arrival interrupts
        self.arrival_times: list | None = None  # when known in advance, the times requests reach it
        self._next_arrival = 0  # index of the first of them not before now
        self.process = env.process(self._run())

    # -- what the router and the cluster see -------------------------------------------------------------
    @property
    def kv_usage(self) -> float:
        return self.kv.pool.used_blocks / self.kv.pool.total_blocks

    def submit(self, req: Request) -> None:
        reason = self.scheduler.reject_reason(req, self.kv)
        if reason:
            req.state, req.reject_reason = REJECTED, reason
            return
        req.replica = self.index
        req.state = WAITING
        self.outstanding += 1
        heapq.heappush(self.waiting, (-req.priority, req.arrival_s, req.id, req))
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._in_run:
            self._in_run = False
            self.process.interrupt()

    def kv_tokens(self) -> int:
        """Tokens whose K/V this replica holds: decoding contexts and the prompt chunks prefilled so far."""
        decoding = self.decoding.scan(self.kv.block_size)[1] if len(self.decoding) else 0
        return decoding + sum(r.prefilled_tokens for r in self.prefilling)

    # -- state changes the schedulers ask for ------------------------------------------------------------
    def seqs_in_flight(self) -> int:
        return len(self.decoding) + sum(r.num_seqs for r in self.prefilling)

    def admit_waiting(self, token_budget: int, max_seqs: int, reserve_blocks: int = 0,
                      whole_prompts: bool = True) -> list:
        """Admit waiting requests in priority/arrival order while sequences, tokens and blocks allow
        (stopping at the first that does not fit, as vLLM's FCFS queue does). Returns (request, tokens)
        prefill work for this step; a prefilled request handed to a decode replica joins the batch directly."""
        if not self.waiting:
            return []
        work, seqs = [], self.seqs_in_flight()
        while self.waiting and token_budget > 0:
            req = self.waiting[0][3]
            handed_off = self.role == "decode"
            tokens = req.prompt_tokens + req.generated_tokens - (1 if handed_off else 0)
            if seqs + req.num_seqs > max_seqs:
                break
            if not self.kv.can_admit(req, tokens, reserve_blocks):
                break
            if whole_prompts and not handed_off and self.kv.tokens_to_compute(req, tokens) > token_budget:
                break
            heapq.heappop(self.waiting)
            seqs += req.num_seqs
            cached = self.kv.admit(req, tokens)
            if req.first_scheduled_s != req.first_scheduled_s:  # NaN: first time
                req.first_scheduled_s = self.env.now
            if handed_off:
                req.state = DECODING
                self.kv.add_rows(self.decoding, req, tokens, req.last_token_s)
                continue
            req.start_prefill(cached)
            self.prefilling.append(req)
            chunk = min(req.prefill_tokens - req.prefilled_tokens, token_budget)
            work.append((req, chunk))
            token_budget -= chunk
        return work

    def decode_step_blocks(self) -> int:
        return self.kv.next_step_blocks(self.decoding)

    def make_room_for_decode(self, mode: str) -> float:
        """Preempt the most recently admitted decoding requests until the next decode step's new blocks
        fit (vLLM's policy); returns the seconds of swap traffic this caused."""
        swap_s = 0.0
        if self.kv.pool.available_blocks >= 2 * len(self.decoding):
            return swap_s  # a step opens at most one block per sequence, plus one copy-on-write
        while len(self.decoding) and self.decode_step_blocks() > self.kv.pool.available_blocks:
            swap_s += self._preempt(int(self.decoding.request[-1]), mode)
        return swap_s

    def swap_in(self) -> float:
        """Bring swapped requests back, oldest first, while their blocks fit above the watermark."""
        swap_s = 0.0
        while self.swapped:
            req = self.swapped[0]
            rows = req.swapped_rows
            row_blocks = int(rows.blocks.sum())
            grow = self.kv.next_step_blocks(rows)
            if self.kv.pool.available_blocks - req.shared_blocks - row_blocks - grow < self.kv.watermark_blocks:
                break
            self.swapped.popleft()
            blocks = self.kv.swap_in(req, row_blocks)
            self.swap_blocks_free += blocks
            req.swapped_rows, req.state = None, DECODING
            self.decoding.extend(rows)
            swap_s += blocks * self.block_bytes / self.host_bandwidth_bytes_per_s
        return swap_s

    def _preempt(self, request_id: int, mode: str) -> float:
        rows = self.decoding.pop(self.decoding.request == request_id)
        req = self._requests[request_id]
        req.generated_tokens = req.output_tokens - int(rows.remaining_tokens[0])
        req.max_itl_s = max(req.max_itl_s, float(rows.max_itl_s.max()))
        req.preemptions += 1
        self.metrics.preemptions += 1
        row_blocks = int(rows.blocks.sum())
        if mode == "swap" and req.shared_blocks + req.prefix_blocks + row_blocks <= self.swap_blocks_free:
            blocks = self.kv.swap_out(req, row_blocks)
            self.swap_blocks_free -= blocks
            req.state, req.swapped_rows = SWAPPED, rows
            self.swapped.append(req)
            self.metrics.swapped_blocks += blocks
            return blocks * self.block_bytes / self.host_bandwidth_bytes_per_s
        self.kv.release(req, row_blocks)
        req.state = WAITING
        heapq.heappush(self.waiting, (-req.priority, req.arrival_s, req.id, req))
        return 0.0

    # -- the replica's own story -------------------------------------------------------------------------
    def _run(self):
        while True:
            step = self.scheduler.plan(self)
            if step is None:
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
            elif step.can_jump and not step.prefills:
                yield from self._decode_run()
            else:
                yield from self._one_step(step)

    def _one_step(self, step: Step):
        rows = self.decoding if step.decode else _NO_ROWS
        start, queue = self.env.now, len(self.waiting)
        new = [chunk for _, chunk in step.prefills]
        cached = [req.prefilled_tokens for req, _ in step.prefills]
        finishing = [req for req, chunk in step.prefills if req.prefilled_tokens + chunk == req.prefill_tokens]
        if len(rows):
            new += [1] * len(rows)
            cached += rows.context_tokens.tolist()
        latency_s, flops, nbytes = self.timer.step(new, cached, len(finishing) + len(rows))
        latency_s += self.overhead.step_s(len(rows) + len(step.prefills)) + step.extra_s
        yield self.env.timeout(latency_s)
        end = self.env.now
        self.metrics.flops += flops
        self.metrics.bytes += nbytes
        if len(rows):
            self._advance(rows, np.array([end]), np.array([latency_s]))
        for req, chunk in step.prefills:
            req.prefilled_tokens += chunk
        for req in finishing:
            self.prefilling.remove(req)
            self._finish_prefill(req, end)
        if self.scheduler.pads_batch and len(self.decoding):
            self.decoding.remaining_tokens[:] = self.decoding.remaining_tokens.max()
        self.metrics.step(start, latency_s, self.index, len(rows) + len(step.prefills), sum(new) - len(rows),
                          len(rows), self.kv.pool.used_blocks, queue, self.kv_tokens())
        if len(rows):
            self._complete_finished(end)

    def _decode_run(self):
        """Decode steps of a fixed batch up to the first completion or block shortage, in one jump."""
        rows, now, queue = self.decoding, self.env.now, len(self.waiting)
        batch = len(rows)
        to_finish, context_sum, context_max = rows.scan(self.kv.block_size)[:3]
        steps = min(to_finish, self.max_run_steps) if self.jumps else 1
        growth = self.kv.growth(rows)
        if growth is not None and growth.at_most(steps) > self.kv.pool.available_blocks:
            new_blocks = growth.cumulative(steps)
            steps = max(1, int(np.searchsorted(new_blocks, self.kv.pool.available_blocks, side="right")))
        latency_s = self.timer.decode_run(batch, context_sum, context_max, steps, self.overhead.step_s(batch))
        ends = np.cumsum(latency_s)
        ends += now
        if self.arrival_times is not None:  # the next arrival here is known: stop after the step it lands in
            times, upcoming = self.arrival_times, self._next_arrival
            while upcoming < len(times) and times[upcoming] < now:
                upcoming += 1
            self._next_arrival = upcoming
            if upcoming < len(times) and times[upcoming] < ends[-1]:
                steps = int(np.searchsorted(ends, times[upcoming], side="left")) + 1
            yield self.env.timeout(ends[steps - 1] - now)
        else:
            self._in_run = steps > 1
            try:
                yield self.env.timeout(ends[-1] - now)
            except simpy.Interrupt:  # an arrival: finish the step in flight, then let the scheduler in
                steps = int(np.searchsorted(ends, self.env.now, side="left")) + 1
                yield self.env.timeout(ends[steps - 1] - self.env.now)
            self._in_run = False
        used = self.kv.pool.used_blocks
        flops, nbytes = self.timer.decode_totals(batch, context_sum, context_max, steps)
        self.metrics.flops += flops
        self.metrics.bytes += nbytes
        if steps < len(ends):
            ends, latency_s = ends[:steps], latency_s[:steps]
        self._advance(rows, ends, latency_s)
        self.metrics.run(ends, latency_s, self.index, batch, used, growth, queue, context_sum)
        if steps == to_finish:
            self._complete_finished(ends[steps - 1])

    def _advance(self, rows: Rows, ends: np.ndarray, latency_s: np.ndarray) -> None:
        """The decode steps ending at `ends` gave every row one token each."""
        new_blocks, first_gaps, rows_per_gap = rows.advance(self.kv.block_size if self.kv.paged else 0, ends,
                                                            latency_s)
        self.kv.grow(new_blocks)
        self.metrics.inter_token_gaps(first_gaps, rows_per_gap)
        if len(latency_s) > 1:
            self.metrics.step_gaps(latency_s[1:], len(rows))

    def _finish_prefill(self, req: Request, now_s: float) -> None:
        """The last prompt chunk is in the cache: sample a token for each sequence."""
        if req.generated_tokens:  # a recomputation after preemption: the gap since the last token
            self.metrics.step_gaps(np.array([now_s - req.last_token_s]), req.num_seqs)
        req.emit_token(now_s)
        if req.remaining_tokens == 0:
            self._complete(req, now_s, 0)
        elif self.role == "prefill":
            self.kv.release(req, 0)
            self.outstanding -= 1
            self.on_prefilled(req)
        else:
            req.state = DECODING
            self.kv.add_rows(self.decoding, req, req.prefill_tokens, now_s)

    def _complete_finished(self, now_s: float) -> None:
        for rid, blocks, max_itl_s in zip(*self.decoding.pop_finished()):
            req = self._requests[rid]
            req.max_itl_s = max(req.max_itl_s, max_itl_s)
            req.last_token_s = now_s
            self._complete(req, now_s, blocks)

    def _complete(self, req: Request, now_s: float, row_blocks: int) -> None:
        req.state, req.completion_s, req.generated_tokens = DONE, now_s, req.output_tokens
        self.kv.release(req, row_blocks)
        self.outstanding -= 1
