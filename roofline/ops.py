"""What each op of a decoder forward pass costs: FLOPs and bytes moved, one pure function per op family.

Bytes are split by what is moved: weights, activations read/written, KV cache read/written. FLOPs are
split into tensor-core FLOPs (`flops`: matrix products) and vector FLOPs (`vector_flops`: elementwise
work, softmax, dequantization) because they run on different units. A multiply-add is 2 FLOPs.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numba
import numpy as np

from .quant import QuantSpec

ACT_BYTES = 2  # fp16/bf16 activations between kernels
LOGIT_BYTES = 4  # sampling works on fp32 probabilities


@dataclass(frozen=True)
class GemmShape:
    """`count` independent (m x k) @ (k x n) products in one kernel (MoE experts, attention heads);
    the (k x n) operand is stored at `b_bytes` per element (0.5 for 4-bit weights), the (m x k) one at
    `a_bytes` (1 for the fp8 or int8 activations of W8A8)."""

    m: int
    n: int
    k: int
    count: int = 1
    b_bytes: float = ACT_BYTES
    a_bytes: float = ACT_BYTES


@dataclass(frozen=True)
class OpCost:
    name: str
    kind: str  # gemm, attention, vector (elementwise: streams at its DRAM share) or comm (a collective)
    flops: float = 0.0
    vector_flops: float = 0.0
    exp_ops: float = 0.0  # exponentials (softmax), timed at the spec's special-function rate
    weight_bytes: float = 0.0
    act_read_bytes: float = 0.0
    act_write_bytes: float = 0.0
    kv_read_bytes: float = 0.0
    kv_write_bytes: float = 0.0
    dtype: str = "fp16"
    gemm: GemmShape | None = None
    sparse_24: bool = False
    comm_peers: int = 1
    collective: str = ""  # comm ops: "all_reduce" over the peers, or "send" to the next pipeline stage
    l2_reread_bytes: float = 0.0  # the part of kv_read_bytes that re-reads tiles still held in L2
    # the share of DRAM bandwidth a vector kernel streams at, where it was measured (STREAM_SHARES; an array
    # where the amounts are, as a fused kernel's follows its bytes); None: HardwareSpec.vector_bandwidth_efficiency
    dram_share: float | None = None

    def scaled(self, factor) -> "OpCost":
        """The same op done `factor` times over (FLOPs and bytes scale; its name, kind and shape stay)."""
        return dataclasses.replace(self, **{f: getattr(self, f) * factor for f in _AMOUNTS})

    def plus(self, other: "OpCost") -> "OpCost":
        """Both ops' work as one kernel (this op's name, kind, shape and DRAM share: vector kernels that
        stream differently combine through `fused`)."""
        return dataclasses.replace(self, **{f: getattr(self, f) + getattr(other, f) for f in _AMOUNTS})

    @property
    def bytes(self) -> float:
        return (self.weight_bytes + self.act_read_bytes + self.act_write_bytes + self.kv_read_bytes
                + self.kv_write_bytes)

    @property
    def total_flops(self) -> float:
        return self.flops + self.vector_flops + self.exp_ops

    @property
    def intensity_flops_per_byte(self) -> float:
        return self.total_flops / self.bytes if self.bytes else math.inf


_AMOUNTS = ("flops", "vector_flops", "exp_ops", "weight_bytes", "act_read_bytes", "act_write_bytes",
            "kv_read_bytes", "kv_write_bytes", "l2_reread_bytes")

def per_instance_fields(op: OpCost) -> tuple[str, ...]:
    """The fields `stack` makes arrays of: the amounts, and the DRAM share where the op has one."""
    return _AMOUNTS if op.dram_share is None else (*_AMOUNTS, "dram_share")


def stack(op_list: list[OpCost]) -> OpCost:
    """Instances of one op (the same name, kind, dtype) as one OpCost whose amounts, and GEMM shape, are
    arrays with an entry per instance: what the timing functions evaluate in one vectorised call."""
    first = op_list[0]
    gemm = None
    if first.gemm is not None:
        gemm = GemmShape(*(np.array([getattr(op.gemm, f.name) for op in op_list], dtype=np.float64)
                           for f in dataclasses.fields(GemmShape)))
    return dataclasses.replace(first, gemm=gemm, **{f: np.array([getattr(op, f) for op in op_list], dtype=np.float64)
                                                    for f in per_instance_fields(first)})


def linear(name: str, tokens: int, in_features: int, out_features: int, quant: QuantSpec,
           bias: bool = False, count: int = 1, tokens_per_matrix: int | None = None) -> list[OpCost]:
    """y = x W (+ b) for `tokens` rows: 2 FLOPs per multiply-add, weights read once per call. `tokens` may
    be an array (one entry per batch size) for vectorised tables.

    `count` matrices of the same shape (MoE experts) each see `tokens_per_matrix` rows. With LLM.int8()
    decomposition the outlier input features run as a second, fp16 GEMM (Dettmers et al. 2022, Eq. 3).
    """
    rows = tokens if tokens_per_matrix is None else tokens_per_matrix
    k_outlier = round(in_features * quant.outlier_fraction)
    k_main = in_features - k_outlier
    main_quant = quant
    w_bytes = count * quant.weight_bytes(k_main, out_features)
    dequant = count * quant.dequant_flops_per_weight() * k_main * out_features * np.ceil(rows / 128)
    ops = [OpCost(
        name=name, kind="gemm", flops=2.0 * count * rows * k_main * out_features,
        vector_flops=dequant + (count * rows * out_features if bias else 0.0),
        weight_bytes=w_bytes + (count * out_features * ACT_BYTES if bias else 0.0),
        act_read_bytes=count * rows * k_main * main_quant.act_bytes_per_element(),
        act_write_bytes=count * rows * out_features * ACT_BYTES,
        dtype=quant.gemm_dtype(), gemm=GemmShape(rows, out_features, k_main, count,
                                                  w_bytes / (count * k_main * out_features),
                                                  main_quant.act_bytes_per_element()),
        sparse_24=quant.sparsity_pattern == "2:4")]
    if k_outlier:
        ops.append(OpCost(
            name=f"{name}.outliers", kind="gemm", flops=2.0 * count * rows * k_outlier * out_features,
            vector_flops=count * rows * in_features,  # find outlier columns, then add the two partial sums
            weight_bytes=count * k_outlier * out_features * ACT_BYTES,
            act_read_bytes=count * rows * (k_outlier + out_features) * ACT_BYTES,
            act_write_bytes=count * rows * out_features * ACT_BYTES,
            dtype="fp16", gemm=GemmShape(rows, out_features, k_outlier, count)))
    return ops


# The share of DRAM bandwidth each kind of vector kernel streams at. A kernel reaches the same share on every
# GPU, as its code sets it: on Vidur's profiles (rows moving > 8 MB) the residual add reaches 0.84-0.98 of it
# on the A100 and 0.99-1.03 on the H100, the embedding 0.13-0.17 and 0.17-0.19, RMSNorm 0.31-0.40 and
# 0.32-0.39, SiLU-and-mul 0.36-0.50 and 0.39-0.58, RoPE 0.35-0.48 and 0.36-0.49. These are the shares that fit
# the three A100 profiles (data/profiles/a100) best; the H100 profiles were not used to set them. The residual
# add: PyTorch's vectorised add, wide loads and no reduction, one operand just written and still in L2; the
# embedding: a gather of rows, one lookup per token (with TP, VocabParallelEmbedding's masking kernels too);
# RMSNorm: one thread block per token, a reduction across the row and a second pass over it (LayerNorm is
# taken to stream as RMSNorm, GELU as SiLU-and-mul: neither was measured). RoPE (0.48) streams as a typical
# vector kernel, HardwareSpec.vector_bandwidth_efficiency (0.46), which also serves every unmeasured one.
STREAM_SHARES = MappingProxyType({"residual_add": 0.96, "embedding": 0.15, "norm": 0.35, "activation": 0.51})


def elementwise(name: str, elements: float, reads: float, writes: float, flops_per_element: float,
                extra_read_bytes: float = 0.0, dram_share: float | None = None) -> OpCost:
    """A streaming kernel over `elements` outputs: `reads` and `writes` fp16 tensors of that size."""
    return OpCost(name=name, kind="vector", vector_flops=flops_per_element * elements,
                  act_read_bytes=reads * elements * ACT_BYTES + extra_read_bytes,
                  act_write_bytes=writes * elements * ACT_BYTES, dram_share=dram_share)


def norm(name: str, tokens: int, hidden: int, kind: str) -> OpCost:
    """RMSNorm (Zhang & Sennrich 2019): square, mean, rsqrt, scale ~4 FLOPs/element; LayerNorm ~7 with bias."""
    params = hidden * (2 if kind == "layernorm" else 1)
    op = elementwise(name, tokens * hidden, 1, 1, 7 if kind == "layernorm" else 4, dram_share=STREAM_SHARES["norm"])
    return dataclasses.replace(op, weight_bytes=params * ACT_BYTES)


def rope(tokens: int, q_width: int, kv_width: int, head_dim: int) -> OpCost:
    """Rotary embedding (Su et al. 2021) on Q and K in place: 3 FLOPs per element, cos/sin read per token."""
    return elementwise("rope", tokens * (q_width + kv_width), 1, 1, 3,
                       extra_read_bytes=tokens * head_dim * ACT_BYTES)


def residual_add(tokens: int, hidden: int) -> OpCost:
    return elementwise("residual_add", tokens * hidden, 2, 1, 1, dram_share=STREAM_SHARES["residual_add"])


def fused(name: str, first: OpCost, second: OpCost, unread_bytes: float = 0.0, unwritten_bytes: float = 0.0) -> OpCost:
    """Two ops run as one kernel: their work and traffic, less what the first wrote for the second to read
    back (`unread_bytes`: no longer read from memory; `unwritten_bytes`: no longer written, as nothing after
    the kernel reads it), and one launch instead of two. Each op's remaining traffic moves at its own DRAM
    share: the kernel's is their byte-weighted harmonic mean (both ops measured, or neither)."""
    both = first.plus(second)
    share = None
    if first.dram_share is not None or second.dram_share is not None:
        assert first.dram_share is not None and second.dram_share is not None, (
            f"fusing {first.name} and {second.name}: one has a measured DRAM share, the other not")
        first_bytes, second_bytes = first.bytes - unwritten_bytes, second.bytes - unread_bytes
        paced_bytes = first_bytes / first.dram_share + second_bytes / second.dram_share
        share = np.where(paced_bytes > 0, (first_bytes + second_bytes) / np.where(paced_bytes > 0, paced_bytes, 1.0),
                         first.dram_share)
        share = float(share) if np.ndim(share) == 0 else share
    return dataclasses.replace(both, name=name, act_read_bytes=both.act_read_bytes - unread_bytes,
                               act_write_bytes=both.act_write_bytes - unwritten_bytes, dram_share=share)


