"""Attention kernels: naive (the score matrix materialised), tiled with the online softmax
(FlashAttention-2, Dao 2023, Algorithm 1) and paged decode attention reading K/V through a block table
(PagedAttention, Kwon et al. 2023). Each has a NumPy reference and a Numba CPU kernel behind one function;
the CuPy versions live in `cuda/attention.py`.

Shapes: q [batch, heads, q_len, head_dim], k and v [batch, kv_heads, kv_len, head_dim] with heads a
multiple of kv_heads (grouped-query attention: query head h reads KV head h // (heads / kv_heads)). The
causal mask is aligned to the end, as FlashAttention's is when kv_len > q_len: query i sees keys
0 .. i + kv_len - q_len, so a decode step (q_len 1) sees the whole cache. Math runs in fp32 whatever the
input dtype (fp32 or fp16); the output has the input's dtype.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._numba_gemm import REORDER as _REORDER
from ._numba_gemm import one_blas_thread
from .cuda import attention as cuda_attention
from .fast_exp import fast_exp

BACKENDS = ("numpy", "numba", "cupy")


def _check(q, k, v) -> tuple[int, int]:
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention wants q [b, h, s, d] and k, v [b, kv_h, t, d]; got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"heads={q.shape[1]} must be a multiple of kv_heads={k.shape[1]}")
    if k.shape[2] < q.shape[2]:
        raise ValueError(f"kv_len={k.shape[2]} must be >= q_len={q.shape[2]} (the queries' own keys are cached)")
    return q.shape[1] // k.shape[1], k.shape[2] - q.shape[2]


def _array_module(a):
    """NumPy, or CuPy for a CuPy array (the GPU benchmark runs the naive reference on the GPU)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def naive_attention(q, k, v, causal: bool = True) -> np.ndarray:
    """softmax(Q K^T / sqrt(d) + mask) V with the full score matrix in memory (the reference); NumPy or
    CuPy arrays."""
    group, offset = _check(q, k, v)
    xp = _array_module(q)
    kf = xp.repeat(k.astype(np.float32), group, axis=1)
    vf = xp.repeat(v.astype(np.float32), group, axis=1)
    scores = q.astype(np.float32) @ kf.transpose(0, 1, 3, 2) / np.float32(math.sqrt(q.shape[3]))
    if causal:
        rows = xp.arange(q.shape[2])[:, None]
        scores = xp.where(xp.arange(k.shape[2])[None, :] <= rows + offset, scores, np.float32(-np.inf))
    scores -= scores.max(axis=-1, keepdims=True)
    p = xp.exp(scores)
    return (p @ vf / p.sum(axis=-1, keepdims=True)).astype(q.dtype)


