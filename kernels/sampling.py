"""Decoding kernels: logits processors with Hugging Face transformers' semantics, token selection, beam
search, contrastive search and the speculative-decoding accept/reject step.

Processors (transformers `generation/logits_process.py`), applied in the order `generate` builds them:
repetition penalty, then temperature, top-k, top-p.
- Repetition penalty (CTRL, Keskar et al. 2019): every token id present in the context, however often,
  has its logit divided by the penalty if positive and multiplied by it if negative.
- Temperature: logits / T.
- Top-k: keep the logits >= the k-th largest (ties with it are all kept, so more than k may survive);
  k is raised to `min_tokens_to_keep`.
- Top-p (nucleus, Holtzman et al. 2020): sort ascending, remove the tokens whose cumulative probability
  is <= 1 - p (the smallest set whose mass exceeds 1 - p goes), never the `min_tokens_to_keep` most likely.
Removed logits become -inf. Greedy takes the first index of the maximum (as torch.argmax does).
Logits are [batch, vocab] float32; contexts are [batch, length] int arrays with -1 for padding.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numba
import numpy as np

from ._numba_gemm import REORDER as _REORDER
from .cuda import sampling as cuda_sampling
from .fast_exp import fast_exp

BACKENDS = ("numpy", "numba", "cupy")


def repetition_penalty(logits: np.ndarray, context_ids: np.ndarray, penalty: float) -> np.ndarray:
    out = logits.copy()
    for b in range(logits.shape[0]):
        ids = np.unique(context_ids[b][context_ids[b] >= 0])
        score = out[b, ids]
        out[b, ids] = np.where(score < 0, score * penalty, score / penalty)
    return out


def top_k_filter(logits: np.ndarray, k: int, min_tokens_to_keep: int = 1) -> np.ndarray:
    k = min(max(k, min_tokens_to_keep), logits.shape[-1])
    kth = -np.partition(-logits, k - 1, axis=-1)[:, k - 1:k]
    return np.where(logits < kth, -np.inf, logits).astype(logits.dtype)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def top_p_filter(logits: np.ndarray, p: float, min_tokens_to_keep: int = 1) -> np.ndarray:
    order = np.argsort(logits, axis=-1, kind="stable")  # ascending
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    cumulative = np.cumsum(_softmax(sorted_logits), axis=-1)
    remove = cumulative <= 1 - p
    remove[:, -min_tokens_to_keep:] = False
    out = logits.copy()
    np.put_along_axis(out, order, np.where(remove, -np.inf, sorted_logits), axis=-1)
    return out


def process_logits(logits: np.ndarray, context_ids: np.ndarray | None = None, *, repetition: float = 1.0,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_tokens_to_keep: int = 1,
                   backend: str = "numpy") -> np.ndarray:
    """The processors above, in transformers' order; a neutral value (1.0, 0, 1.0) skips a processor.
    numpy: the functions above; numba: compiled passes, rows in parallel; cupy: CuPy arrays on the GPU
    (`cuda.sampling.process_logits`)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy for 0), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if backend == "cupy":
        return cuda_sampling.process_logits(logits, context_ids, repetition, temperature, top_k, top_p,
                                            min_tokens_to_keep)
    logits = np.asarray(logits, dtype=np.float32)
    if context_ids is None:
        context_ids = np.full((logits.shape[0], 1), -1, dtype=np.int64)
    if backend == "numba":
        # The passes over the vocabulary run compiled, rows in parallel; the sort is NumPy's vectorised
        # sort of 64-bit keys (see `_order_keys`), rows on parallel threads.
        out = logits.copy()
        _penalise_and_scale(out, np.asarray(context_ids, dtype=np.int64), repetition, temperature)
        if top_k > 0:
            k = min(max(top_k, min_tokens_to_keep), out.shape[1])
            _drop_below(out, -np.partition(-out, k - 1, axis=1)[:, k - 1])
        if top_p < 1.0:
            _nucleus(out, _sort_rows(_order_keys(out)), top_p, min_tokens_to_keep)
        return out
    if backend != "numpy":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if repetition != 1.0:
        logits = repetition_penalty(logits, context_ids, repetition)
    if temperature != 1.0:
        logits = logits / np.float32(temperature)
    if top_k > 0:
        logits = top_k_filter(logits, top_k, min_tokens_to_keep)
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p, min_tokens_to_keep)
    return logits


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _penalise_and_scale(logits, context_ids, repetition, temperature):
    batch, vocab = logits.shape
    for b in numba.prange(batch):
        row = logits[b]
        if repetition != 1.0:
            seen = np.zeros(vocab, dtype=np.bool_)
            for t in range(context_ids.shape[1]):
                i = context_ids[b, t]
                if i >= 0 and not seen[i]:
                    seen[i] = True
                    row[i] = row[i] * repetition if row[i] < 0 else row[i] / repetition
        if temperature != 1.0:
            for i in range(vocab):
                row[i] = row[i] / np.float32(temperature)


