"""Early exit as a replica runs it (roofline/early_exit.py has the model): a decode-only step runs as deep as
its deepest token, drawn once per step from the distribution of the maximum of the batch's exit layers
(P(depth <= l) = F(l)^b), and the layers below that depth are priced as a model of that many layers; with
"copy" the skipped layers' K/V projections are added, with "recompute" the step pays every layer."""
from __future__ import annotations

import dataclasses

import numpy as np

from infersim.roofline import ops
from infersim.roofline.early_exit import EarlyExitSpec
from infersim.roofline.latency import StepTimer, StepTotals, op_totals
from infersim.roofline.models import ModelSpec

from .metrics import Metrics
from .step_plan import StepPlan


class EarlyExit:
    tokens_per_seq = 1

    def __init__(self, spec: EarlyExitSpec, model: ModelSpec):
        self.spec, self.model = spec, model
        self._cdf = np.cumsum(spec.layer_probabilities(model.num_layers))
        self._timers: dict[tuple[int, int], StepTimer] = {}  # (id of the full-depth timer, depth) -> timer
        self._fills: dict[tuple[int, int, int], StepTotals] = {}

    def draw_depth(self, seqs: int, rng: np.random.Generator) -> int:
        """The deepest of `seqs` i.i.d. exit layers, by inverting P(max <= l) = F(l)^seqs."""
        u = rng.random()
        return int(np.searchsorted(self._cdf ** seqs, u, side="left")) + 1

    def step(self, timer: StepTimer, plan: StepPlan, new, cached, sampled: int, rng: np.random.Generator,
             metrics: Metrics) -> tuple[StepTotals, None]:
        """The step's totals, every layer when it prefills or when skipped layers are recomputed; each row
        emits its one token (None: no per-row counts)."""
        layers = self.model.num_layers
        if not plan.decoding_seqs:
            return timer.step(new, cached, sampled), None
        depth = layers if plan.prefills or self.spec.kv_fill == "recompute" else self.draw_depth(len(new), rng)
        metrics.exit_steps += 1
        metrics.exit_layers += depth / layers
        if depth == layers:
            return timer.step(new, cached, sampled), None
        ran = self._timer(timer, depth).step(new, cached, sampled)
        return ran.plus(self._kv_fill(timer, len(new), layers - depth)), None

    def _timer(self, full: StepTimer, depth: int) -> StepTimer:
        key = (id(full), depth)
        if key not in self._timers:
            self._timers[key] = StepTimer(dataclasses.replace(full.model, num_layers=depth), full.hw, full.options)
        return self._timers[key]

    def _kv_fill(self, full: StepTimer, tokens: int, skipped_layers: int) -> StepTotals:
        """CALM's state propagation: each skipped layer projects the exiting state to its K and V."""
        key = (id(full), tokens, skipped_layers)
        if key not in self._fills:
            model, tp = full.model, full.options.parallel.tensor_parallel
            kv_width = 2 * model.kv_heads_per_gpu(tp) * model.head_dim
            op_list = ops.linear("kv_fill", tokens, model.hidden_size, kv_width, full.options.quant)
            self._fills[key] = op_totals(full.hw, op_list).scaled(skipped_layers)
        return self._fills[key]
