"""Sarathi-Serve (Agrawal et al. OSDI 2024): stall-free batching. Every step first decodes all running
sequences, then fills what is left of a token budget (`chunk_tokens`) with prefill chunks, continuing
partly prefilled prompts before admitting new ones, so a long prompt never stalls the decodes."""
from __future__ import annotations

from ..replica import Step
from .base import Scheduler


class SarathiScheduler(Scheduler):
    name = "sarathi"
    chunked = True

    def plan(self, replica):
        limits = self.limits
        swap_s = replica.swap_in()
        swap_s += replica.make_room_for_decode(limits.preemption)
        budget = limits.chunk_tokens - len(replica.decoding)
        work = []
        for req in replica.prefilling:
            if budget <= 0:
                break
            chunk = min(req.prefill_tokens - req.prefilled_tokens, budget)
            work.append((req, chunk))
            budget -= chunk
        if not replica.swapped and budget > 0:
            work += replica.admit_waiting(budget, limits.max_num_seqs, reserve_blocks=replica.decode_step_blocks(),
                                          whole_prompts=False)
        if not work and not len(replica.decoding):
            return None
        return Step(prefills=work, decode=bool(len(replica.decoding)), extra_s=swap_s,
                    can_jump=not work and swap_s == 0)
