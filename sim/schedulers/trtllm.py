"""TensorRT-LLM's in-flight batching with its default capacity policy (NVIDIA/TensorRT-LLM
tensorrt_llm/llmapi/llm_args.py: `max_num_tokens` 8192, `enable_chunked_prefill` False,
`capacity_scheduler_policy` GUARANTEED_NO_EVICT): every step runs all generating requests and adds whole
prompts (context requests) while the step's tokens stay within `max_num_batched_tokens`; a request is
admitted only if blocks for its longest context (prompt plus every output token) stay free beside those the
running requests will still take, so nothing is ever preempted. Whether decode tokens count against
max_num_tokens is taken as yes (unconfirmed in the source)."""
from __future__ import annotations

from dataclasses import dataclass

from ..request import Request
from .base import Scheduler


@dataclass(frozen=True)
class RunningReserve:
    """Blocks the running requests will still take, summed over the `decoding_requests` decoding ones and the
    first `prefilling_requests` of the prefilling list."""

    decoding_requests: int
    prefilling_requests: int
    blocks: int


class TrtllmScheduler(Scheduler):
    name = "trtllm"
    allocators = ("paged",)
    budget_counts_decodes = True
    preemption_modes = ("recompute",)
    never_evicts = True
    _reserve: RunningReserve | None = None

    def schedule(self, now_s: float):
        self._reserve = None  # the steps since the last plan changed what every request holds
        return super().schedule(now_s)

    def _still_to_take(self, req: Request) -> int:
        return self.kv.peak_blocks(req) - self.kv.blocks_of(req)

    def _running_reserve(self) -> int:
        """What every running request will still take to reach its longest context. While one step is planned
        only admissions change it, each appending a request to `prefilling` (or, handed off prefilled, to the
        decoding ones): the sum is carried from one candidate to the next and only the newcomers added, where
        summing afresh for every candidate made admitting n requests at once cost n^2."""
        reserve = self._reserve
        if reserve is None or reserve.decoding_requests != len(self._decoding):
            reserve = RunningReserve(len(self._decoding), 0, sum(map(self._still_to_take, self._decoding.values())))
        newcomers = self.prefilling[reserve.prefilling_requests:]
        self._reserve = RunningReserve(reserve.decoding_requests, len(self.prefilling),
                                       reserve.blocks + sum(map(self._still_to_take, newcomers)))
        return self._reserve.blocks

    def admission_reserve(self, req: Request, context_tokens: int) -> int:
        """What this request and every running one will still take to reach their longest contexts; none in
        a disaggregated prefill pool, whose requests leave once prefilled."""
        if self.hands_off_prefilled:
            return 0
        return self._running_reserve() + self.kv.peak_blocks(req) - self.kv.blocks_to_admit(req, context_tokens)

    def _context_budget(self) -> int:
        """The step's tokens left for context requests once every generating request has its own."""
        return self.limits.max_num_batched_tokens - self.decode_tokens * len(self.running)

    def plan_step(self):
        self.make_room_for_decode()  # guaranteed no eviction: only requests its reserve let in can run short
        budget = self._context_budget()
        chunks = self.admit(budget) if budget > 0 else []
        return self.plan(prefills=chunks, decode=True)


class TrtllmChunkedScheduler(TrtllmScheduler):
    """TensorRT-LLM with chunked context on (executor `enable_chunked_context`; trtllm-bench throughput's
    default, tensorrt_llm/bench/benchmark/throughput.py `--enable_chunked_context/--disable_chunked_context`
    default True): generating requests first, then context requests first come, first served
    (ContextChunkingPolicy FIRST_COME_FIRST_SERVED), each taking what the step's `max_num_batched_tokens`
    leaves, so a prompt longer than the budget is prefilled over several steps instead of refused. Partly
    prefilled prompts came first and continue first. TensorRT-LLM rounds a chunk that is not a prompt's last
    down to whole KV blocks; that rounding is not modelled."""

    name = "trtllm-chunked"
    chunked_prompts = True

    def plan_step(self):
        self.make_room_for_decode()
        return self.plan(prefills=self.fill_budget(self._context_budget()), decode=True)