def tiled_attention_reference(q, k, v, causal: bool = True, block_q: int = 64, block_k: int = 64) -> np.ndarray:
    """FlashAttention-2's Algorithm 1 in NumPy, tile by tile and for all batches and heads at once: for
    each query tile keep a running row maximum m, normaliser l and unnormalised output O; for each key
    tile S = Q K^T, m' = max(m, rowmax S), P = exp(S - m'), l = e^(m - m') l + rowsum P,
    O = e^(m - m') O + P V; finally O / l. Grouped-query heads are handled by viewing the query heads
    of one KV head as extra rows."""
    group, offset = _check(q, k, v)
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    scale = np.float32(1 / math.sqrt(d))
    qg = (q.astype(np.float32) * scale).reshape(b, kv_h, group, s, d)
    kf, vf = k.astype(np.float32)[:, :, None], v.astype(np.float32)[:, :, None]
    out = np.empty((b, kv_h, group, s, d), dtype=np.float32)
    for q0 in range(0, s, block_q):
        qt = qg[:, :, :, q0:q0 + block_q]
        rows = np.arange(q0, q0 + qt.shape[3])[:, None]
        m = np.full(qt.shape[:4] + (1,), -np.inf, dtype=np.float32)
        l = np.zeros_like(m)
        o = np.zeros(qt.shape, dtype=np.float32)
        k_end = min(t, q0 + qt.shape[3] + offset) if causal else t  # causal: later tiles are all masked
        for k0 in range(0, k_end, block_k):
            st = qt @ kf[:, :, :, k0:k0 + block_k].swapaxes(-1, -2)
            if causal and k0 + st.shape[-1] - 1 > q0 + offset:  # only tiles crossing the diagonal need a mask
                st = np.where(np.arange(k0, k0 + st.shape[-1])[None, :] <= rows + offset, st, -np.inf)
            m_new = np.maximum(m, st.max(axis=-1, keepdims=True))
            p = np.exp(st - m_new)
            alpha = np.exp(m - m_new)
            l = alpha * l + p.sum(axis=-1, keepdims=True)
            o = alpha * o + p @ vf[:, :, :, k0:k0 + block_k]
            m = m_new
        out[:, :, :, q0:q0 + qt.shape[3]] = o / l
    return out.reshape(b, h, s, d).astype(q.dtype)


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _tiled_numba(q, k, v, causal, block_q, block_k, out):
    """One task per (batch, head, query tile), FlashAttention-2's work split. Each key tile's two products
    (S = Q K^T and P V) run on BLAS, as FlashAttention's run on tensor cores; the online softmax between
    them is Numba loops."""
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    group = h // kv_h
    offset = t - s
    scale = np.float32(1.0 / math.sqrt(d))
    q_tiles = (s + block_q - 1) // block_q
    for job in numba.prange(b * h * q_tiles):
        bi = job // (h * q_tiles)
        hi = job // q_tiles % h
        q0 = job % q_tiles * block_q
        rows = min(block_q, s - q0)
        kh = hi // group
        qt = q[bi, hi, q0:q0 + rows] * scale
        m = np.full(rows, -np.inf, dtype=np.float32)
        l = np.zeros(rows, dtype=np.float32)
        acc = np.zeros((rows, d), dtype=np.float32)
        k_end = min(t, q0 + rows + offset) if causal else t  # causal: later tiles are all masked
        for k0 in range(0, k_end, block_k):
            n = min(block_k, k_end - k0)
            st = np.dot(qt, k[bi, kh, k0:k0 + n].T)
            crosses = causal and k0 + n - 1 > q0 + offset  # only tiles crossing the diagonal need a mask
            for i in range(rows):
                srow = st[i]
                if crosses:
                    srow[max(q0 + i + offset - k0 + 1, 0):] = -np.inf
                m_new = max(m[i], srow.max())
                alpha = fast_exp(m[i] - m_new)
                total = np.float32(0.0)
                for j in range(n):
                    p = fast_exp(srow[j] - m_new)
                    srow[j] = p
                    total += p
                l[i] = alpha * l[i] + total
                m[i] = m_new
                acc[i] *= alpha
            acc += np.dot(st, v[bi, kh, k0:k0 + n])
        for i in range(rows):
            out[bi, hi, q0 + i] = acc[i] / l[i]


def _fp32(x: np.ndarray) -> np.ndarray:
    """Numba has no fp16 arithmetic on the CPU: fp16 tensors are widened once before the kernel."""
    return x if x.dtype == np.float32 else x.astype(np.float32)


