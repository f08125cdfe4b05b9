"""SGLang's scheduler (sgl-project/sglang, python/sglang/srt/managers/scheduler.py `get_next_batch_to_run`,
0.5.x): prefill first. When waiting or partly prefilled prompts can get tokens, a step prefills them
(chunked to `chunk_tokens`, SGLang's chunked_prefill_size, continuing the partly prefilled prompt first) and
decodes nothing ("mixed chunk" is off by default); otherwise every running request decodes. When blocks run
out, running requests are retracted and recomputed later, shortest output so far and then longest prompt
first (`retraction_policy` "length", managers/schedule_batch.py). SGLang's admission reserve
(`new_token_ratio`, decaying from 0.7) is not modelled: admission keeps only the watermark."""
from __future__ import annotations

from ..request import Request
from .base import Scheduler, SchedulerLimits


class SglangScheduler(Scheduler):
    name = "sglang"
    allocators = ("paged",)
    chunked_prompts = True
    preemption_modes = ("recompute",)

    @classmethod
    def step_token_budget(cls, limits: SchedulerLimits) -> int:
        return limits.chunk_tokens

    def preemption_victim(self) -> Request:
        return min(self._decoding.values(), key=lambda r: (r.generated_tokens, -r.prompt_tokens, -r.id))

    def plan_step(self):
        chunks = self.fill_budget(self.limits.chunk_tokens)
        if chunks:
            return self.plan(prefills=chunks)
        self.make_room_for_decode()
        return self.plan(decode=True)
