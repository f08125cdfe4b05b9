"""A whole forward step: the ops of one decoder layer for a batch shape, times the layers, plus embedding,
LM head and sampling, split over tensor- and pipeline-parallel GPUs (Megatron-LM, Shoeybi et al. 2019).

A batch is ragged: sequence i brings `new_tokens[i]` tokens after `cached_tokens[i]` already in the KV
cache. Prefill is (prompt, 0), a prefill chunk is (chunk, done so far), decode is (1, context).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import ops
from .errors import HardwareLimit, SpecError
from .hardware import HardwareSpec
from .models import ModelSpec
from .quant import QuantSpec
from .timing import OpTime, time_op

SAMPLING_METHODS = ("greedy", "top_p")


@dataclass(frozen=True)
class Parallelism:
    tensor_parallel: int = 1
    pipeline_parallel: int = 1

    def __post_init__(self):
        for name in ("tensor_parallel", "pipeline_parallel"):
            if getattr(self, name) < 1:
                raise SpecError(f"parallelism.{name}", "must be >= 1", getattr(self, name))

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


@dataclass(frozen=True)
class Batch:
    new_tokens: tuple
    cached_tokens: tuple
    samples: tuple = None  # does sequence i produce a token this step? (a mid-prompt chunk does not)

    def __post_init__(self):
        if len(self.new_tokens) == 0:
            raise SpecError("batch", "must hold at least one sequence", 0)
        if len(self.new_tokens) != len(self.cached_tokens):
            raise SpecError("batch.cached_tokens", "needs one entry per sequence", len(self.cached_tokens))
        if min(self.new_tokens) < 1:
            raise SpecError("batch.new_tokens", "every sequence needs >= 1 new token", min(self.new_tokens))
        if min(self.cached_tokens) < 0:
            raise SpecError("batch.cached_tokens", "must be >= 0", min(self.cached_tokens))
        if self.samples is None:
            object.__setattr__(self, "samples", (True,) * len(self.new_tokens))

    @property
    def num_tokens(self) -> int:
        return int(sum(self.new_tokens))

    @property
    def num_sampled(self) -> int:
        return int(sum(self.samples))

    @property
    def max_context_tokens(self) -> int:
        return int(max(n + c for n, c in zip(self.new_tokens, self.cached_tokens)))


def prefill_batch(prompt_tokens) -> Batch:
    return Batch(tuple(int(p) for p in prompt_tokens), (0,) * len(prompt_tokens))


def decode_batch(context_tokens) -> Batch:
    """One new token per sequence, attending to `context_tokens` already cached."""
    return Batch((1,) * len(context_tokens), tuple(int(c) for c in context_tokens))


def chunked_prefill_batch(chunk_tokens: int, cached_tokens: int, last_chunk: bool = False) -> Batch:
    return Batch((int(chunk_tokens),), (int(cached_tokens),), (last_chunk,))


# Ops an engine runs as one kernel (StepOptions.fusions; the engine presets say which, sim/engines.py):
FUSIONS = {
    # a residual add and the RMSNorm after it: the sum is written once (it is the residual stream) and not read
    # back (vLLM `fused_add_rms_norm`, SGLang `fused_add_rmsnorm`, TensorRT-LLM's RMSNorm with residual)
    "add_norm": "residual add + the next norm",
    # rotary embedding and the K/V cache write: K is rotated on its way into the cache, so the rotated K is
    # neither written out nor read back (TensorRT-LLM's attention preprocessing,
    # `invokeApplyBiasRopeUpdateKVCache`)
    "rope_kv_write": "RoPE on Q and K + appending K and V to the cache",
}


@dataclass(frozen=True)
class StepOptions:
    quant: QuantSpec = field(default_factory=QuantSpec)
    parallel: Parallelism = field(default_factory=Parallelism)
    flash_attention: bool = True
    sampling: str = "top_p"
    fusions: frozenset = frozenset()  # names in FUSIONS


def companion_options(options: StepOptions) -> StepOptions:
    """How a second model beside the served one runs (a speculative drafter, a contrastive decoder's
    amateur): fp16 weights and activations at the served model's KV precision, split over its
    tensor-parallel GPUs in one stage (vLLM runs a drafter at the target's TP)."""
    return StepOptions(QuantSpec(kv_bits=options.quant.kv_bits), Parallelism(options.parallel.tensor_parallel, 1),
                       options.flash_attention, options.sampling)


@dataclass(frozen=True)
class OpRow:
    """One op in the step table: per-GPU cost of one instance, run `count` times (layers) per step."""

    timed: OpTime
    count: int

    @property
    def name(self) -> str:
        return self.timed.op.name

    @property
    def time_s(self) -> float:
        return self.timed.time_s * self.count

    @property
    def flops(self) -> float:
        return self.timed.op.total_flops * self.count

    @property
    def bytes(self) -> float:
        return self.timed.op.bytes * self.count


@dataclass(frozen=True)
class StepCost:
    """Per-GPU costs of one forward step (a GPU of the first TP group; all pipeline stages summed)."""

    rows: tuple
    stage_time_s: float
    pipeline_stages: int

    @property
    def time_s(self) -> float:
        return sum(r.time_s for r in self.rows)

    def _sum(self, attr: str) -> float:
        return sum(getattr(r.timed.op, attr) * r.count for r in self.rows)

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.rows)

    @property
    def bytes(self) -> float:
        return sum(r.bytes for r in self.rows)

    @property
    def weight_bytes(self) -> float:
        return self._sum("weight_bytes")

    @property
    def kv_bytes(self) -> float:
        return self._sum("kv_read_bytes") + self._sum("kv_write_bytes")

    def pipeline_bubble_fraction(self, microbatches: int) -> float:
        """Idle share of a GPipe-style schedule: (p - 1) / (m + p - 1) (Huang et al. 2019, §2.2)."""
        p = self.pipeline_stages
        return (p - 1) / (microbatches + p - 1)

    def totals(self) -> dict:
        return {"flops": self.flops, "bytes": self.bytes, "time_s": self.time_s,
                "weight_bytes": self.weight_bytes, "kv_bytes": self.kv_bytes,
                "stage_time_s": self.stage_time_s}


