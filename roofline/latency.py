"""Step latencies for a serving simulator: the seconds of `step_cost(...).time_s`, cached where shapes
repeat and vectorised over the steps of a decode run.

A step's ops split into those that depend on the batch only through its token count (projections, FFN,
norms: cached per token count), the LM head and sampling (cached per sampled-sequence count) and
attention, which depends on every sequence's context. In a run of decode steps over a fixed batch every
context grows by one per step, so attention sees an arithmetic sequence of context sums and is costed for
all steps at once. Latency is the whole forward pass (all pipeline stages one after another).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numba
import numpy as np

from . import ops
from .hardware import HardwareSpec
from .models import ModelSpec
from .step import (Batch, StepOptions, attention_ops, check_fabric, check_options, dense_layer_ops, end_ops,
                   layer_widths)
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


class FlashRates(NamedTuple):
    """FlashAttention over a ragged batch, per layer, as affine in `ops.attention`'s sums (every term of
    `timing` is linear in an op's FLOPs and bytes): compute seconds per causal pair; memory seconds per
    query (its Q read and O written), per key read from DRAM and per key re-read from L2 (FlashAttention's
    later query tiles); FLOPs per pair; bytes per query and per key read."""

    compute_per_pair_s: float
    memory_per_query_s: float
    memory_per_key_s: float
    memory_per_reread_s: float
    flops_per_pair: float
    bytes_per_query: float
    bytes_per_key_read: float


class CostTables(NamedTuple):
    """A `StepTimer`'s costs as arrays, for compiled code that plans and costs steps itself (the simulator's
    compiled replica): every field that `StepTimer.step`, `decode_run` and `decode_totals` read, so both
    compute the same seconds. `token_*[t]`: all but attention, the LM head and sampling, for t new tokens;
    `sampled_*[s]`: the LM head and sampling of s sequences; `lines[b]`: `DecodeLine` of a batch of b
    (its fields in order, `rest` as its latency only: its FLOPs and bytes are in the fixed terms)."""

    token_latency_s: np.ndarray
    token_flops: np.ndarray
    token_bytes: np.ndarray
    sampled_latency_s: np.ndarray
    sampled_flops: np.ndarray
    sampled_bytes: np.ndarray
    lines: np.ndarray
    flash: np.ndarray  # FlashRates, in order
    q_tile_tokens: float
    sram_tokens: float  # a head's K/V tokens that fit in SRAM (FlashAttention then reads them once)
    overlap_exponent: float
    launch_s: float
    layers: int


_TABLE_BLOCK = 256


class StepTimer:
    """Latency, FLOPs and bytes (per GPU of the first tensor-parallel group) of forward steps."""

    def __init__(self, model: ModelSpec, hw: HardwareSpec, options: StepOptions = StepOptions()):
        check_options(model, options)
        check_fabric(hw, options)
        self.model, self.hw, self.options = model, hw, options
        widths = layer_widths(model, options.parallel.tensor_parallel)
        self._heads, self._kv_heads = widths.heads, widths.kv_heads
        self._by_tokens: dict[int, StepTotals] = {}  # blocks of `_TABLE_BLOCK` counts: lists of each total
        self._by_sampled: dict[int, StepTotals] = {}
        self._lines: dict[int, DecodeLine] = {}
        self._steps: dict[tuple, StepTotals] = {}
        self._flash = np.array(self._flash_rates()) if options.flash_attention else None  # FlashRates, in order
        self._sram_tokens = ops.sram_kv_tokens(hw.sram_per_sm_bytes, model.head_dim, options.quant)

    def _flash_rates(self) -> FlashRates:
        query, pair, read = ops.flash_attention_rates(self._heads, self._kv_heads, self.model.head_dim,
                                                      self.options.quant)
        reread = dataclasses.replace(read, l2_reread_bytes=read.kv_read_bytes)
        return FlashRates(float(op_compute_s(self.hw, pair)), float(op_memory_s(self.hw, query)),
                          float(op_memory_s(self.hw, read)), float(op_memory_s(self.hw, reread)),
                          pair.total_flops, query.bytes, read.bytes)

    def _token_part(self, tokens: int) -> StepTotals:
        """Everything but attention, the LM head and sampling, for `tokens` new tokens."""
        return _looked_up(self._by_tokens, self._token_block, tokens)

    def _sampled_part(self, sampled: int) -> StepTotals:
        """The LM head and sampling of `sampled` sequences."""
        return _looked_up(self._by_sampled, self._sampled_block, sampled)

    def _token_block(self, counts: np.ndarray) -> StepTotals:
        counts = np.maximum(1, counts)
        before, after = dense_layer_ops(self.model, counts, self.options)
        front, _ = end_ops(self.model, counts, 0, self.options)
        layer, ends = op_totals(self.hw, before + after), op_totals(self.hw, front)
        layers, pp = self.model.num_layers, self.options.parallel.pipeline_parallel
        hand_off = op_totals(self.hw, [ops.p2p_send(counts, self.model.hidden_size)] * (pp - 1))
        return StepTotals(*(np.broadcast_to(layers * a + b + c, counts.shape)
                            for a, b, c in zip(layer, ends, hand_off)))

    def _sampled_block(self, counts: np.ndarray) -> StepTotals:
        head = op_totals(self.hw, end_ops(self.model, 1, np.maximum(1, counts), self.options)[1])
        return StepTotals(*(np.where(counts > 0, np.broadcast_to(x, counts.shape), 0.0) for x in head))

    def _table(self, cache: dict, build, largest: int) -> tuple[np.ndarray, ...]:
        """Entries 0..largest of a block table, one array per total."""
        blocks = [_block(cache, build, b) for b in range(largest // _TABLE_BLOCK + 1)]
        return tuple(np.array([x for block in blocks for x in block[i]])[:largest + 1] for i in range(3))

    def step(self, new_tokens, cached_tokens, sampled: int, padding_tokens: int = 0) -> StepTotals:
        """One step of a ragged batch (see `roofline.step.Batch`); small batches (prefill-only steps, which
        repeat) are remembered. A piecewise graph replay padded to a captured size runs `padding_tokens` more
        through its dense part (kernel_set.KernelSet.padding_tokens), not through attention or sampling."""
        key = (tuple(new_tokens), tuple(cached_tokens), sampled, padding_tokens) if len(new_tokens) <= 8 else None
        cached = self._steps.get(key) if key else None
        if cached is None:
            if self._flash is not None:
                attn = StepTotals(*ragged_flash_attention(
                    np.asarray(new_tokens, dtype=np.float64), np.asarray(cached_tokens, dtype=np.float64),
                    float(self.hw.attention_q_tile_tokens), self._sram_tokens, self._flash,
                    self.hw.overlap_exponent, self.hw.launch_overhead_s))
                tokens = sum(new_tokens)
            else:
                batch = Batch(tuple(new_tokens), tuple(cached_tokens), (True,) * len(new_tokens))
                attn = op_totals(self.hw, attention_ops(self.model, batch, self.hw, self.options))
                tokens = batch.num_tokens
            cached = StepTotals(*(float(x) for x in self._combine(tokens + padding_tokens, sampled, attn)))
            if key and len(self._steps) < 1 << 16:
                self._steps[key] = cached
        return cached

    def decode_run(self, batch_size: int, context_sum: int, context_max: int, steps: int, host_s: float = 0.0,
                   host_overlaps: bool = False, start_s: float = 0.0, extra_gpu_s: float = 0.0,
                   padding_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(per-step latencies, end times) of `steps` decode steps of a fixed batch run back to back from
        `start_s`; the batch's contexts (tokens already cached) sum to `context_sum` and peak at `context_max`
        at the first step. Each step's GPU work takes `extra_gpu_s` more than these kernels (a piecewise
        replay's eagerly launched attention: kernel_set.KernelSet.eager_attention_s), and each also spends
        `host_s` on the host: after the GPU's work, or, when the host overlaps it (`host_overlaps`), alongside
        (the step then takes the longer of the two). A padded graph replay adds `padding_rows` one-token rows
        with no context to every step (kernel_set.KernelSet.padding_rows): their contexts never grow."""
        rows = batch_size + padding_rows
        if not self.options.flash_attention:  # materialised attention: its GEMM tiles follow the longest context
            gpu_s = self._decode_ops_run(batch_size, context_sum, context_max, steps, padding_rows).latency_s
            gpu_s = gpu_s + extra_gpu_s
            latency_s = np.maximum(gpu_s, host_s) if host_overlaps else gpu_s + host_s
            return latency_s, start_s + np.cumsum(latency_s)
        line = self._decode_line(rows)
        return _decode_line_run(float(context_sum + rows), float(batch_size), steps, line.compute_fixed_s,
                                line.compute_per_key_s, line.memory_fixed_s, line.memory_per_key_s,
                                self.hw.overlap_exponent, self.hw.launch_overhead_s, self.model.num_layers,
                                line.rest.latency_s + extra_gpu_s, host_s, host_overlaps, start_s)

    def decode_totals(self, batch_size: int, context_sum: int, context_max: int, steps: int) -> tuple[float, float]:
        """(FLOPs, bytes) of the same `steps` decode steps. With FlashAttention they are affine in the keys a
        step reads, so their sums follow from the keys read over all steps; materialised attention is
        costed step by step."""
        if not self.options.flash_attention:
            per_step = self._decode_ops_run(batch_size, context_sum, context_max, steps)
            return float(np.sum(per_step.flops)), float(np.sum(per_step.bytes))
        line = self._decode_line(batch_size)
        return decode_run_totals(steps, context_sum, batch_size, line.flops_fixed, line.flops_per_key,
                                 line.bytes_fixed, line.bytes_per_key)

    def _decode_ops_run(self, batch_size: int, context_sum: int, context_max: int, steps: int,
                        padding_rows: int = 0) -> StepTotals:
        """Each of `steps` decode steps, op by op (arrays over the steps), with `padding_rows` rows of no context."""
        growth = np.arange(steps, dtype=np.float64)
        rows = batch_size + padding_rows
        attn_ops = ops.decode_attention(rows, context_sum + batch_size * growth, context_max + growth,
                                        self._heads, self._kv_heads, self.model.head_dim, self.options.quant,
                                        self.options.flash_attention)
        return self._combine(rows, rows, op_totals(self.hw, attn_ops))

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

    def tables(self, max_tokens: int, max_seqs: int) -> CostTables:
        """The costs of steps of up to `max_tokens` new tokens and decode batches (and sampled sequences) of up
        to `max_seqs`, as arrays (FlashAttention only)."""
        assert self._flash is not None, "compiled steps are costed with FlashAttention's affine rates"
        token = self._table(self._by_tokens, self._token_block, max_tokens)
        sampled = self._table(self._by_sampled, self._sampled_block, max_seqs)
        lines = np.zeros((max_seqs + 1, len(DecodeLine._fields)))
        for b in range(1, max_seqs + 1):
            line = self._decode_line(b)
            lines[b] = (line.rest.latency_s,) + tuple(line[1:])
        return CostTables(*token, *sampled, lines,
                          self._flash, float(self.hw.attention_q_tile_tokens), self._sram_tokens,
                          self.hw.overlap_exponent, self.hw.launch_overhead_s, self.model.num_layers)

    def _combine(self, tokens: int, sampled: int, attn: StepTotals) -> StepTotals:
        """The whole step: the dense part of `tokens` tokens, attention in every layer, the LM head and
        sampling of `sampled` sequences."""
        dense, head = self._token_part(tokens), self._sampled_part(sampled)
        layers = self.model.num_layers
        return StepTotals(*(d + layers * a + h for d, a, h in zip(dense, attn, head)))


