"""What a scheduler hands its replica (a plan for the next step, or for a run of identical decode steps)
and what it hands back once the replica has executed it (the tokens' timing, the requests that left)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .batch import DecodeBatch
from .request import Request


class PrefillChunk(NamedTuple):
    """`tokens` more of a request's context computed in this step, after `cached_tokens` already cached;
    the last chunk of the context `completes_prefill`: the step samples the request's next token."""

    request: Request
    tokens: int
    cached_tokens: int
    completes_prefill: bool


def next_chunk(req: Request, token_budget: int) -> PrefillChunk:
    """As much of the request's remaining context as the budget allows."""
    tokens = min(req.prefill_tokens - req.prefilled_tokens, token_budget)
    return PrefillChunk(req, tokens, req.prefilled_tokens, req.prefilled_tokens + tokens == req.prefill_tokens)


class StepPlan(NamedTuple):
    """Prefill chunks and/or one decode token for every sequence of `decode` (the scheduler's running
    batch itself, as it stands until the step is applied). A decode run (only decoding, no swap traffic)
    covers `decode_steps` steps of that same batch: the scheduler would decide nothing different before
    then unless a request arrives, which the replica watches for."""

    prefills: tuple[PrefillChunk, ...] = ()
    decode: DecodeBatch | None = None
    decode_steps: int = 1
    swap_in_blocks: tuple[int, ...] = ()  # blocks of each request brought back from host memory
    swap_out_blocks: tuple[int, ...] = ()  # blocks of each request preempted to host memory
    preempted: int = 0  # requests preempted to make room (by recomputation or swapping)
    is_decode_run: bool = False

    @property
    def decoding_seqs(self) -> int:
        return len(self.decode) if self.decode is not None else 0


@dataclass(slots=True)
class StepOutcome:
    """When the tokens of the executed steps came, and which requests left. Every row of the batch got its
    first token of the steps `first_gaps_s` after its previous one (distinct values, `rows_per_gap` rows
    each); in a run, each later step's token came its step's latency after the one before, for all `rows`
    rows; a request prefilled again after preemption got its token `gap_s` after its last, for each of its
    `seqs` sequences (`resumed`)."""

    first_gaps_s: np.ndarray | None = None
    rows_per_gap: np.ndarray | None = None
    later_gaps_s: np.ndarray | None = None
    rows: int = 0
    resumed: list[ResumedRequest] = field(default_factory=list)
    completed: list[Request] = field(default_factory=list)  # done (their blocks are free)
    handed_off: list[Request] = field(default_factory=list)  # prefilled, leaving for a decode replica


class ResumedRequest(NamedTuple):
    gap_s: float
    seqs: int
