"""Orca (Yu et al. OSDI 2022): iteration-level scheduling with selective batching. Each iteration admits
waiting requests up to a maximum batch size, running their whole prompts in the same step as the
others' decodes; memory is reserved for the maximum length of every admitted request (its KV slots are
contiguous), so nothing is ever preempted but fewer requests fit. Over paged blocks (allowed here) it
reserves the running batch's next step and preempts, as vLLM does, when growth outruns the cache."""
from __future__ import annotations

from .base import Scheduler


class OrcaScheduler(Scheduler):
    name = "orca"
    allocators = ("contiguous", "paged")

    def plan_step(self):
        self.swap_in()  # only a paged allocator can run short and preempt
        self.make_room_for_decode()
        chunks = [] if self.swapped else self.admit(self.limits.max_num_batched_tokens, reserve_next_step=True)
        return self.plan(prefills=chunks, decode=True)