class UtilizationPeaks(NamedTuple):
    """What model FLOPs and bandwidth utilization (MFU, MBU; PaLM, Chowdhery et al. 2022, App. B) divide a
    replica's FLOPs and bytes per second by. Step costs count one GPU of each pipeline stage (see
    `StepCost`), so the peak is one GPU's times the stages."""

    flops_per_s: float
    bytes_per_s: float


def utilization_peaks(hw: HardwareSpec, options: StepOptions) -> UtilizationPeaks:
    """The datasheet tensor-core peak of the GEMMs' dtype and the DRAM bandwidth, times the stages."""
    stages = options.parallel.pipeline_parallel
    return UtilizationPeaks(hw.peak(options.quant.gemm_dtype()) * stages, hw.memory_bandwidth_bytes_per_s * stages)


def _shard(value: int, tp: int, field_name: str) -> int:
    if value % tp:
        raise SpecError("parallelism.tensor_parallel", f"must divide {field_name}={value}", tp)
    return value // tp


class LayerWidths(NamedTuple):
    """What one tensor-parallel rank holds of a layer: query heads, KV heads, FFN width."""

    heads: int
    kv_heads: int
    ffn_size: int


def layer_widths(model: ModelSpec, tp: int) -> LayerWidths:
    """A layer split over `tp` ranks (Megatron-LM, §3): heads and FFN columns must divide evenly."""
    return LayerWidths(_shard(model.num_heads, tp, "num_heads"), model.kv_heads_per_gpu(tp),
                       _shard(model.ffn_size, tp, "ffn_size"))


