"""A NumPy emulation of the tensor-core attention kernel (`cuda/attention_mma.cu`), tile for tile and in its
arithmetic order, so that the kernel's CPU-checkable part, its algorithm, is tested where no GPU is.

The kernel is FlashAttention-2's Algorithm 1 (Dao 2023) on WMMA 16x16x16 fragments: fp16 Q, K, V; a block
per 64 query rows (a warp per 16) walking 32-key tiles; S = Q K^T accumulated in fp32 over 16-dimension
chunks; S scaled by 1/sqrt(d) in fp32 and masked (causal end-aligned, keys past the end); the online
softmax in fp32 (m' = max(m, rowmax S), P = exp(S - m'), l = e^(m - m') l + rowsum P, rowsum over the
unrounded P); O = e^(m - m') O, then O += P V with P rounded to fp16, accumulated in fp32 over 16-key
chunks; finally O / l rounded to fp16. Sums inside a fragment run in whatever order the tensor core
adds, so the emulation agrees with the kernel to fp32 rounding, not bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

BLOCK_M = 64  # query rows per thread block: 4 warps of 16
BLOCK_N = 32  # keys per tile
FRAGMENT = 16  # WMMA's m = n = k


def check_head_dim(d: int) -> None:
    """The kernel is compiled per head size; its fragments and shared-memory tiles take 16 to 128 in steps of 16."""
    if d % FRAGMENT or not FRAGMENT <= d <= 128:
        raise ValueError(f"the tensor-core attention kernel takes head_dim 16, 32, ..., 128 (a multiple of 16), got {d}")


def _fragment_products(a: np.ndarray, b: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """acc + a @ b accumulated in fp32 one 16-wide chunk of the inner dimension at a time, as a chain of
    mma_sync calls on 16x16x16 fragments adds them."""
    for c in range(0, a.shape[-1], FRAGMENT):
        acc = acc + a[..., c:c + FRAGMENT] @ b[..., c:c + FRAGMENT, :]
    return acc


def tensor_core_attention_emulated(q, k, v, causal: bool = True) -> np.ndarray:
    """Attention as `cuda/attention_mma.cu` computes it (module docstring); q [b, h, s, d], k and v
    [b, kv_h, t, d] of any float dtype, rounded to fp16 first; returns fp16 [b, h, s, d]."""
    b, h, s, d = q.shape
    kv_h, t = k.shape[1], k.shape[2]
    check_head_dim(d)
    if h % kv_h:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={kv_h}")
    group, offset = h // kv_h, t - s
    scale = np.float32(1 / math.sqrt(d))
    q16, k16, v16 = (np.asarray(x).astype(np.float16).astype(np.float32) for x in (q, k, v))
    out = np.empty((b, h, s, d), dtype=np.float16)
    for q0 in range(0, s, BLOCK_M):
        rows = np.arange(q0, q0 + BLOCK_M)  # the block's rows, padded past s as the kernel pads them with zeros
        qt = np.zeros((b, h, BLOCK_M, d), dtype=np.float32)
        qt[:, :, :min(BLOCK_M, s - q0)] = q16[:, :, q0:q0 + BLOCK_M]
        m = np.full((b, h, BLOCK_M, 1), -np.inf, dtype=np.float32)
        l = np.zeros_like(m)
        o = np.zeros((b, h, BLOCK_M, d), dtype=np.float32)
        k_end = min(t, q0 + BLOCK_M + offset) if causal else t
        for k0 in range(0, k_end, BLOCK_N):
            keys = np.arange(k0, k0 + BLOCK_N)
            kt = np.zeros((b, kv_h, BLOCK_N, d), dtype=np.float32)
            vt = np.zeros_like(kt)
            kt[:, :, :min(BLOCK_N, t - k0)] = k16[:, :, k0:k0 + BLOCK_N]
            vt[:, :, :min(BLOCK_N, t - k0)] = v16[:, :, k0:k0 + BLOCK_N]
            kt, vt = np.repeat(kt, group, axis=1), np.repeat(vt, group, axis=1)
            st = _fragment_products(qt, kt.swapaxes(-1, -2), np.zeros((b, h, BLOCK_M, BLOCK_N), np.float32)) * scale
            visible = (keys[None, :] < t) & ((keys[None, :] <= rows[:, None] + offset) if causal else True)
            st = np.where(visible, st, np.float32(-np.inf))
            m_new = np.maximum(m, st.max(axis=-1, keepdims=True))  # finite: key 0 is visible to every row
            p = np.exp(st - m_new)
            alpha = np.exp(m - m_new)
            l = alpha * l + p.sum(axis=-1, keepdims=True)
            o = _fragment_products(p.astype(np.float16).astype(np.float32), vt, alpha * o)
            m = m_new
        out[:, :, q0:q0 + BLOCK_M] = (o / l)[:, :, :min(BLOCK_M, s - q0)].astype(np.float16)
    return out
