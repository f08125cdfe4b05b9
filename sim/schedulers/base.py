"""What every scheduler shares: its limits, its queues, and the mechanisms its policy is made of.

A scheduler owns the requests its replica has accepted (waiting, prefilling, decoding, swapped out) and
decides, as vLLM's `Scheduler.schedule()` does: which to admit, how to chunk their prompts, whom to preempt
and whether by recomputation or by swapping, asking the KV cache manager for blocks. It returns a
`StepPlan`; the replica executes it and hands the timing back to `apply`, as vLLM's
`update_from_output`. A policy is a subclass that composes the mechanisms below in `plan_step`, declares
what it needs (`allocators`, `chunked_prompts`, `budget_counts_decodes`, `pads_batch`, `preemption_modes`,
`never_evicts`, `step_token_budget`) and may override two hooks: `admission_reserve` (blocks kept free
when admitting) and `preemption_victim` (whom to preempt first).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..batch import DecodeBatch
from ..kv_cache import KVCacheManager
from ..request import DECODING, DONE, SWAPPED, WAITING, Request
from ..step_plan import PrefillChunk, ResumedRequest, StepOutcome, StepPlan, next_chunk
from ..waiting_queue import WaitingQueue

PREEMPTION_MODES = ("recompute", "swap")
MAX_DECODE_STEPS = 4096  # the longest run of decode steps one plan covers (the run is costed as one array)


def most_new_blocks_per_seq(decode_tokens: int, block_size: int) -> int:
    """The most blocks one sequence's next decode step opens: the boundaries its tokens cross, plus a copy."""
    return 1 + math.ceil(decode_tokens / block_size)


