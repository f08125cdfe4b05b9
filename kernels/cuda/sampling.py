"""CuPy GPU logits processors with the signature of `kernels.sampling.process_logits`: repetition
penalty, temperature and top-k in CuPy, top-p by a sort-free radix select (`top_p.cu`)."""
from __future__ import annotations

import numpy as np

from ..device import require
from .compile import compiled


def process_logits(logits, context_ids, repetition: float, temperature: float, top_k: int, top_p: float,
                   min_tokens_to_keep: int):
    """transformers' processors in its order on CuPy arrays (see kernels.sampling.process_logits)."""
    cp = require()
    out = cp.array(logits, dtype=cp.float32)  # a copy: the caller's logits stay as they were
    if repetition != 1.0 and context_ids is not None:
        context = cp.asarray(context_ids)
        for b in range(out.shape[0]):
            ids = cp.unique(context[b][context[b] >= 0])  # a token penalised once however often it occurs
            score = out[b, ids]
            out[b, ids] = cp.where(score < 0, score * repetition, score / repetition)
    if temperature != 1.0:
        out /= cp.float32(temperature)
    if top_k > 0:
        k = min(max(top_k, min_tokens_to_keep), out.shape[1])
        kth = -cp.partition(-out, k - 1, axis=1)[:, k - 1:k]
        out = cp.where(out < kth, cp.float32(-cp.inf), out)
    if top_p < 1.0:  # in place: the kernel takes a C-contiguous fp32 [batch, vocab] array
        batch, vocab = out.shape
        compiled("top_p.cu", "top_p")((batch,), (1024,), (out, np.int32(vocab), np.float32(top_p),
                                                           np.int32(min(min_tokens_to_keep, vocab))))
    return out
