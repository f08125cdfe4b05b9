"""vLLM's V1 engine scheduler (vllm/v1/core/sched/scheduler.py `Scheduler.schedule`, vLLM 0.8 onwards):
one token budget per step (`max_num_batched_tokens`) shared by every running request first, a decode taking
one token and a partly prefilled prompt its next chunk, then by waiting requests, whose prompts are chunked
to fit; there are no prefill-only steps. When blocks run out the last admitted running request is preempted
and recomputed later (V1 has no swap), and a step that preempted admits no one ("if not preempted_reqs").
It is Sarathi-Serve's stall-free batching with vLLM's budget and rules; a prompt's blocks are taken when it
is admitted (V1 admits a request only if its whole prompt fits, `scheduler_reserve_full_isl`)."""
from __future__ import annotations

from .base import SchedulerLimits
from .sarathi import SarathiScheduler


class VllmV1Scheduler(SarathiScheduler):
    name = "vllm-v1"
    allocators = ("paged",)
    preemption_modes = ("recompute",)
    admits_after_preempting = False

    @classmethod
    def step_token_budget(cls, limits: SchedulerLimits) -> int:
        return limits.max_num_batched_tokens
