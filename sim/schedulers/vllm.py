"""vLLM (Kwon et al. SOSP 2023; the v0 engine's default scheduler): iteration-level batching over paged
blocks. Waiting prompts are prefilled as soon as blocks allow, in steps of their own (prefills first);
otherwise every running sequence decodes one token. When a decode step needs a block that is not free,
the most recently admitted request is preempted, by recomputation (its blocks are freed and its context
is prefilled again later) or by swapping its blocks to host memory over PCIe. Swapped requests come back
before any new prompt is admitted."""
from __future__ import annotations

from .base import Scheduler


class VllmScheduler(Scheduler):
    name = "vllm"
    allocators = ("paged", "contiguous")

    def plan_step(self):
        self.swap_in()
        if not self.swapped:
            chunks = self.admit(self.limits.max_num_batched_tokens)
            if chunks:
                return self.plan(prefills=chunks)
        if not len(self.running):
            return None
        self.make_room_for_decode()
        return self.plan(decode=True)