def activation(tokens: int, ffn_width: int, kind: str) -> OpCost:
    """SwiGLU: silu(gate) * up, reading both halves (~5 FLOPs/output); GELU (tanh form) ~8 FLOPs/element."""
    share = STREAM_SHARES["activation"]
    if kind == "swiglu":
        return elementwise("ffn_act", tokens * ffn_width, 2, 1, 5, dram_share=share)
    return elementwise("ffn_act", tokens * ffn_width, 1, 1, 8, dram_share=share)


def embedding(tokens: int, hidden: int) -> OpCost:
    """Gather one row of the table per token (token ids are 4-byte integers)."""
    return OpCost(name="embedding", kind="vector", weight_bytes=tokens * hidden * ACT_BYTES,
                  act_read_bytes=tokens * 4, act_write_bytes=tokens * hidden * ACT_BYTES,
                  dram_share=STREAM_SHARES["embedding"])


def kv_cache_write(tokens: int, kv_width: int, quant: QuantSpec, head_dim: int) -> OpCost:
    """Append this step's K and V to the cache (vLLM's reshape_and_cache), quantizing if kv_bits < 16."""
    elements = 2 * tokens * kv_width
    return OpCost(name="kv_cache_write", kind="vector", vector_flops=elements * (2 if quant.kv_bits < 16 else 0),
                  act_read_bytes=elements * ACT_BYTES,
                  kv_write_bytes=elements * quant.kv_bytes_per_element(head_dim))