@numba.njit(parallel=True, cache=True)
def _drop_below(logits, threshold):
    for b in numba.prange(logits.shape[0]):
        for i in range(logits.shape[1]):
            if logits[b, i] < threshold[b]:
                logits[b, i] = -np.inf


@numba.njit(parallel=True, cache=True)
def _order_keys(logits):
    """One uint64 per logit whose ascending order is the stable ascending order of the logits: the
    float's bits made order-preserving as an unsigned integer (negative floats inverted, positive ones
    with the sign bit set) above the token index, so ties keep index order as a stable sort does. A
    sort of these plain integers runs on NumPy's SIMD sort, several times faster than an argsort."""
    batch, vocab = logits.shape
    bits = logits.view(np.uint32)
    keys = np.empty((batch, vocab), dtype=np.uint64)
    for b in numba.prange(batch):
        for i in range(vocab):
            u = bits[b, i]
            u = ~u if u >> np.uint32(31) else u | np.uint32(0x80000000)
            keys[b, i] = (np.uint64(u) << np.uint64(32)) | np.uint64(i)
    return keys


@lru_cache(maxsize=1)
def _sorting_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="infersim-sort")


def _sort_rows(keys: np.ndarray) -> np.ndarray:
    """Each row sorted in place, rows spread over threads (NumPy's sort releases the GIL, and sorts the
    rows of one call one after another on one core)."""
    if len(keys) == 1:
        keys.sort(axis=1)
    else:
        list(_sorting_threads().map(np.ndarray.sort, keys))
    return keys


@numba.njit(parallel=True, fastmath=_REORDER, cache=True)
def _nucleus(logits, sorted_keys, top_p, min_keep):
    """Top-p given each row's ascending order (the low 32 bits of its sorted keys): one pass computes the
    exponentials and their sum, one walks up the order removing tokens until the mass passes 1 - p."""
    batch, vocab = logits.shape
    for b in numba.prange(batch):
        row = logits[b]
        top = row.max()
        e = np.empty(vocab, dtype=np.float32)
        total = 0.0
        for i in range(vocab):
            e[i] = fast_exp(row[i] - top)
            total += e[i]
        cut = (1 - top_p) * total  # cumulative probability > 1 - p, in unnormalised mass
        cumulative = 0.0
        for r in range(vocab - min_keep):
            i = np.int64(sorted_keys[b, r] & np.uint64(0xFFFFFFFF))
            cumulative += e[i]
            if cumulative > cut:
                break
            row[i] = -np.inf


def greedy(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=-1)


