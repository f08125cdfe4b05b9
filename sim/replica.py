"""One serving replica (a model on one or more GPUs) as a SimPy process.

The story of a replica is a loop: ask its scheduler for the next plan, cost it with the roofline
(`StepTimer` for the forward pass, eager or replayed from a CUDA graph as the engine's `KernelSet` says;
the host link for swapped KV blocks) and the engine's host-side time (after the GPU's, or overlapped with
it), let that much simulated time pass, hand the timing back to the scheduler, record what happened. A plan of
identical decode steps is run in one exact jump (each step still has its own latency); an arrival cuts
the jump at the end of the step in flight (under an overlapped host, of the step after it), so that the
scheduler sees it exactly when it would have stepping one iteration at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import simpy

from infersim.roofline.hardware import Link
from infersim.roofline.kernel_set import KernelSet, Replay
from infersim.roofline.latency import StepTimer
from infersim.roofline.timing import transfer_time_s

from .blocks import BlockGrowth
from .metrics import Metrics, RunRecord, StepRecord
from .request import REJECTED, Request
from .schedulers import Scheduler
from .early_exit import EarlyExit
from .speculation import Speculation
from .step_plan import StepOutcome, StepPlan


@dataclass(frozen=True)
class EngineOverhead:
    """Host-side time per step outside the GPU kernels: scheduling, input preparation, sampling
    book-keeping, detokenization and output processing. Defaults are an order-of-magnitude estimate of
    vLLM's CPU overhead (Vidur profiles it per step; the WukLab study "Can Scheduling Overhead Dominate LLM
    Inference Performance?", 2024, finds it can exceed half of vLLM's step time). Set both to 0 for the
    pure roofline. An engine whose host `overlaps_gpu` prepares step n + 1 while the GPU runs step n (vLLM
    V1's async scheduling, SGLang's and TensorRT-LLM's overlap schedulers, after NanoFlow): a step then
    takes the longer of the two instead of their sum, and a request that arrives while step n runs is first
    seen when step n + 2 is formed, step n + 1's batch having been chosen already (`Replica`)."""

    fixed_s: float = 1.0e-3
    per_seq_s: float = 10e-6
    overlaps_gpu: bool = False
    # Per request, outside the engine: an API server's or Triton's tokenizing, routing and streaming back.
    # Arrivals are when requests reach the engine. Each request's TTFT and E2E count it whole, however it
    # splits before and after the engine; in an open loop that is all it changes. A closed loop's client
    # sends its next request when it has its last: the next reaches the engine frontend_s after the engine
    # gave the last back (sim.run.simulate), so throughput falls with it. No preset sets it: no engine
    # publishes it; measure yours.
    frontend_s: float = 0.0

    def step_s(self, seqs: int):
        return self.fixed_s + self.per_seq_s * seqs

    def wall_s(self, gpu_s: float, seqs: int) -> float:
        """A step's wall time, its GPU part taking `gpu_s`."""
        host_s = self.step_s(seqs)
        return max(gpu_s, host_s) if self.overlaps_gpu else gpu_s + host_s


class StepCosting(NamedTuple):
    """The timer of a step's kernels, the time its attention kernels launched between piecewise graphs add to
    them (0 unless the step replays pieces), the one-token rows a padded graph replay adds to its decodes
    (KernelSet.padding_rows) and the tokens a padded piecewise replay adds to its pieces
    (KernelSet.padding_tokens)."""

    timer: StepTimer
    eager_attention_s: float
    padding_rows: int = 0
    padding_tokens: int = 0


@dataclass(frozen=True)
class ReplicaCosts:
    """What turns a plan into seconds: the forward pass (`graph_timer` for the steps the engine replays from
    CUDA graphs, whole or in pieces, `timer` for the rest), the engine's host time, and swap traffic (each
    request's KV blocks, `block_bytes` per GPU each, over the host link)."""

    timer: StepTimer
    overhead: EngineOverhead
    host_link: Link
    block_bytes: float
    kernels: KernelSet = KernelSet()
    graph_timer: StepTimer | None = None
    decoding: Speculation | EarlyExit | None = None  # what every decode step does beyond one plain token
    pieces_attention_s: float = 0.0  # a piecewise replay's eager attention launches (KernelSet.eager_attention_s)

    def timer_for(self, plan: StepPlan, tokens: int) -> StepCosting:
        """How the plan's step of `tokens` new tokens is costed (KernelSet.replay)."""
        replay = self.kernels.replay(not plan.prefills, plan.decoding_seqs, tokens)
        if replay == Replay.EAGER:
            return StepCosting(self.timer, 0.0)
        attention_s = self.pieces_attention_s if replay == Replay.PIECES else 0.0
        if plan.prefills:  # pieces, whose dense part runs the padded tokens
            return StepCosting(self.graph_timer, attention_s, 0, self.kernels.padding_tokens(tokens))
        return StepCosting(self.graph_timer, attention_s,
                           self.kernels.decode_padding_rows(replay, plan.decoding_seqs, tokens))

    def swap_s(self, plan: StepPlan) -> float:
        """Swapping blocks blocks the step it happens in (vLLM v0 swaps before running the model)."""
        if not (plan.swap_in_blocks or plan.swap_out_blocks):
            return 0.0
        return self._copies_s(plan.swap_in_blocks) + self._copies_s(plan.swap_out_blocks)

    def _copies_s(self, blocks_of_each: tuple[int, ...]) -> float:
        return sum(float(transfer_time_s(self.host_link, blocks * self.block_bytes)) for blocks in blocks_of_each)


class _Held(NamedTuple):
    """A request that reached an overlapping engine while a step ran, and when."""

    reached_s: float
    request: Request


class Replica:
    """`hand_off`, when given, takes each request whose prompt this replica prefilled and that still has
    tokens to generate elsewhere (a prefill replica of a disaggregated cluster); `on_done`, each request
    that completes or is rejected here (a closed-loop client sends its next one then).

    Where the engine's host overlaps the GPU it forms step n + 1 when step n starts (SGLang's
    `event_loop_overlap` and TensorRT-LLM's `_executor_loop_overlap` receive requests, schedule and launch
    the next batch, then wait for the last one's results; vLLM V1's async scheduler "operates one step ahead
    of the current execution", vllm PR #19970). A request that reaches it while step n runs is held until
    step n + 1 has been formed: the plan made when step n + 1 ends is the first to see it. An idle engine,
    or one whose next step would be empty without it, takes it at once.
    """

    def __init__(self, env: simpy.Environment, index: int, scheduler: Scheduler, costs: ReplicaCosts,
                 metrics: Metrics, hand_off: Callable[[Request], None] | None = None,
                 on_done: Callable[[Request], None] | None = None, seed: int = 0):
        self.env, self.index, self.scheduler, self.costs, self.metrics = env, index, scheduler, costs, metrics
        self.rng = np.random.default_rng([seed, index])  # what its speculative steps accept, how deep exits go
        self.kv = scheduler.kv
        self.hand_off, self.on_done = hand_off, on_done
        self.outstanding = 0  # accepted and not yet finished here
        self.arrival_times_s: list | None = None  # when known in advance, the times requests reach it
        self._next_arrival = 0  # index of the first of them not before now
        self._wake: simpy.Event | None = None  # triggered by an arrival while idle
        self._holds = costs.overhead.overlaps_gpu  # arrivals during a step wait for the step after it
        self._held: list[_Held] = []  # in the order they arrived
        self._formed_s = 0.0  # when the step that ended last started: the batch after it was formed then
        self._in_run = False  # in a decode run that an arrival interrupts
        self._end_s, self._latency_s = np.empty(1), np.empty(1)  # a single step's, reused
        self._run_ends_s: np.ndarray | None = None  # of the decode run in flight, with its blocks before
        self._run_blocks_before = 0  # and how they grow
        self._run_growth: BlockGrowth | None = None
        self.process = env.process(self._serve())

    @property
    def kv_usage(self) -> float:
        """The share of the KV cache in use now; in a decode run, with the blocks its steps so far opened
        (the pool is charged when the run ends)."""
        used = self.kv.pool.used_blocks
        if self._run_ends_s is not None:
            done = int(np.searchsorted(self._run_ends_s, self.env.now, side="right"))
            used = self._run_blocks_before + (int(self._run_growth.cumulative(done)[-1]) if done else 0)
        return used / self.kv.pool.total_blocks

    def submit(self, req: Request) -> None:
        reason = self.scheduler.reject_reason(req)
        if reason:
            req.state, req.reject_reason = REJECTED, reason
            if self.on_done is not None:
                self.on_done(req)
            return
        req.replica = self.index
        self.outstanding += 1
        if self._holds and self._wake is None:  # a step in flight, the one after it already formed
            self._held.append(_Held(self.env.now, req))
        else:
            self.scheduler.add(req)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        elif self._in_run:
            self._in_run = False
            self.process.interrupt()

    def _serve(self):
        while True:
            if self._held:
                self._release(self._formed_s)
            queued = len(self.scheduler.waiting)
            plan = self.scheduler.schedule(self.env.now)
            if plan is None:
                if self._held:  # the next step would be empty: those held run in it
                    self._formed_s = self.env.now
                    continue
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                continue
            if plan.preempted:
                self.metrics.preemptions += plan.preempted
                self.metrics.swapped_blocks += sum(plan.swap_out_blocks)
            if plan.is_decode_run and self.costs.decoding is None:
                yield from self._decode_run(plan, queued)
            else:
                yield from self._step(plan, queued)

    def _release(self, formed_s: float) -> None:
        """Hand the scheduler the held requests that reached the replica by `formed_s`."""
        released = 0
        while released < len(self._held) and self._held[released].reached_s <= formed_s:
            self.scheduler.add(self._held[released].request)
            released += 1
        del self._held[:released]

    def _step(self, plan: StepPlan, queued: int):
        """One step of prefill chunks and/or decodes (drafting and verifying, or exiting early, as the costs'
        decoding technique says)."""
        start_s = self._formed_s = self.env.now
        decoding, technique = plan.decoding_seqs, self.costs.decoding
        per_seq = technique.tokens_per_seq if technique is not None and decoding else 1
        new, cached, sampled = [], [], decoding * per_seq  # verification reads logits at every drafted position
        for chunk in plan.prefills:
            new.append(chunk.tokens)
            cached.append(chunk.cached_tokens)
            sampled += chunk.completes_prefill
        prefill_tokens = sum(new)
        emitted = None
        if decoding:
            new += [per_seq] * decoding
            cached += plan.decode.context_tokens.tolist()
        timer, eager_attention_s, padding, padding_tokens = self.costs.timer_for(plan, sum(new))
        if technique is not None:  # its steps' padding is not costed
            (gpu_s, flops, nbytes), emitted = technique.step(timer, plan, new, cached, sampled, self.rng, self.metrics)
        else:
            gpu_s, flops, nbytes = timer.step(new + [1] * padding, cached + [0] * padding, sampled + padding,
                                              padding_tokens)
            if padding or padding_tokens:  # the model's work is the real tokens' (MFU, MBU)
                _, flops, nbytes = timer.step(new, cached, sampled)
        latency_s = self.costs.overhead.wall_s(gpu_s + eager_attention_s + self.costs.swap_s(plan),
                                               decoding + len(plan.prefills))
        yield self.env.timeout(latency_s)
        end_s = self.env.now
        self.metrics.flops += flops
        self.metrics.bytes += nbytes
        self._end_s[0], self._latency_s[0] = end_s, latency_s
        self._record(self.scheduler.apply(plan, self._end_s, self._latency_s, emitted))
        self.metrics.step(StepRecord(start_s, latency_s, self.index, decoding + len(plan.prefills), prefill_tokens,
                                     decoding, self.kv.pool.used_blocks, queued, self.scheduler.cached_tokens()))
        if decoding:
            self._done(self.scheduler.retire_finished(end_s))

    def _decode_run(self, plan: StepPlan, queued: int):
        """The plan's decode steps of one batch in one jump, cut short after the step an arrival lands in (an
        overlapping engine's: after the step following it, which was formed without it)."""
        batch, now_s = plan.decode, self.env.now
        seqs, queued_after_plan = len(batch), len(self.scheduler.waiting)
        scan, growth = batch.scan(), self.kv.growth(batch)
        steps = plan.decode_steps
        overhead, (timer, eager_attention_s, padding, _) = self.costs.overhead, self.costs.timer_for(plan, seqs)
        latency_s, ends_s = timer.decode_run(seqs, scan.context_sum_tokens, scan.context_max_tokens, steps,
                                             overhead.step_s(seqs), overhead.overlaps_gpu, now_s, eager_attention_s,
                                             padding)
        used_blocks = self.kv.pool.used_blocks
        self._run_ends_s, self._run_blocks_before, self._run_growth = ends_s, used_blocks, growth
        # times as Python floats (`item`): NumPy scalars would make the clock one, and every sum on it slower
        late = int(self._holds)  # steps run after the one an arrival lands in before the scheduler sees it
        if self._held:  # held at its start: the scheduler sees them after its first step
            steps = 1
        if self.arrival_times_s is not None:  # the next arrival here is known: stop after the step it lands in
            times, upcoming = self.arrival_times_s, self._next_arrival
            while upcoming < len(times) and times[upcoming] < now_s:
                upcoming += 1
            self._next_arrival = upcoming
            if upcoming < len(times) and times[upcoming] < ends_s.item(steps - 1):
                steps = self._cut(ends_s, times[upcoming], now_s, late, steps)
            yield self.env.timeout(ends_s.item(steps - 1) - now_s)
        else:
            self._in_run = steps > 1
            try:
                yield self.env.timeout(ends_s.item(steps - 1) - now_s)
            except simpy.Interrupt:  # an arrival: finish the step in flight, then let the scheduler in
                steps = self._cut(ends_s, self.env.now, now_s, late, steps)
                yield self.env.timeout(ends_s.item(steps - 1) - self.env.now)
            self._in_run = False
        self._formed_s = ends_s.item(steps - 2) if steps > 1 else now_s
        self._run_ends_s = None
        flops, nbytes = timer.decode_totals(seqs, scan.context_sum_tokens, scan.context_max_tokens, steps)
        self.metrics.flops += flops
        self.metrics.bytes += nbytes
        if steps < len(ends_s):
            ends_s, latency_s = ends_s[:steps], latency_s[:steps]
        self._record(self.scheduler.apply(plan, ends_s, latency_s))
        record = RunRecord(self.index, seqs, used_blocks, queued, queued_after_plan, growth.seqs, growth.copies,
                           scan.context_sum_tokens)
        self.metrics.run(ends_s, latency_s, record, growth.crossings_cdf)  # blocks after each step follow from it
        self._done(self.scheduler.retire_finished(ends_s.item(-1)))

    @staticmethod
    def _cut(ends_s: np.ndarray, arrival_s: float, start_s: float, late: int, steps: int) -> int:
        """The steps of a run from `start_s` (ending at `ends_s`) that go ahead of an arrival at `arrival_s`:
        through the step it lands in, and `late` more. One arriving as the run starts, after its plan, is
        seen when the first step ends, as a request held then is (`_release`)."""
        if arrival_s <= start_s:
            return 1
        return min(int(ends_s.searchsorted(arrival_s, side="left")) + 1 + late, steps)

    def _record(self, outcome: StepOutcome) -> None:
        if outcome.first_gaps_s is not None:
            self.metrics.inter_token_gaps(outcome.first_gaps_s, outcome.rows_per_gap)
        if outcome.later_gaps_s is not None:
            self.metrics.step_gaps(outcome.later_gaps_s, outcome.rows)
        for resumed in outcome.resumed:
            self.metrics.step_gaps(np.array([resumed.gap_s]), resumed.seqs)
        self._done(outcome.completed)
        self.outstanding -= len(outcome.handed_off)
        for req in outcome.handed_off:
            self.hand_off(req)

    def _done(self, requests: list[Request]) -> None:
        self.outstanding -= len(requests)
        if self.on_done is not None:
            for req in requests:
                self.on_done(req)