def _block(cache: dict, build, block: int) -> StepTotals:
    """A block of a table costed `_TABLE_BLOCK` counts at once (a simulation meets many nearby counts), as
    lists of Python floats."""
    entry = cache.get(block)
    if entry is None:
        entry = StepTotals(*(x.tolist() for x in build(np.arange(_TABLE_BLOCK) + block * _TABLE_BLOCK)))
        cache[block] = entry
    return entry


def _looked_up(cache: dict, build, count: int) -> StepTotals:
    block, i = _block(cache, build, count // _TABLE_BLOCK), count % _TABLE_BLOCK
    return StepTotals(block.latency_s[i], block.flops[i], block.bytes[i])


@numba.njit(cache=True)
def ragged_flash_attention(new_tokens, cached_tokens, q_tile_tokens, sram_tokens, rates, p, launch_s):
    """(seconds, FLOPs, bytes) of one layer's FlashAttention over a ragged batch (`ops.attention`'s sums
    with `FlashRates`, in order, as `rates`)."""
    queries, pairs, _, keys, reads, _, _ = ops.attention_sums(new_tokens, cached_tokens, q_tile_tokens, sram_tokens)
    compute_s = pairs * rates[0]
    memory_s = queries * rates[1] + keys * rates[2] + (reads - keys) * rates[3]
    return kernel_time_s(compute_s, memory_s, p, launch_s), pairs * rates[4], queries * rates[5] + reads * rates[6]


@numba.njit(cache=True)
def decode_run_totals(steps, context_sum, batch_size, flops_fixed, flops_per_key, bytes_fixed, bytes_per_key):
    """(FLOPs, bytes) of `steps` FlashAttention decode steps of a batch whose contexts sum to `context_sum`
    at the first: step j reads context_sum + batch_size (j + 1) keys, and every cost is affine in them."""
    keys = steps * (context_sum + batch_size) + batch_size * steps * (steps - 1) / 2
    return steps * flops_fixed + flops_per_key * keys, steps * bytes_fixed + bytes_per_key * keys


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
