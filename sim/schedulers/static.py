"""Request-level (static) batching, as served before continuous batching (e.g. FasterTransformer behind
Triton): take up to `max_num_seqs` waiting requests, prefill them together, and decode the whole batch
until its longest member is done; finished sequences keep computing as padding and every response is
returned when the batch ends. New arrivals wait for the next batch (Orca, Yu et al. 2022, §2.2)."""
from __future__ import annotations

from ..replica import Step, decode_step
from .base import Scheduler


class StaticScheduler(Scheduler):
    name = "static"
    pads_batch = True

    def plan(self, replica):
        if len(replica.decoding):
            swap_s = replica.make_room_for_decode(self.limits.preemption)
            return decode_step(swap_s)
        work = replica.admit_waiting(self.limits.max_num_batched_tokens, self.limits.max_num_seqs)
        return Step(prefills=work) if work else None