def attention(new_tokens: np.ndarray, cached_tokens: np.ndarray, num_heads: int, num_kv_heads: int,
              head_dim: int, quant: QuantSpec, flash: bool, q_tile_tokens: int,
              sram_bytes: float) -> list[OpCost]:
    """Causal self-attention for a ragged batch: sequence i brings q_i new tokens after c_i cached ones.

    Query j of sequence i sees c_i + j + 1 keys, so a head scores sum_i q_i c_i + q_i (q_i + 1) / 2 pairs:
    prefill (c=0), chunked prefill (c>0) and decode (q=1) are the same formula. QK^T and PV cost 2 x
    head_dim FLOPs per pair each; softmax one exponential and ~4 vector FLOPs per pair (max, subtract,
    sum, divide).

    FlashAttention (Dao et al. 2022, Alg. 1; FlashAttention-2 Alg. 1) keeps scores on chip and loops
    query tiles of `q_tile_tokens` outside K/V tiles, so K/V are read once per query tile unless a
    head's whole K/V fits in SRAM; causal tiles stop at the diagonal. Those re-reads are counted in the KV
    bytes and marked `l2_reread_bytes`: the tiles were fetched moments before by the previous query tile,
    so the timing serves them from L2. Without it the full q x (c+q)
    score matrix S is computed, written, read and written again as P by softmax, and read by PV.
    """
    sums = attention_sums(np.asarray(new_tokens, dtype=np.float64), np.asarray(cached_tokens, dtype=np.float64),
                          float(q_tile_tokens), sram_kv_tokens(sram_bytes, head_dim, quant))
    totals = AttentionTotals(*sums[:5], max_queries=int(sums[5]), max_kv_tokens=int(sums[6]),
                             sequences=len(new_tokens))
    return attention_from_totals(totals, num_heads, num_kv_heads, head_dim, quant, flash)