@dataclass(frozen=True)
class SchedulerLimits:
    """vLLM's names and defaults: at most `max_num_seqs` sequences in a batch and
    `max_num_batched_tokens` tokens in one step; contexts up to `max_model_len`."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 8192
    chunk_tokens: int = 512  # the token budget of a chunked-prefill step (Sarathi-Serve)
    preemption: str = "recompute"


def _chunking_schedulers() -> list[str]:
    """The registered schedulers that prefill a prompt over several steps."""
    from . import SCHEDULERS
    return [name for name, cls in SCHEDULERS.items() if cls.chunked_prompts]


class Scheduler:
    name: ClassVar[str] = ""
    allocators: ClassVar[tuple[str, ...]] = ("paged", "contiguous")  # the KV allocators it runs on; first: default
    chunked_prompts: ClassVar[bool] = False  # may one prompt be prefilled over several steps?
    budget_counts_decodes: ClassVar[bool] = False  # does a step's token budget count its decode tokens too?
    pads_batch: ClassVar[bool] = False  # do finished sequences keep computing until the batch's longest is done?
    preemption_modes: ClassVar[tuple[str, ...]] = PREEMPTION_MODES  # how it may preempt
    never_evicts: ClassVar[bool] = False  # does its admission reserve every block a request will take?

    @classmethod
    def step_token_budget(cls, limits: SchedulerLimits) -> int:
        """The most tokens one step computes: what the activation workspace is sized for."""
        return limits.max_num_batched_tokens

    def __init__(self, limits: SchedulerLimits, kv: KVCacheManager, max_decode_steps: int = MAX_DECODE_STEPS,
                 hands_off_prefilled: bool = False, decode_tokens: int = 1):
        self.limits, self.kv = limits, kv
        self.max_decode_steps = max_decode_steps  # how far a plan of identical decode steps may reach
        self.decode_tokens = decode_tokens  # tokens a decoding sequence computes per step (k + 1 speculating)
        self.hands_off_prefilled = hands_off_prefilled  # a prefill pool's: requests leave once prefilled
        self.waiting = WaitingQueue()
        self.prefilling: list[Request] = []
        self.running = DecodeBatch(kv.block_size)  # the decoding sequences
        self.swapped: deque[tuple[Request, DecodeBatch]] = deque()  # oldest first, with their rows
        self._decoding: dict[int, Request] = {}  # requests with rows in `running`, by id
        self._steps_to_first_completion = 0  # of the running batch, when the last plan was made
        self._some_finished = False  # did the last steps run some sequence to its last token?
        self._now_s = 0.0
        self._swap_in: list[int] = []  # what the step being planned moves over the host link
        self._swap_out: list[int] = []
        self._preempted = 0

    # -- what the replica asks ---------------------------------------------------------------------------
    def reject_reason(self, req: Request) -> str:
        """Why this request can never be served here ("" if it can)."""
        limits, kv = self.limits, self.kv
        if req.total_tokens > limits.max_model_len:
            return f"prompt + output = {req.total_tokens} tokens exceeds scheduler.max_model_len={limits.max_model_len}"
        if not self.chunked_prompts and req.prompt_tokens > limits.max_num_batched_tokens:
            return (f"prompt of {req.prompt_tokens} tokens exceeds scheduler.max_num_batched_tokens="
                    f"{limits.max_num_batched_tokens} (raise it, or use a scheduler that chunks prompts: "
                    f"{', '.join(_chunking_schedulers())})")
        if req.num_seqs > limits.max_num_seqs:
            return f"num_seqs={req.num_seqs} exceeds scheduler.max_num_seqs={limits.max_num_seqs}"
        peak_blocks = kv.peak_blocks(req)
        if peak_blocks > kv.pool.total_blocks - kv.watermark_blocks:
            return (f"needs {peak_blocks} KV blocks at its longest but the cache holds "
                    f"{kv.pool.total_blocks} (watermark {kv.watermark_blocks})")
        return ""

    def add(self, req: Request) -> None:
        req.state = WAITING
        self.waiting.push(req)

    def cached_tokens(self) -> int:
        """Tokens whose K/V its requests hold: decoding contexts and the prompt chunks prefilled so far."""
        decoding = self.running.scan().context_sum_tokens if len(self.running) else 0
        return decoding + sum(r.prefilled_tokens for r in self.prefilling)

    def schedule(self, now_s: float) -> StepPlan | None:
        """The next step (None: nothing to run until a request arrives)."""
        self._now_s = now_s
        self._swap_in, self._swap_out, self._preempted = [], [], 0
        return self.plan_step()

    def plan_step(self) -> StepPlan | None:
        """The policy: compose the mechanisms below and return `self.plan(...)`."""
        raise NotImplementedError

    def apply(self, plan: StepPlan, ends_s: np.ndarray, latency_s: np.ndarray,
              emitted: np.ndarray | None = None) -> StepOutcome:
        """The replica ran `plan` for len(ends_s) steps ending at `ends_s` (one step in which decoding row i
        emitted `emitted[i]` tokens, when speculating): hand out the tokens, move the requests whose prefill
        is done, and say when their tokens came."""
        outcome = StepOutcome()
        batch = plan.decode
        if batch is not None:
            self._some_finished = emitted is not None or len(ends_s) >= self._steps_to_first_completion
            outcome.first_gaps_s, outcome.rows_per_gap = self.kv.advance(batch, ends_s, latency_s, emitted)
            if len(latency_s) > 1:
                outcome.later_gaps_s, outcome.rows = latency_s[1:], len(batch)
        if plan.prefills:
            self._progress_prefills(plan.prefills, float(ends_s[-1]), outcome)
        if self.pads_batch:
            self.running.pad_to_longest()
        return outcome

    def retire_finished(self, now_s: float) -> list[Request]:
        """Complete the requests whose sequences have generated all their tokens; frees their blocks."""
        if not self._some_finished:
            return []
        self._some_finished = False
        finished = self.running.pop_finished()
        done = []
        for request_id, max_itl_s in zip(finished.request_ids, finished.max_itl_s):
            req = self._decoding.pop(request_id)
            req.max_itl_s = max(req.max_itl_s, max_itl_s)
            req.last_token_s = now_s
            self._complete(req, now_s)
            done.append(req)
        return done

    def _progress_prefills(self, chunks: tuple[PrefillChunk, ...], end_s: float, outcome: StepOutcome) -> None:
        for chunk in chunks:
            chunk.request.prefilled_tokens += chunk.tokens
        for chunk in chunks:
            if chunk.completes_prefill:
                self.prefilling.remove(chunk.request)
                self._finish_prefill(chunk.request, end_s, outcome)

    # -- mechanisms the policies compose -----------------------------------------------------------------
    def plan(self, prefills=(), decode: bool = False) -> StepPlan | None:
        """The step: prefill `prefills` and, with `decode`, one token for every running sequence; a
        decode-only step without swap traffic covers the steps until the batch would change."""
        batch = self.running if decode and len(self.running) else None
        if batch is None:
            if not prefills:
                assert not (self._preempted or self._swap_in), "a plan that moves requests must run a step"
                return None
            return StepPlan(tuple(prefills), None, 1, tuple(self._swap_in), tuple(self._swap_out), self._preempted)
        self._steps_to_first_completion = batch.scan().fewest_remaining_tokens
        swapping = self._swap_in or self._swap_out
        if prefills or swapping:
            return StepPlan(tuple(prefills), batch, 1, tuple(self._swap_in), tuple(self._swap_out), self._preempted)
        if self._preempted:  # it freed blocks: the next step may admit what waits, so plan one step
            return StepPlan(decode=batch, preempted=self._preempted, is_decode_run=True)
        steps = self.kv.steps_that_fit(batch, min(self._steps_to_first_completion, self.max_decode_steps))
        return StepPlan(decode=batch, decode_steps=steps, is_decode_run=True)

    def seqs_in_flight(self) -> int:
        return len(self.running) + sum(r.num_seqs for r in self.prefilling)

    def admit(self, token_budget: int, reserve_next_step: bool = False) -> list[PrefillChunk]:
        """Admit waiting requests in priority/arrival order while sequences, tokens and blocks allow,
        stopping at the first that does not fit, as vLLM's FCFS queue does; with `reserve_next_step`, the
        blocks the running batch's next decode step opens stay free. Returns this step's prefill chunks
        (whole prompts unless the policy chunks them); a request whose KV cache arrived with it (prefilled
        elsewhere) joins the running batch directly, its decode token counting against the budget when the
        policy's budget counts decodes."""
        chunks: list[PrefillChunk] = []
        if not self.waiting:
            return chunks
        seqs = self.seqs_in_flight()
        reserve_blocks = self.kv.next_step_blocks(self.running, self.decode_tokens) if reserve_next_step else 0
        while self.waiting and token_budget > 0:
            req = self.waiting.peek()
            arrived = req.kv_arrived
            tokens = req.cached_context_tokens if arrived else req.prompt_tokens + req.generated_tokens
            first_step_blocks = self.kv.first_step_blocks(req, tokens) if arrived and reserve_next_step else 0
            if seqs + req.num_seqs > self.limits.max_num_seqs:
                break
            if not self.kv.can_admit(req, tokens, reserve_blocks + first_step_blocks + self.admission_reserve(req, tokens)):
                break
            if not (arrived or self.chunked_prompts) and self.kv.tokens_to_compute(req, tokens) > token_budget:
                break
            self.waiting.pop()
            seqs += req.num_seqs
            cached = self.kv.admit(req, tokens)
            if math.isnan(req.first_scheduled_s):
                req.first_scheduled_s = self._now_s
            if arrived:
                self._start_decoding(req, tokens, req.last_token_s)
                reserve_blocks += first_step_blocks
                if self.budget_counts_decodes:
                    token_budget -= req.num_seqs * self.decode_tokens
                continue
            req.start_prefill(cached)
            self.prefilling.append(req)
            chunk = next_chunk(req, token_budget)
            chunks.append(chunk)
            token_budget -= chunk.tokens
        return chunks

    def continue_prefills(self, token_budget: int) -> list[PrefillChunk]:
        """The next chunks of partly prefilled prompts, oldest first, within `token_budget` tokens."""
        chunks = []
        for req in self.prefilling:
            if token_budget <= 0:
                break
            chunk = next_chunk(req, token_budget)
            chunks.append(chunk)
            token_budget -= chunk.tokens
        return chunks

    def fill_budget(self, budget: int, admit: bool = True, **admit_options) -> list[PrefillChunk]:
        """A step's prefill chunks within `budget` tokens: partly prefilled prompts continue first, oldest
        first, then (if `admit`) waiting requests take what is left (`admit`'s options passed on)."""
        chunks = self.continue_prefills(budget) if budget > 0 else []
        budget -= sum(chunk.tokens for chunk in chunks)
        if admit and budget > 0:
            chunks += self.admit(budget, **admit_options)
        return chunks

    def admission_reserve(self, req: Request, context_tokens: int) -> int:
        """Blocks a policy keeps free beyond the request's context when admitting it (none: vLLM's)."""
        return 0

    def preemption_victim(self) -> Request:
        """The running request to preempt first: the most recently admitted (vLLM's policy)."""
        return self._decoding[int(self.running.request[-1])]

    def make_room_for_decode(self) -> None:
        """Preempt running requests, `preemption_victim` first, until the next decode step's new blocks fit."""
        most_per_seq = most_new_blocks_per_seq(self.decode_tokens, self.kv.block_size)
        if self.kv.pool.available_blocks >= most_per_seq * len(self.running):
            return
        while (len(self.running)
               and self.kv.next_step_blocks(self.running, self.decode_tokens) > self.kv.pool.available_blocks):
            self._preempt(self.preemption_victim())

    def swap_in(self) -> None:
        """Bring swapped requests back, oldest first, while their blocks fit above the watermark."""
        while self.swapped:
            req, rows = self.swapped[0]
            if not self.kv.can_swap_in(req, rows, self.decode_tokens):
                break
            self.swapped.popleft()
            self._swap_in.append(self.kv.swap_in(req))
            req.state = DECODING
            self._decoding[req.id] = req
            self.running.extend(rows)

    # -- the requests' own story ------------------------------------------------------------------------
    def _preempt(self, req: Request) -> None:
        """Swap the request's blocks to host memory if the scheduler swaps and they fit there, else free
        them and recompute its context later (vLLM's preemption modes)."""
        rows = self.running.pop_request(req.id)
        del self._decoding[req.id]
        req.generated_tokens = req.output_tokens - int(rows.remaining_tokens[0])
        req.max_itl_s = max(req.max_itl_s, float(rows.max_itl_s.max()))
        req.preemptions += 1
        self._preempted += 1
        if self.limits.preemption == "swap" and self.kv.can_swap_out(req):
            self._swap_out.append(self.kv.swap_out(req))
            req.state = SWAPPED
            self.swapped.append((req, rows))
            return
        self.kv.free(req)
        req.kv_arrived = False  # what arrived with it is gone: the context is computed again
        self.add(req)

    def _start_decoding(self, req: Request, context_tokens: int, now_s: float) -> None:
        """Its context is cached: its sequences join the running batch."""
        req.state = DECODING
        self.running.add_request(req.id, req.num_seqs, context_tokens, req.remaining_tokens,
                                 self.kv.copies_on_write(context_tokens), now_s)
        self._decoding[req.id] = req

    def _finish_prefill(self, req: Request, now_s: float, outcome: StepOutcome) -> None:
        """The last prompt chunk is in the cache: sample a token for each sequence."""
        if req.generated_tokens:  # a recomputation after preemption: the gap since the last token
            outcome.resumed.append(ResumedRequest(now_s - req.last_token_s, req.num_seqs))
        req.emit_token(now_s)
        if req.remaining_tokens == 0:
            self._complete(req, now_s)
            outcome.completed.append(req)
        elif self.hands_off_prefilled:
            self.kv.free(req)
            outcome.handed_off.append(req)
        else:
            self._start_decoding(req, req.prefill_tokens, now_s)

    def _complete(self, req: Request, now_s: float) -> None:
        req.state, req.completion_s, req.generated_tokens = DONE, now_s, req.output_tokens
        self.kv.free(req)