def dense_layer_ops(model: ModelSpec, tokens: int, options: StepOptions) -> tuple[list, list]:
    """The ops of one decoder layer on one tensor-parallel rank other than attention, which depend on the
    batch only through its token count (an int, or an array of counts for a vectorised table): (those
    before attention, those after), in execution order."""
    tp, quant = options.parallel.tensor_parallel, options.quant
    t, d, hd = tokens, model.hidden_size, model.head_dim
    heads, kv_heads, ffn = layer_widths(model, tp)
    q_width, kv_width = heads * hd, kv_heads * hd
    add_norm = "add_norm" in options.fusions
    # fused, every layer's input norm takes the residual add before it: the previous layer's last (the first
    # layer has none, but the last layer's add runs into the final norm: as many adds, one kernel each)
    before = ([_add_and_norm("input_norm", t, d, model.norm_kind)] if add_norm
              else [ops.norm("input_norm", t, d, model.norm_kind)])
    before += ops.linear("qkv_proj", t, d, q_width + 2 * kv_width, quant, bias=model.qkv_bias or model.linear_bias)
    kv_write = ops.kv_cache_write(t, kv_width, quant, hd)
    if model.position == "rope" and "rope_kv_write" in options.fusions:
        rotated_k_bytes = t * kv_width * ops.ACT_BYTES
        before.append(ops.fused("rope_kv_write", ops.rope(t, q_width, kv_width, hd), kv_write,
                                unread_bytes=rotated_k_bytes, unwritten_bytes=rotated_k_bytes))
    else:
        before += ([ops.rope(t, q_width, kv_width, hd)] if model.position == "rope" else []) + [kv_write]
    after = ops.linear("o_proj", t, q_width, d, quant, bias=model.linear_bias)
    if tp > 1:
        after.append(ops.all_reduce("attn_all_reduce", t, d, tp))
    after += ([_add_and_norm("post_attn_norm", t, d, model.norm_kind)] if add_norm
              else [ops.residual_add(t, d), ops.norm("post_attn_norm", t, d, model.norm_kind)])
    up_width = ffn * (2 if model.ffn_kind == "swiglu" else 1)
    if model.is_moe:
        after += ops.moe_router(t, d, model.num_experts, model.experts_per_token, quant)
        active = ops.experts_touched(t, model.num_experts, model.experts_per_token)
        count = np.maximum(1, np.round(active))
        per_expert = np.ceil(t * model.experts_per_token / count)
        routed = per_expert * count
        after += ops.linear("ffn_up", t, d, up_width, quant, count=count, tokens_per_matrix=per_expert)
        after.append(ops.activation(routed, ffn, model.ffn_kind))
        after += ops.linear("ffn_down", t, ffn, d, quant, count=count, tokens_per_matrix=per_expert)
    else:
        after += ops.linear("ffn_up", t, d, up_width, quant, bias=model.linear_bias)
        after.append(ops.activation(t, ffn, model.ffn_kind))
        after += ops.linear("ffn_down", t, ffn, d, quant, bias=model.linear_bias)
    if tp > 1:
        after.append(ops.all_reduce("mlp_all_reduce", t, d, tp))
    if not add_norm:
        after.append(ops.residual_add(t, d))
    return before, after


def _add_and_norm(name: str, tokens, hidden: int, norm_kind: str) -> ops.OpCost:
    """A residual add and the norm after it in one kernel, which writes the sum (the residual stream) but
    does not read it back."""
    return ops.fused(f"add_{name}", ops.residual_add(tokens, hidden), ops.norm(name, tokens, hidden, norm_kind),
                     unread_bytes=tokens * hidden * ops.ACT_BYTES)


def attention_ops(model: ModelSpec, batch: Batch, hw: HardwareSpec, options: StepOptions) -> list[ops.OpCost]:
    heads, kv_heads, _ = layer_widths(model, options.parallel.tensor_parallel)
    return ops.attention(np.array(batch.new_tokens), np.array(batch.cached_tokens), heads, kv_heads,
                         model.head_dim, options.quant, options.flash_attention, hw.attention_q_tile_tokens,
                         hw.sram_per_sm_bytes)


def layer_ops(model: ModelSpec, batch: Batch, hw: HardwareSpec, options: StepOptions) -> list[ops.OpCost]:
    """The ops of one decoder layer on one tensor-parallel rank, in execution order."""
    before, after = dense_layer_ops(model, batch.num_tokens, options)
    return before + attention_ops(model, batch, hw, options) + after


