"""Step latencies for a serving simulator: the seconds of `step_cost(...).time_s`, cached where shapes
repeat and vectorised over the steps of a decode run.

A step's ops split into those that depend on the batch only through its token count (projections, FFN,
norms: cached per token count), the LM head and sampling (cached per sampled-sequence count) and
attention, which depends on every sequence's context. In a run of decode steps over a fixed batch every
context grows by one per step, so attention sees an arithmetic sequence of context sums and is costed for
all steps at once. Latency is the whole forward pass (all pipeline stages one after another).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from . import ops
from .hardware import HardwareSpec
from .models import ModelSpec
from .step import Batch, StepOptions, attention_ops, check_options, dense_layer_ops, end_ops, layer_widths
from .timing import kernel_time_s, op_compute_s, op_memory_s, op_time_s


class StepTotals(NamedTuple):
    """Seconds, FLOPs and bytes of ops run one after another (floats, or arrays with an entry per step)."""

    latency_s: float
    flops: float
    bytes: float

    def plus(self, other: "StepTotals") -> "StepTotals":
        """Both run one after the other."""
        return StepTotals(*(a + b for a, b in zip(self, other)))

    def scaled(self, factor) -> "StepTotals":
        """The same work done `factor` times over."""
        return StepTotals(*(factor * a for a in self))


def op_totals(hw: HardwareSpec, op_list: list) -> StepTotals:
    """Ops run one after another on `hw`."""
    return StepTotals(sum(op_time_s(hw, op) for op in op_list), sum(op.total_flops for op in op_list),
                      sum(op.bytes for op in op_list))


NO_WORK = StepTotals(0.0, 0.0, 0.0)


class DecodeLine(NamedTuple):
    """A FlashAttention decode step of a batch against K, the keys it reads (`ops.decode_attention_affine`):
    attention's compute and memory seconds per layer are fixed + per_key K, its FLOPs and bytes over all
    layers likewise; `rest` is everything else in the step."""

    rest: StepTotals
    compute_fixed_s: float
    compute_per_key_s: float
    memory_fixed_s: float
    memory_per_key_s: float
    flops_fixed: float
    flops_per_key: float
    bytes_fixed: float
    bytes_per_key: float


_TABLE_BLOCK = 256


class StepTimer:
    """Latency, FLOPs and bytes (per GPU of the first tensor-parallel group) of forward steps."""

    def __init__(self, model: ModelSpec, hw: HardwareSpec, options: StepOptions = StepOptions()):
        check_options(model, options)
        self.model, self.hw, self.options = model, hw, options
        widths = layer_widths(model, options.parallel.tensor_parallel)
        self._heads, self._kv_heads = widths.heads, widths.kv_heads
        self._by_tokens: dict[int, StepTotals] = {}
        self._by_sampled: dict[int, StepTotals] = {}
        self._lines: dict[int, DecodeLine] = {}
        self._steps: dict[tuple, StepTotals] = {}

    def _token_part(self, tokens: int) -> StepTotals:
        """Everything but attention, the LM head and sampling, for `tokens` new tokens; costed for a block
        of `_TABLE_BLOCK` token counts at once (lists of each total), since a run meets many nearby counts."""
        block = self._by_tokens.get(tokens // _TABLE_BLOCK)
        if block is None:
            counts = np.maximum(1, np.arange(_TABLE_BLOCK) + tokens // _TABLE_BLOCK * _TABLE_BLOCK)
            before, after = dense_layer_ops(self.model, counts, self.options)
            front, _ = end_ops(self.model, counts, 0, self.options)
            layer, ends = op_totals(self.hw, before + after), op_totals(self.hw, front)
            layers, pp = self.model.num_layers, self.options.parallel.pipeline_parallel
            hand_off = op_totals(self.hw, [ops.p2p_send(counts, self.model.hidden_size)] * (pp - 1))
            block = StepTotals(*(np.broadcast_to(layers * a + b + c, counts.shape).tolist()
                                 for a, b, c in zip(layer, ends, hand_off)))
            self._by_tokens[tokens // _TABLE_BLOCK] = block
        i = tokens % _TABLE_BLOCK
        return StepTotals(block.latency_s[i], block.flops[i], block.bytes[i])

    def _sampled_part(self, sampled: int) -> StepTotals:
        cached = self._by_sampled.get(sampled)
        if cached is None:
            cached = op_totals(self.hw, end_ops(self.model, 1, sampled, self.options)[1]) if sampled else NO_WORK
            self._by_sampled[sampled] = cached
        return cached

    def step(self, new_tokens, cached_tokens, sampled: int) -> StepTotals:
        """One step of a ragged batch (see `roofline.step.Batch`); small batches (prefill-only steps, which
        repeat) are remembered."""
        key = (tuple(new_tokens), tuple(cached_tokens), sampled) if len(new_tokens) <= 8 else None
        cached = self._steps.get(key) if key else None
        if cached is None:
            batch = Batch(tuple(new_tokens), tuple(cached_tokens), (True,) * len(new_tokens))
            attn = op_totals(self.hw, attention_ops(self.model, batch, self.hw, self.options))
            cached = StepTotals(*(float(x) for x in self._combine(batch.num_tokens, sampled, attn)))
            if key and len(self._steps) < 1 << 16:
                self._steps[key] = cached
        return cached

    def decode_run(self, batch_size: int, context_sum: int, context_max: int, steps: int, host_s: float = 0.0,
                   host_overlaps: bool = False, start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(per-step latencies, end times) of `steps` decode steps of a fixed batch run back to back from
        `start_s`; the batch's contexts (tokens already cached) sum to `context_sum` and peak at `context_max`
        at the first step. Each step also spends `host_s` on the host: after the GPU's work, or, when the
        host overlaps it (`host_overlaps`), alongside (the step then takes the longer of the two)."""
        if not self.options.flash_attention:  # materialised attention: its GEMM tiles follow the longest context
            gpu_s = self._decode_ops_run(batch_size, context_sum, context_max, steps).latency_s
            latency_s = np.maximum(gpu_s, host_s) if host_overlaps else gpu_s + host_s
            return latency_s, start_s + np.cumsum(latency_s)
        line = self._decode_line(batch_size)
        return _decode_line_run(float(context_sum + batch_size), float(batch_size), steps, line.compute_fixed_s,
                                line.compute_per_key_s, line.memory_fixed_s, line.memory_per_key_s,
                                self.hw.overlap_exponent, self.hw.launch_overhead_s, self.model.num_layers,
                                line.rest.latency_s, host_s, host_overlaps, start_s)

    def decode_totals(self, batch_size: int, context_sum: int, context_max: int, steps: int) -> tuple[float, float]:
        """(FLOPs, bytes) of the same `steps` decode steps. With FlashAttention they are affine in the keys a
        step reads, so their sums follow from the keys read over all steps; materialised attention is
        costed step by step."""
        if not self.options.flash_attention:
            per_step = self._decode_ops_run(batch_size, context_sum, context_max, steps)
            return float(np.sum(per_step.flops)), float(np.sum(per_step.bytes))
        keys = steps * (context_sum + batch_size) + batch_size * steps * (steps - 1) / 2
        line = self._decode_line(batch_size)
        return (steps * line.flops_fixed + line.flops_per_key * keys,
                steps * line.bytes_fixed + line.bytes_per_key * keys)

    def _decode_ops_run(self, batch_size: int, context_sum: int, context_max: int, steps: int) -> StepTotals:
        """Each of `steps` decode steps, op by op (arrays over the steps)."""
        growth = np.arange(steps, dtype=np.float64)
        attn_ops = ops.decode_attention(batch_size, context_sum + batch_size * growth, context_max + growth,
                                        self._heads, self._kv_heads, self.model.head_dim, self.options.quant,
                                        self.options.flash_attention)
        return self._combine(batch_size, batch_size, op_totals(self.hw, attn_ops))

    def _decode_line(self, batch_size: int) -> DecodeLine:
        cached = self._lines.get(batch_size)
        if cached is None:
            fixed, per_key = ops.decode_attention_affine(batch_size, self._heads, self._kv_heads,
                                                         self.model.head_dim, self.options.quant)
            rest = self._combine(batch_size, batch_size, NO_WORK)
            layers = self.model.num_layers
            cached = DecodeLine(rest, float(op_compute_s(self.hw, fixed)), float(op_compute_s(self.hw, per_key)),
                                float(op_memory_s(self.hw, fixed)), float(op_memory_s(self.hw, per_key)),
                                rest.flops + layers * fixed.total_flops, layers * per_key.total_flops,
                                rest.bytes + layers * fixed.bytes, layers * per_key.bytes)
            self._lines[batch_size] = cached
        return cached

    def _combine(self, tokens: int, sampled: int, attn: StepTotals) -> StepTotals:
        """The whole step: the dense part of `tokens` tokens, attention in every layer, the LM head and
        sampling of `sampled` sequences."""
        dense, head = self._token_part(tokens), self._sampled_part(sampled)
        layers = self.model.num_layers
        return StepTotals(*(d + layers * a + h for d, a, h in zip(dense, attn, head)))


@numba.njit(cache=True)
def _decode_line_run(first_keys, keys_per_step, steps, c0, c1, m0, m1, p, launch_s, layers, other_s, host_s,
                     host_overlaps, start_s):
    """Step j reads first_keys + j keys_per_step keys; its attention is compute c0 + c1 keys and memory
    m0 + m1 keys timed by `timing.kernel_time_s`, once per layer, plus the rest of the GPU's step, plus (or
    at least, when overlapped) the host's time."""
    latency_s, end_s = np.empty(steps), np.empty(steps)
    elapsed_s = 0.0
    for j in range(steps):
        keys = first_keys + keys_per_step * j
        gpu_s = layers * kernel_time_s(c0 + c1 * keys, m0 + m1 * keys, p, launch_s) + other_s
        latency_s[j] = max(gpu_s, host_s) if host_overlaps else gpu_s + host_s
        elapsed_s += latency_s[j]
        end_s[j] = start_s + elapsed_s
    return latency_s, end_s