def sram_kv_tokens(sram_bytes: float, head_dim: int, quant: QuantSpec) -> float:
    """How many tokens of one head's K and V fit in `sram_bytes` (FlashAttention then reads them once)."""
    return sram_bytes / (2 * head_dim * quant.kv_bytes_per_element(head_dim))


@numba.njit(cache=True)
def attention_sums(q, c, tile, sram_tokens):
    """The sums of `attention`'s docstring in one pass: queries, causal pairs, full pairs, keys, keys read
    with FlashAttention's re-reads (none when a head's K/V fit in `sram_tokens`), longest q and q + c."""
    queries = pairs_causal = pairs_full = keys = flash_reads = longest_q = longest_kv = 0.0
    for i in range(len(q)):
        kv = q[i] + c[i]
        tiles = math.ceil(q[i] / tile)
        queries += q[i]
        pairs_causal += q[i] * c[i] + q[i] * (q[i] + 1) / 2
        pairs_full += q[i] * kv
        keys += kv
        flash_reads += kv if kv <= sram_tokens else tiles * c[i] + tile * tiles * (tiles - 1) / 2 + q[i]
        longest_q = max(longest_q, q[i])
        longest_kv = max(longest_kv, kv)
    return queries, pairs_causal, pairs_full, keys, flash_reads, longest_q, longest_kv


