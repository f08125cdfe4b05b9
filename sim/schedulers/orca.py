"""Orca (Yu et al. OSDI 2022): iteration-level scheduling with selective batching. Each iteration admits
waiting requests up to a maximum batch size, running their whole prompts in the same step as the
others' decodes; memory is reserved for the maximum length of every admitted request (its KV slots are
contiguous), so nothing is ever preempted but fewer requests fit."""
from __future__ import annotations

from ..replica import Step
from .base import Scheduler


class OrcaScheduler(Scheduler):
    name = "orca"

    def plan(self, replica):
        limits = self.limits
        swap_s = replica.swap_in()  # only a paged allocator can run short and preempt
        swap_s += replica.make_room_for_decode(limits.preemption)
        work = [] if replica.swapped else replica.admit_waiting(limits.max_num_batched_tokens, limits.max_num_seqs,
                                     reserve_blocks=replica.decode_step_blocks())
        if not work and not len(replica.decoding):
            return None
        return Step(prefills=work, decode=bool(len(replica.decoding)), extra_s=swap_s,
                    can_jump=not work and swap_s == 0)
