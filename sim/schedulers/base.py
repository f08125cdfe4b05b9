"""What every scheduler shares: its limits, and which requests it can never serve."""
from __future__ import annotations

from dataclasses import dataclass

from ..kv_cache import KVCacheManager
from ..request import Request

PREEMPTION_MODES = ("recompute", "swap")


@dataclass(frozen=True)
class SchedulerLimits:
    """vLLM's names and defaults: at most `max_num_seqs` sequences in a batch and
    `max_num_batched_tokens` tokens in one step; contexts up to `max_model_len`."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 8192
    chunk_tokens: int = 512  # the token budget of a chunked-prefill step (Sarathi-Serve)
    preemption: str = "recompute"


class Scheduler:
    """Chooses the next step of a replica. `plan(replica)` admits, preempts and swaps through the
    replica, and returns a `Step` (or None when there is nothing to run)."""

    name = ""
    pads_batch = False  # do finished sequences keep computing until the batch's longest is done?
    chunked = False

    def __init__(self, limits: SchedulerLimits = SchedulerLimits()):
        self.limits = limits

    def reject_reason(self, req: Request, kv: KVCacheManager) -> str:
        """Why this request can never be served here ("" if it can)."""
        if req.total_tokens > self.limits.max_model_len:
            return (f"prompt + output = {req.total_tokens} tokens exceeds scheduler.max_model_len="
                    f"{self.limits.max_model_len}")
        if not self.chunked and req.prompt_tokens > self.limits.max_num_batched_tokens:
            return (f"prompt of {req.prompt_tokens} tokens exceeds scheduler.max_num_batched_tokens="
                    f"{self.limits.max_num_batched_tokens} (raise it or use the sarathi scheduler)")
        if req.num_seqs > self.limits.max_num_seqs:
            return f"num_seqs={req.num_seqs} exceeds scheduler.max_num_seqs={self.limits.max_num_seqs}"
        if kv.peak_blocks(req) > kv.pool.total_blocks - kv.watermark_blocks:
            return (f"needs {kv.peak_blocks(req)} KV blocks at its longest but the cache holds "
                    f"{kv.pool.total_blocks} (watermark {kv.watermark_blocks})")
        return ""

    def plan(self, replica):
        raise NotImplementedError