def decode_attention(batch_size: int, context_sum, context_max, num_heads: int, num_kv_heads: int,
                     head_dim: int, quant: QuantSpec, flash: bool) -> list[OpCost]:
    """`attention` for a decode batch (q_i = 1) from its context sum and maximum, which may be arrays (one
    entry per step of a decode run): each query sees c_i + 1 keys, every K/V is read once."""
    kv_tokens = np.asarray(context_sum, dtype=np.float64) + batch_size
    totals = AttentionTotals(queries=float(batch_size), pairs_causal=kv_tokens, pairs_full=kv_tokens,
                             kv_tokens=kv_tokens, flash_kv_read_tokens=kv_tokens, max_queries=1,
                             max_kv_tokens=np.asarray(context_max) + 1, sequences=batch_size)
    return attention_from_totals(totals, num_heads, num_kv_heads, head_dim, quant, flash)


@dataclass(frozen=True)
class AttentionTotals:
    """Batch sums that fix attention's cost (see `attention`); fields may be arrays over steps."""

    queries: float
    pairs_causal: float
    pairs_full: float
    kv_tokens: float
    flash_kv_read_tokens: float
    max_queries: int
    max_kv_tokens: int
    sequences: int


class FlashAttentionRates(NamedTuple):
    """FlashAttention's cost per unit of work (FlashAttention-2, Alg. 1): each query's Q is read and its
    O written once (`per_query`); each causal (query, key) pair costs QK^T and PV, 2 x head_dim FLOPs
    each, and softmax's exponential and ~4 vector FLOPs (`per_pair`); each key read from memory brings
    its K and V (`per_key_read`)."""

    per_query: OpCost
    per_pair: OpCost
    per_key_read: OpCost


@functools.lru_cache(maxsize=64)
def flash_attention_rates(num_heads: int, num_kv_heads: int, head_dim: int, quant: QuantSpec) -> FlashAttentionRates:
    """The rates at the KV cache's bytes per element; QK^T and PV run at the peak of `quant.attention_dtype`."""
    dtype = quant.attention_dtype
    return FlashAttentionRates(
        per_query=OpCost(name="attention", kind="attention", act_read_bytes=num_heads * head_dim * ACT_BYTES,
                         act_write_bytes=num_heads * head_dim * ACT_BYTES, dtype=dtype),
        per_pair=OpCost(name="attention", kind="attention", flops=4.0 * head_dim * num_heads,
                        vector_flops=4.0 * num_heads, exp_ops=num_heads, dtype=dtype),
        per_key_read=OpCost(name="attention", kind="attention",
                            kv_read_bytes=2 * num_kv_heads * head_dim * quant.kv_bytes_per_element(head_dim),
                            dtype=dtype))


def decode_attention_affine(batch_size: int, num_heads: int, num_kv_heads: int, head_dim: int,
                            quant: QuantSpec) -> tuple[OpCost, OpCost]:
    """FlashAttention over a decode batch as (fixed, per_key): the cost of a step that reads K keys in all
    (K = sum of c_i + 1) is fixed + K x per_key, since each of its B queries pairs with every key it
    reads once. Every term of `timing` is linear in an op's FLOPs and bytes, so its compute and memory
    seconds are affine in K too: what lets a simulator cost a whole run of decode steps at once."""
    rates = flash_attention_rates(num_heads, num_kv_heads, head_dim, quant)
    return rates.per_query.scaled(batch_size), rates.per_pair.plus(rates.per_key_read)


