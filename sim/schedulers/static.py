"""Request-level (static) batching, as served before continuous batching (e.g. FasterTransformer behind
Triton): take up to `max_num_seqs` waiting requests, prefill them together, and decode the whole batch
until its longest member is done; finished sequences keep computing as padding and every response is
returned when the batch ends. New arrivals wait for the next batch (Orca, Yu et al. 2022, §2.2). Memory
is reserved up front for the padded length, so it runs on contiguous reservations only."""
from __future__ import annotations

from .base import Scheduler


class StaticScheduler(Scheduler):
    name = "static"
    allocators = ("contiguous",)
    pads_batch = True

    def plan_step(self):
        if len(self.running):
            self.make_room_for_decode()
            return self.plan(decode=True)
        chunks = self.admit(self.limits.max_num_batched_tokens)
        return self.plan(prefills=chunks, decode=not chunks)  # requests prefilled elsewhere start decoding