def sample(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One token per row from softmax(logits), by inverting the CDF at a uniform draw."""
    probs = _softmax(np.asarray(logits, dtype=np.float64))
    u = rng.random((probs.shape[0], 1))
    return np.minimum((np.cumsum(probs, axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(next_logits, prompt: list[int], beams: int, max_new_tokens: int, length_penalty: float = 1.0,
                eos_id: int | None = None) -> tuple[list[int], float]:
    """Beam search with transformers' semantics: each step extends every open beam by its 2 x beams best
    tokens and keeps the `beams` best by summed log-probability; a candidate ending in `eos_id` among the
    top `beams` is finished, scored sum_logprob / generated_length ** length_penalty (> 0 favours longer
    sequences); the search stops when no open beam can beat the worst kept finished one, or after
    `max_new_tokens` (open beams are then finished as they are). `next_logits(list of token lists) ->
    [n, vocab]`. Returns the best (tokens, score)."""
    open_beams = [(list(prompt), 0.0)]
    finished: list[tuple[list[int], float]] = []

    def finish(tokens: list[int], total: float) -> None:
        finished.append((tokens, total / (len(tokens) - len(prompt)) ** length_penalty))
        finished.sort(key=lambda f: -f[1])
        del finished[beams:]

    for step in range(1, max_new_tokens + 1):
        logp = _log_softmax(next_logits([tokens for tokens, _ in open_beams]))
        candidates = [(score + logp[i, v], i, int(v)) for i, (_, score) in enumerate(open_beams)
                      for v in np.argsort(-logp[i], kind="stable")[:2 * beams]]
        candidates.sort(key=lambda c: -c[0])
        kept = []
        for rank, (total, i, v) in enumerate(candidates):
            tokens = open_beams[i][0] + [v]
            if v == eos_id:
                if rank < beams:
                    finish(tokens, total)
            else:
                kept.append((tokens, total))
            if len(kept) == beams:
                break
        open_beams = kept
        best_open = max(score for _, score in open_beams) / step ** length_penalty
        if len(finished) == beams and finished[-1][1] >= best_open:
            break
    for tokens, total in open_beams:
        finish(tokens, total)
    return finished[0]


def contrastive_search(model, prompt: list[int], top_k: int, alpha: float, max_new_tokens: int) -> list[int]:
    """Contrastive search (Su et al. 2022, Eq. 5): among the top-k next tokens pick
    argmax (1 - alpha) p(v | x) - alpha max_j cos(h_v, h_j), where h_v is the model's hidden state with v
    appended and h_j those of the tokens so far; alpha = 0 is greedy decoding. `model(tokens) ->
    (next-token logits [vocab], hidden states [len(tokens), d])`."""
    tokens = list(prompt)
    for _ in range(max_new_tokens):
        logits, hidden = model(tokens)
        probs = _softmax(np.asarray(logits, dtype=np.float64)[None])[0]
        candidates = np.argsort(-probs, kind="stable")[:top_k]
        context = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
        best, best_score = -1, -np.inf
        for v in candidates:
            h_v = model(tokens + [int(v)])[1][-1]
            degeneration = float(np.max(context @ (h_v / np.linalg.norm(h_v))))
            score = (1 - alpha) * probs[v] - alpha * degeneration
            if score > best_score:
                best, best_score = int(v), score
        tokens.append(best)
    return tokens


def speculative_accept(draft_tokens: np.ndarray, draft_probs: np.ndarray, target_probs: np.ndarray,
                       rng: np.random.Generator) -> list[int]:
    """One verification step of speculative decoding (Leviathan et al. 2023, Algorithm 1): the draft
    proposed tokens x_1..x_g with probabilities q_i; the target's p_1..p_(g+1) come from one forward pass.
    Accept x_i while u_i < p_i(x_i) / q_i(x_i); at the first rejection emit a token from
    normalise(max(0, p_i - q_i)) and stop; if all are accepted, emit one more from p_(g+1). The emitted
    tokens are distributed exactly as the target model would sample them."""
    out = []
    for i, x in enumerate(draft_tokens):
        if rng.random() < min(1.0, target_probs[i, x] / draft_probs[i, x]):
            out.append(int(x))
            continue
        residual = np.maximum(target_probs[i] - draft_probs[i], 0)
        out.append(int(rng.choice(len(residual), p=residual / residual.sum())))
        return out
    out.append(int(rng.choice(target_probs.shape[1], p=target_probs[-1])))
    return out
