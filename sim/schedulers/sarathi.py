"""Sarathi-Serve (Agrawal et al. OSDI 2024): stall-free batching. Every step first decodes all running
sequences, then fills what is left of a token budget (`chunk_tokens`) with prefill chunks, continuing
partly prefilled prompts before admitting new ones, so a long prompt never stalls the decodes."""
from __future__ import annotations

from typing import ClassVar

from .base import Scheduler, SchedulerLimits


class SarathiScheduler(Scheduler):
    name = "sarathi"
    allocators = ("paged", "contiguous")
    chunked_prompts = True
    budget_counts_decodes = True

    @classmethod
    def step_token_budget(cls, limits: SchedulerLimits) -> int:
        return limits.chunk_tokens

    admits_after_preempting: ClassVar[bool] = True  # may a step that preempted admit waiting requests?

    def may_admit(self) -> bool:
        """New requests wait while swapped ones are out (they come back first), and in a step that preempted
        unless the policy `admits_after_preempting`."""
        return not self.swapped and (self.admits_after_preempting or not self._preempted)

    def plan_step(self):
        self.swap_in()
        self.make_room_for_decode()
        budget = self.step_token_budget(self.limits) - self.decode_tokens * len(self.running)
        chunks = self.fill_budget(budget, admit=self.may_admit(), reserve_next_step=True)
        return self.plan(prefills=chunks, decode=True)
