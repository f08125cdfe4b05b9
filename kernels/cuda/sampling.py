"""CuPy GPU logits processors with the signature of `kernels.sampling.process_logits`: repetition
penalty, temperature and top-k in CuPy, top-p by a sort-free radix select: a block per row (`top_p.cu`)
for batches that fill the SMs, each row split over many blocks (`top_p_split.cu`, not yet run on a GPU,
emulated by `kernels.split_row_top_p`) for smaller ones."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..device import require, sm_count
from ..split_row_top_p import BUCKETS, LEVELS, THREADS, slices_for
from .compile import compiled

_SELECT_WORDS = 8  # 4-byte fields of top_p_split.cu's struct Select
# Blocks an H100/H200 SM holds at once (2048 threads): the split kernels' 256 threads -> 8, top_p.cu's 1024 -> 2
SPLIT_BLOCKS_PER_SM, ROW_BLOCKS_PER_SM = 8, 2


class TopPGrid(NamedTuple):
    thread_blocks: int
    launches: int
    blocks_per_sm: int


def top_p_grid(batch: int, vocab: int, sms: int) -> TopPGrid:
    """The thread blocks and kernel launches of top-p on `sms` SMs: a block per row in one launch when the
    batch fills the SMs; else (slices, rows) blocks in seven launches (zeroing the scratch, row maximum, four
    levels, mask)."""
    if batch >= sms:
        return TopPGrid(batch, 1, ROW_BLOCKS_PER_SM)
    return TopPGrid(batch * slices_for(batch, vocab, sms), 3 + LEVELS, SPLIT_BLOCKS_PER_SM)


def split_row_top_p(out, p: float, min_keep: int) -> None:
    """Top-p of CuPy fp32 logits [batch, vocab] in place, each row over `slices_for` blocks (`top_p_split.cu`)."""
    cp = require()
    batch, vocab = out.shape
    slices = slices_for(batch, vocab, sm_count())
    hist = LEVELS * batch * BUCKETS
    sizes = (batch, hist, hist, hist, 2 * batch * slices * BUCKETS, LEVELS * batch * _SELECT_WORDS)
    scratch = cp.zeros(sum(sizes), dtype=cp.uint32)
    row_max, hist_mass, count_p, count_c, slice_counts, states = (
        scratch[start:start + size] for start, size in zip(np.cumsum((0,) + sizes[:-1]), sizes))
    hist_mass = hist_mass.view(cp.float32)
    grid, common = (slices, batch), (np.int32(vocab), np.int32(slices))
    compiled("top_p_split.cu", "row_max")(grid, (THREADS,), (out, *common, row_max))
    for level in range(LEVELS):
        compiled("top_p_split.cu", "top_p_level")(
            grid, (THREADS,), (out, *common, np.int32(level), np.float32(p), np.int32(min_keep), row_max, hist_mass,
                               count_p, count_c, slice_counts, states))
    compiled("top_p_split.cu", "top_p_mask")(
        grid, (THREADS,), (out, *common, np.float32(p), np.int32(min_keep), row_max, hist_mass, count_p, count_c,
                           slice_counts, states))


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
    if top_p < 1.0:  # in place: the kernels take a C-contiguous fp32 [batch, vocab] array
        batch, vocab = out.shape
        min_keep = min(min_tokens_to_keep, vocab)
        if batch < sm_count():
            split_row_top_p(out, top_p, min_keep)
        else:
            compiled("top_p.cu", "top_p")((batch,), (1024,), (out, np.int32(vocab), np.float32(top_p),
                                                               np.int32(min_keep)))
    return out
