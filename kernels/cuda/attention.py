"""CuPy GPU attention with the signatures of `kernels.attention`'s: tiled attention with FlashAttention-2's
work split and online softmax, on tensor cores for fp16 inputs (`attention_mma.cu`, not yet run on a GPU,
emulated by `kernels.tensor_core_attention`) and fp32 on CUDA cores for fp32 ones (`attention.cu`); and
split-KV paged decode attention (Flash-Decoding) whose blocks serve all the query heads of a GQA group
(`paged_attention.cu`, fp32).
"""
from __future__ import annotations

import numpy as np

from ..device import require
from ..tensor_core_attention import BLOCK_M, check_head_dim
from .compile import compiled


def _check_head_dim(d: int) -> None:
    if d % 32 or not 32 <= d <= 128:
        raise ValueError(f"the GPU attention kernels take head_dim 32, 64, 96 or 128, got {d}")


# Blocks one H100/H200 SM holds at once, estimated from each kernel's threads, registers and shared memory
# (65536 registers, 228 KB, 2048 threads an SM): tensor-core attention, 128 threads of ~140 registers and
# 36 KB -> 3; paged decode, 128 threads -> 8. The GPU run can check them against CuPy's RawKernel.num_regs
# and shared_size_bytes.
MMA_BLOCKS_PER_SM, PAGED_BLOCKS_PER_SM = 3, 8


def tensor_core_attention_thread_blocks(batch: int, heads: int, q_len: int) -> int:
    """The grid `tensor_core_attention` launches: a block per (batch, head, BLOCK_M query rows)."""
    return batch * heads * -(-q_len // BLOCK_M)


def attention(q, k, v, causal: bool = True):
    """Exact attention of CuPy arrays (see kernels.attention): fp16 ones on tensor cores
    (`tensor_core_attention`), fp32 ones on CUDA cores: FlashAttention-2's split, a block per 16 query rows
    of one head walking 32-key tiles of K and V through shared memory, the online softmax in registers;
    causal masks end-aligned."""
    if np.dtype(q.dtype) == np.float16:
        return tensor_core_attention(q, k, v, causal)
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    _check_head_dim(d)
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    cp = require()
    out = cp.empty((b, h, s, d), dtype=cp.float32)
    compiled("attention.cu", "attention_tiles", f"HEAD_DIM={d}")(
        ((s + 15) // 16, b * h), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k, cp.float32), cp.ascontiguousarray(v, cp.float32),
         out, np.int32(h), np.int32(kv_h), np.int32(s), np.int32(t), np.int32(causal)))
    return out


def tensor_core_attention(q, k, v, causal: bool = True):
    """Exact attention of CuPy fp16 arrays on tensor cores (WMMA, fp32 accumulation), fp16 out:
    FlashAttention-2's Algorithm 1, a block per 64 query rows of one head (`attention_mma.cu`; its
    arithmetic is `kernels.tensor_core_attention.tensor_core_attention_emulated`'s)."""
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    check_head_dim(d)
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    if causal and s > t:
        raise ValueError(f"causal attention needs at most as many queries as keys, got {s} queries and {t} keys "
                         "(a query before the first key sees nothing)")
    cp = require()
    out = cp.empty((b, h, s, d), dtype=cp.float16)
    compiled("attention_mma.cu", "attention_mma", f"HEAD_DIM={d}")(
        (tensor_core_attention_thread_blocks(1, 1, s), b * h), (128,),
        (*(_aligned16(cp, x) for x in (q, k, v)), out, np.int32(h), np.int32(kv_h), np.int32(s), np.int32(t),
         np.int32(causal)))
    return out


def _aligned16(cp, x):
    """A contiguous fp16 array whose data starts on 16 bytes (the kernel loads 16-byte vectors); a contiguous
    view at an odd offset is copied."""
    x = cp.ascontiguousarray(x, cp.float16)
    return x if x.data.ptr % 16 == 0 else x.copy()


def _query_heads_per_block(group: int) -> int:
    """The query heads of one GQA group a paged_split block serves: the largest divisor of the group
    size up to 8 (registers bound it: 8 heads of 128 dimensions use ~170 of a thread's 255)."""
    return max(d for d in range(1, min(group, 8) + 1) if group % d == 0)


def _spans(table_tokens: int, split_tokens: int) -> int:
    """Spans of split_tokens cached tokens covering a block table of table_tokens slots."""
    return -(-table_tokens // split_tokens)


def paged_decode_thread_blocks(batch: int, heads: int, kv_heads: int, table_tokens: int, split_tokens: int) -> int:
    """The grid of `paged_decode_attention`'s split pass: a block per (sequence, query heads sharing a KV
    head, span)."""
    return batch * heads // _query_heads_per_block(heads // kv_heads) * _spans(table_tokens, split_tokens)


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, split_tokens: int = 256):
    """Decode attention through a block table (see kernels.attention), split-KV as Flash-Decoding does:
    a block per (sequence, kv head and the query heads that share it, span of split_tokens cached
    tokens), then a pass merging the spans. The span count comes from the block table's width, so
    nothing is read back from the GPU."""
    b, h, d = q.shape
    _check_head_dim(d)
    cp = require()
    block, kv_h = k_cache.shape[1], k_cache.shape[2]
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    per_block = _query_heads_per_block(h // kv_h)
    spans = _spans(block_tables.shape[1] * block, split_tokens)
    m_part = cp.empty(b * h * spans, dtype=cp.float32)
    l_part = cp.empty_like(m_part)
    acc_part = cp.empty(b * h * spans * d, dtype=cp.float32)
    out = cp.empty((b, h, d), dtype=cp.float32)
    compiled("paged_attention.cu", "paged_split", f"HEAD_DIM={d}", f"GROUP={per_block}")(
        (b * h // per_block, spans), (128,),
        (cp.ascontiguousarray(q, cp.float32), cp.ascontiguousarray(k_cache, cp.float32),
         cp.ascontiguousarray(v_cache, cp.float32), cp.ascontiguousarray(block_tables, cp.int64),
         cp.ascontiguousarray(context_lens, cp.int64), m_part, l_part, acc_part, np.int32(h), np.int32(kv_h),
         np.int32(block), np.int32(block_tables.shape[1]), np.int32(split_tokens)))
    compiled("paged_attention.cu", "paged_combine", f"HEAD_DIM={d}", f"GROUP={per_block}")(
        (b * h,), (32,), (m_part, l_part, acc_part, out, np.int32(spans)))
    return out