def attention_from_totals(t: AttentionTotals, num_heads: int, num_kv_heads: int, head_dim: int,
                          quant: QuantSpec, flash: bool) -> list[OpCost]:
    if flash:
        query, pair, read = flash_attention_rates(num_heads, num_kv_heads, head_dim, quant)
        return [OpCost(
            name="attention", kind="attention", dtype=pair.dtype, flops=pair.flops * t.pairs_causal,
            vector_flops=pair.vector_flops * t.pairs_causal, exp_ops=pair.exp_ops * t.pairs_causal,
            act_read_bytes=query.act_read_bytes * t.queries, act_write_bytes=query.act_write_bytes * t.queries,
            kv_read_bytes=read.kv_read_bytes * t.flash_kv_read_tokens,
            # the reads beyond each key's first hit tiles the previous query tile just brought into L2
            l2_reread_bytes=read.kv_read_bytes * (t.flash_kv_read_tokens - t.kv_tokens))]
    qo_bytes = 2 * t.queries * num_heads * head_dim * ACT_BYTES
    kv_elem_bytes = 2 * num_kv_heads * head_dim * quant.kv_bytes_per_element(head_dim)
    score_bytes = num_heads * t.pairs_full * ACT_BYTES
    batched = GemmShape(t.max_queries, t.max_kv_tokens, head_dim, num_heads * t.sequences)
    return [
        OpCost(name="attn_scores", kind="gemm", flops=2.0 * head_dim * num_heads * t.pairs_full,
               act_read_bytes=qo_bytes / 2, act_write_bytes=score_bytes,
               kv_read_bytes=t.kv_tokens * kv_elem_bytes / 2, dtype=quant.attention_dtype, gemm=batched),
        OpCost(name="attn_softmax", kind="vector", vector_flops=4.0 * num_heads * t.pairs_full,
               exp_ops=num_heads * t.pairs_full,
               act_read_bytes=score_bytes, act_write_bytes=score_bytes),
        OpCost(name="attn_context", kind="gemm", flops=2.0 * head_dim * num_heads * t.pairs_full,
               act_read_bytes=score_bytes, act_write_bytes=qo_bytes / 2,
               kv_read_bytes=t.kv_tokens * kv_elem_bytes / 2, dtype=quant.attention_dtype,
               gemm=GemmShape(batched.m, head_dim, batched.n, batched.count)),
    ]


def sampling(sequences: int, vocab: int, method: str = "top_p") -> OpCost:
    """Turn logits into tokens. Greedy: one argmax pass. Top-k/top-p: fp32 softmax (an exponential and
    ~4 FLOPs per entry), then a sort of the vocabulary (~log2 V compare-swaps per entry) writing values and
    int64 indices."""
    n = sequences * vocab
    if method == "greedy":
        return OpCost(name="sampling", kind="vector", vector_flops=n, act_read_bytes=n * ACT_BYTES,
                      act_write_bytes=sequences * 8)
    return OpCost(name="sampling", kind="vector", vector_flops=n * (4 + math.log2(vocab)), exp_ops=n,
                  act_read_bytes=n * (ACT_BYTES + LOGIT_BYTES),
                  act_write_bytes=n * (LOGIT_BYTES + LOGIT_BYTES + 8))


def moe_router(tokens: int, hidden: int, num_experts: int, experts_per_token: int,
               quant: QuantSpec) -> list[OpCost]:
    """Router logits (a d x E linear, kept fp16 as engines do) and the top-k softmax over experts."""
    ops = linear("moe_router", tokens, hidden, num_experts, QuantSpec(kv_bits=quant.kv_bits))
    ops.append(elementwise("moe_topk", tokens * num_experts, 1, experts_per_token / num_experts, 6))
    return ops


def experts_touched(tokens: int, num_experts: int, experts_per_token: int) -> float:
    """Expected experts with at least one token under uniform routing: E (1 - (1 - k/E)^T)."""
    return num_experts * (1 - (1 - experts_per_token / num_experts) ** tokens)


def all_reduce(name: str, tokens: int, hidden: int, peers: int) -> OpCost:
    """Sum a tokens x hidden fp16 tensor over `peers` tensor-parallel ranks (Megatron-LM, Shoeybi et al.
    2019, §3: one all-reduce after attention, one after the MLP). Bytes are the payload per rank."""
    return OpCost(name=name, kind="comm", act_read_bytes=tokens * hidden * ACT_BYTES, comm_peers=peers,
                  collective="all_reduce")


def p2p_send(tokens: int, hidden: int) -> OpCost:
    """Pipeline-parallel hand-off of the hidden states to the next stage."""
    return OpCost(name="pp_send", kind="comm", act_read_bytes=tokens * hidden * ACT_BYTES, comm_peers=2,
                  collective="send")
