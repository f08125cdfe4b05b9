"""Speculative decoding as a replica runs it: every decode step drafts k tokens per sequence, verifies them
in one target pass, and each sequence keeps the drafted tokens up to its first rejection plus one of the
target's (roofline.speculative prices the passes). Which tokens a step accepts is drawn per sequence from
the acceptance model, with the replica's own seeded generator, so a run is reproducible."""
from __future__ import annotations

import numpy as np

from infersim.roofline.latency import StepTimer, StepTotals
from infersim.roofline.speculative import DraftTimer, SpeculativeSpec

from .metrics import Metrics
from .step_plan import StepPlan


class Speculation:
    def __init__(self, spec: SpeculativeSpec, drafter: DraftTimer):
        self.spec, self.drafter = spec, drafter
        self.tokens_per_seq = spec.tokens_per_seq
        self._rates = spec.acceptance.position_rates(spec.num_speculative_tokens)

    def draw_emitted(self, seqs: int, rng: np.random.Generator) -> np.ndarray:
        """Tokens each of `seqs` sequences emits this step: 1 + its run of accepted draft tokens, where
        draft token i is accepted with its position's rate given that those before it were."""
        accepted = rng.random((seqs, len(self._rates))) < self._rates
        return 1 + np.cumprod(accepted, axis=1).sum(axis=1)

    def draw_per_request(self, request_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`draw_emitted` for a batch's rows, one draw per request shared by its sequences (adjacent rows):
        a request's samples advance together, so they finish in the same step as the batch requires (their
        mean is the acceptance model's; their spread between siblings is not modelled)."""
        starts = np.flatnonzero(np.r_[True, request_ids[1:] != request_ids[:-1]])
        return np.repeat(self.draw_emitted(len(starts), rng), np.diff(np.r_[starts, len(request_ids)]))

    def step(self, timer: StepTimer, plan: StepPlan, new, cached, sampled: int, rng: np.random.Generator,
             metrics: Metrics) -> tuple[StepTotals, np.ndarray | None]:
        """The step's totals (the target's pass, verifying every decoding sequence's k + 1 tokens; the drafter
        taking in the step's prompt chunks and drafting for the decoding sequences) and the tokens each
        decoding row emits (None without decodes)."""
        prompts = len(plan.prefills)
        totals = timer.step(new, cached, sampled)
        if prompts:
            totals = totals.plus(self.drafter.prefill(new[:prompts], cached[:prompts]))
        emitted = None
        if plan.decoding_seqs:
            totals = totals.plus(self.drafter.step(plan.decode.context_tokens))
            emitted = self.draw_per_request(plan.decode.request, rng)
            metrics.speculating_rows += plan.decoding_seqs
            metrics.speculated_tokens += int(np.minimum(emitted, plan.decode.remaining_tokens).sum())
        return totals, emitted
