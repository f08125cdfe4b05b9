"""vLLM (Kwon et al. SOSP 2023; the v0 engine's default scheduler): iteration-level batching over paged
blocks. Waiting prompts are prefilled as soon as blocks allow, in steps of their own (prefills first);
otherwise every running sequence decodes one token. When a decode step needs a block that is not free,
the most recently admitted request is preempted, by recomputation (its blocks are freed and its context
is prefilled again later) or by swapping its blocks to host memory over PCIe. Swapped requests come back
before any new prompt is admitted."""
from __future__ import annotations

from ..replica import Step, decode_step
from .base import Scheduler


class VllmScheduler(Scheduler):
    name = "vllm"

    def plan(self, replica):
        limits = self.limits
        swap_s = replica.swap_in()
        if not replica.swapped:
            work = replica.admit_waiting(limits.max_num_batched_tokens, limits.max_num_seqs)
            if work:
                return Step(prefills=work, extra_s=swap_s)
        if not len(replica.decoding):
            return None
        swap_s += replica.make_room_for_decode(limits.preemption)
        return decode_step(swap_s)
