"""Contrastive decoding as a replica runs it (roofline/contrastive.py): every step also runs the amateur
model over the same ragged batch (prompt chunks and one token per decoding sequence), with its own LM head
and sampling op; nothing else about the step changes."""
from __future__ import annotations

import numpy as np

from infersim.roofline.contrastive import ContrastiveSpec
from infersim.roofline.latency import StepTimer, StepTotals

from .metrics import Metrics
from .step_plan import StepPlan


class Contrastive:
    tokens_per_seq = 1

    def __init__(self, spec: ContrastiveSpec, amateur_timer: StepTimer):
        self.spec, self._amateur = spec, amateur_timer

    def step(self, timer: StepTimer, plan: StepPlan, new, cached, sampled: int, rng: np.random.Generator,
             metrics: Metrics) -> tuple[StepTotals, None]:
        """Both models' passes over the step's batch, one after the other; each row emits its one token."""
        return timer.step(new, cached, sampled).plus(self._amateur.step(new, cached, sampled)), None