def attention(q, k, v, causal: bool = True, backend: str = "numpy", tiled: bool = True,
              block_q: int = 64, block_k: int = 64) -> np.ndarray:
    """Exact attention (see module docstring). numpy: the tiled reference (or the naive one when
    tiled=False); numba: a parallel tiled kernel, one (batch, head, query tile) per task, online softmax
    over key tiles, the tile products on BLAS; cupy: the GPU kernels on CuPy arrays (`cuda.attention.attention`,
    their own tiles): fp16 arrays on tensor cores (fp16 products, fp32 accumulation, fp16 out), fp32 ones
    on CUDA cores."""
    if backend == "cupy":
        return cuda_attention.attention(q, k, v, causal)
    if backend == "numpy":
        return (tiled_attention_reference(q, k, v, causal, block_q, block_k) if tiled
                else naive_attention(q, k, v, causal))
    if backend == "numba":
        _check(q, k, v)
        out = np.empty(q.shape, dtype=np.float32)
        with one_blas_thread():
            _tiled_numba(*(_fp32(x) for x in (q, k, v)), causal, block_q, block_k, out)
        return out.astype(q.dtype)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def paged_decode_attention_reference(q, k_cache, v_cache, block_tables, context_lens) -> np.ndarray:
    """One new token per sequence attending to its cached context, gathered through its block table.

    q [batch, heads, d]; k_cache and v_cache [num_blocks, block_size, kv_heads, d]; block_tables
    [batch, max_blocks] (block ids, in order); context_lens [batch]. Token j of sequence b lives in block
    block_tables[b, j // block_size] at slot j % block_size."""
    block_size = k_cache.shape[1]
    out = np.empty(q.shape, dtype=np.float32)
    for bi in range(q.shape[0]):
        n = int(context_lens[bi])
        blocks = block_tables[bi, :(n + block_size - 1) // block_size]
        keys = k_cache[blocks].reshape(-1, *k_cache.shape[2:])[:n]  # [n, kv_heads, d]
        values = v_cache[blocks].reshape(-1, *v_cache.shape[2:])[:n]
        k4 = keys.transpose(1, 0, 2)[None]  # [1, kv_heads, n, d]
        v4 = values.transpose(1, 0, 2)[None]
        out[bi] = naive_attention(q[bi][None, :, None, :], k4, v4, causal=False)[0, :, 0].astype(np.float32)
    return out.astype(q.dtype)


@numba.njit(inline="always")
def _cache_rows(cache, block_tables, seq, token):
    """Token `token` of sequence `seq`: its [kv_heads, d] row of the paged cache, through the block table."""
    block_size = cache.shape[1]
    return cache[block_tables[seq, token // block_size], token % block_size]


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _paged_numba(q, k_cache, v_cache, block_tables, context_lens, split_tokens, out):
    """Split-KV decoding (Flash-Decoding, Dao et al. 2023): one task per (sequence, span of split_tokens
    cached tokens) serving every head, so each task reads whole cache rows ([kv_heads, d], contiguous)
    in order, and a long context keeps all cores busy even at batch 1. Each task leaves its span's
    maximum, normaliser and unnormalised output; a second pass rescales and sums the spans."""
    b, h, d = q.shape
    group = h // k_cache.shape[2]
    scale = np.float32(1.0 / math.sqrt(d))
    spans = (context_lens.max() + split_tokens - 1) // split_tokens
    m = np.full((b, spans, h), -np.inf, dtype=np.float32)
    l = np.zeros((b, spans, h), dtype=np.float32)
    acc = np.zeros((b, spans, h, d), dtype=np.float32)
    for job in numba.prange(b * spans):
        bi = job // spans
        si = job % spans
        t0 = si * split_tokens
        t1 = min(context_lens[bi], t0 + split_tokens)
        if t0 >= t1:
            continue
        qs = q[bi] * scale
        p = np.empty((t1 - t0, h), dtype=np.float32)  # token-major: one cache row's scores side by side
        top = np.full(h, -np.inf, dtype=np.float32)
        for j in range(t0, t1):
            k_rows = _cache_rows(k_cache, block_tables, bi, j)
            p_j = p[j - t0]
            for hi in range(h):
                q_row = qs[hi]
                k_row = k_rows[hi // group]
                s = np.float32(0.0)
                for x in range(d):
                    s += q_row[x] * k_row[x]
                p_j[hi] = s
                top[hi] = max(top[hi], s)
        total = np.zeros(h, dtype=np.float32)
        for j in range(t1 - t0):
            p_j = p[j]
            for hi in range(h):
                p_j[hi] = fast_exp(p_j[hi] - top[hi])
                total[hi] += p_j[hi]
        out_span = np.zeros((h, d), dtype=np.float32)
        for j in range(t0, t1):
            v_rows = _cache_rows(v_cache, block_tables, bi, j)
            p_j = p[j - t0]
            for hi in range(h):
                w = p_j[hi]
                v_row = v_rows[hi // group]
                o = out_span[hi]
                for x in range(d):
                    o[x] += w * v_row[x]
        m[bi, si] = top
        l[bi, si] = total
        acc[bi, si] = out_span
    for job in numba.prange(b * h):
        bi = job // h
        hi = job % h
        top = m[bi, :, hi].max()
        total = np.float32(0.0)
        o = np.zeros(d, dtype=np.float32)
        for si in range(spans):
            w = fast_exp(m[bi, si, hi] - top)  # an empty span has m = -inf: weight 0
            total += w * l[bi, si, hi]
            o += w * acc[bi, si, hi]
        out[bi, hi] = o / total


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, backend: str = "numpy",
                           split_tokens: int = 512) -> np.ndarray:
    """Decode attention over a paged KV cache (see `paged_decode_attention_reference`); the numba and cupy
    backends split each context into spans of split_tokens (see `_paged_numba`,
    `cuda.attention.paged_decode_attention`)."""
    if q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"heads={q.shape[1]} must be a multiple of kv_heads={k_cache.shape[2]}")
    if backend == "cupy":
        return cuda_attention.paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, split_tokens)
    if backend == "numpy":
        return paged_decode_attention_reference(q, k_cache, v_cache, block_tables, context_lens)
    if backend == "numba":
        out = np.empty(q.shape, dtype=np.float32)
        _paged_numba(_fp32(q), _fp32(k_cache), _fp32(v_cache), block_tables.astype(np.int64),
                     context_lens.astype(np.int64), split_tokens, out)
        return out.astype(q.dtype)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
