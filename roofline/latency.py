"""Step latencies for a serving simulator: the seconds of `step_cost(...).time_s`, cached where shapes
repeat and vectorised over the steps of a decode run.

A step's ops split into those that depend on the batch only through its token count (projections, FFN,
norms: cached per token count), the LM head and sampling (cached per sampled-sequence count) and
attention, which depends on every sequence's context. In a run of decode steps over a fixed batch every
context grows by one per step, so attention sees an arithmetic sequence of context sums and is costed for
all steps at once. Latency is the whole forward pass (all pipeline stages one after another).
"""
from __future__ import annotations

import numpy as np

from . import ops
from .hardware import HardwareSpec
from .models import ModelSpec
from .step import Batch, StepOptions, attention_ops, check_options, dense_layer_ops, end_ops
from .timing import op_time_s


def _totals(hw: HardwareSpec, op_list: list) -> tuple:
    """(seconds, FLOPs, bytes) of ops run one after another; arrays if the ops are array-valued."""
    return (sum(op_time_s(hw, op) for op in op_list), sum(op.total_flops for op in op_list),
            sum(op.bytes for op in op_list))


class StepTimer:
    """Latency, FLOPs and bytes (per GPU of the first tensor-parallel group) of forward steps."""

    def __init__(self, model: ModelSpec, hw: HardwareSpec, options: StepOptions = StepOptions()):
        check_options(model, options)
        self.model, self.hw, self.options = model, hw, options
        tp = options.parallel.tensor_parallel
        self._heads = model.num_heads // tp
        self._kv_heads = max(1, model.num_kv_heads // tp)
        self._by_tokens: dict[int, tuple] = {}
        self._by_sampled: dict[int, tuple] = {}

    def _token_part(self, tokens: int) -> tuple:
        """Everything but attention, the LM head and sampling, for `tokens` new tokens."""
        cached = self._by_tokens.get(tokens)
        if cached is None:
            before, after = dense_layer_ops(self.model, tokens, self.options)
            front, _ = end_ops(self.model, tokens, 0, self.options)
            layer, ends = _totals(self.hw, before + after), _totals(self.hw, front)
            layers, pp = self.model.num_layers, self.options.parallel.pipeline_parallel
            hand_off = _totals(self.hw, [ops.p2p_send(tokens, self.model.hidden_size)] * (pp - 1))
            cached = tuple(layers * a + b + c for a, b, c in zip(layer, ends, hand_off))
            self._by_tokens[tokens] = cached
        return cached

    def _sampled_part(self, sampled: int) -> tuple:
        cached = self._by_sampled.get(sampled)
        if cached is None:
            cached = _totals(self.hw, end_ops(self.model, 1, sampled, self.options)[1]) if sampled else (0.0,) * 3
            self._by_sampled[sampled] = cached
        return cached

    def step(self, new_tokens, cached_tokens, sampled: int) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of one step of a ragged batch (see `roofline.step.Batch`)."""
        batch = Batch(tuple(new_tokens), tuple(cached_tokens), (True,) * len(new_tokens))
        attn = _totals(self.hw, attention_ops(self.model, batch, self.hw, self.options))
        return self._combine(batch.num_tokens, sampled, attn)

    def decode_run(self, batch_size: int, context_sum: int, context_max: int, steps: int):
        """Per-step latencies, FLOPs and bytes (arrays of `steps`) of `steps` decode steps of a fixed
        batch whose contexts (tokens already cached) sum to `context_sum` and peak at `context_max` at the
        first step."""
        growth = np.arange(steps, dtype=np.float64)
        attn_ops = ops.decode_attention(batch_size, context_sum + batch_size * growth, context_max + growth,
                                        self._heads, self._kv_heads, self.model.head_dim, self.options.quant,
                                        self.options.flash_attention)
        latency_s, flops, nbytes = self._combine(batch_size, batch_size, _totals(self.hw, attn_ops))
        return latency_s, flops, nbytes

    def _combine(self, tokens: int, sampled: int, attn: tuple) -> tuple:
        dense, head = self._token_part(tokens), self._sampled_part(sampled)
        layers = self.model.num_layers
        return tuple(d + layers * a + h for d, a, h in zip(dense, attn, head))