def end_ops(model: ModelSpec, tokens: int, sampled: int, options: StepOptions) -> tuple[list, list]:
    """The ops outside the layers: (embedding on the first stage, LM head and sampling on the last)."""
    tp, d = options.parallel.tensor_parallel, model.hidden_size
    front = [ops.embedding(tokens, d)]
    if tp > 1:
        front.append(ops.all_reduce("embedding_all_reduce", tokens, d, tp))
    if np.ndim(sampled) == 0 and not sampled:
        return front, []
    vocab_shard = math.ceil(model.vocab_size / tp)
    head_quant = QuantSpec(kv_bits=options.quant.kv_bits)  # LM head stays fp16, as in memory.py
    back = [ops.norm("final_norm", sampled, d, model.norm_kind)]
    back += ops.linear("lm_head", sampled, d, vocab_shard, head_quant)
    if tp > 1:
        back.append(ops.all_reduce("lm_head_gather", sampled, vocab_shard, tp))
    back.append(ops.sampling(sampled, model.vocab_size, options.sampling))
    return front, back


def check_options(model: ModelSpec, options: StepOptions) -> None:
    unknown = sorted(set(options.fusions) - set(FUSIONS))
    if unknown:
        raise SpecError("engine.fusions", f"must name fusions among {', '.join(FUSIONS)}", unknown[0])
    if options.sampling not in SAMPLING_METHODS:
        raise SpecError("sampling", f"must be one of {', '.join(SAMPLING_METHODS)}", options.sampling)
    if options.parallel.pipeline_parallel > model.num_layers:
        raise SpecError("parallelism.pipeline_parallel", f"must be <= num_layers={model.num_layers}",
                        options.parallel.pipeline_parallel)
    layer_widths(model, options.parallel.tensor_parallel)


def check_fabric(hw: HardwareSpec, options: StepOptions) -> None:
    """Tensor parallelism stays within the GPUs one fabric joins (`HardwareSpec.fabric_gpus`)."""
    tp = options.parallel.tensor_parallel
    if tp > hw.fabric_gpus:
        raise HardwareLimit("parallelism.tensor_parallel", f"spans more GPUs than one {hw.name} {hw.gpu_fabric} "
                            f"fabric joins ({hw.fabric_gpus}); tensor parallelism across nodes is not modelled: put "
                            "the nodes in pipeline_parallel stages", tp)


def check_batch(model: ModelSpec, batch: Batch) -> None:
    if batch.max_context_tokens > model.max_context_tokens:
        raise SpecError("context", f"{model.name} allows at most {model.max_context_tokens} tokens of context",
                        batch.max_context_tokens)


def step_cost(model: ModelSpec, hw: HardwareSpec, batch: Batch, options: StepOptions = StepOptions()) -> StepCost:
    """Per-op table and totals of one forward step of `batch` (see module docstring)."""
    check_batch(model, batch)
    check_options(model, options)
    check_fabric(hw, options)
    pp = options.parallel.pipeline_parallel
    t = batch.num_tokens
    front_ops, back_ops = end_ops(model, t, batch.num_sampled, options)
    layer = [time_op(hw, op) for op in layer_ops(model, batch, hw, options)]
    front = [time_op(hw, op) for op in front_ops]
    back = [time_op(hw, op) for op in back_ops]
    rows = [OpRow(x, 1) for x in front] + [OpRow(x, model.num_layers) for x in layer] + [OpRow(x, 1) for x in back]
    if pp > 1:
        rows.append(OpRow(time_op(hw, ops.p2p_send(t, model.hidden_size)), pp - 1))
    layer_s = sum(x.time_s for x in layer)
    stage_layers = math.ceil(model.num_layers / pp)
    front_s = sum(x.time_s for x in front)
    back_s = sum(x.time_s for x in back)
    # The first stage also embeds, the last also runs the LM head and sampling; one stage does all three.
    stage_s = (stage_layers * layer_s + front_s + back_s if pp == 1
               else max(front_s, back_s) + stage_layers * layer_s)
    return StepCost(rows=tuple(rows), stage_time_s=stage_s, pipeline_stages=pp)
