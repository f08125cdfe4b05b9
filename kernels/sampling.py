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
from typing import NamedTuple

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


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis in float64, shifted by the row maximum so no exponential overflows."""
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _Beam(NamedTuple):
    """An open beam: its tokens and the sum of its generated tokens' (processed) log-probabilities."""
    tokens: list[int]
    logprob: float


class Hypothesis(NamedTuple):
    """A finished beam: the prompt, the generated tokens (ending in EOS when EOS finished it) and its score,
    sum of (processed) log-probabilities / generated_length ** length_penalty, EOS counted in the length."""
    tokens: list[int]
    score: float


def _search_is_done(finished: list[Hypothesis], best_open_logprob: float, step: int, beams: int,
                    max_new_tokens: int, length_penalty: float, early_stopping: bool | str) -> bool:
    """transformers' stopping rule (`BeamHypotheses.is_done` in `generation/beam_search.py`,
    `_check_early_stop_heuristic` in `generation/utils.py`): never before `beams` hypotheses are finished;
    then True stops at once; False stops once the best open beam, scored at the current length, cannot beat
    the worst finished one; "never" makes that bound exact by scoring it at the longest length it could
    reach when length_penalty > 0 (a longer divisor lifts a negative sum), at the current one otherwise."""
    if len(finished) < beams:
        return False
    if early_stopping is True:
        return True
    length = max_new_tokens if early_stopping == "never" and length_penalty > 0 else step
    return finished[-1].score >= best_open_logprob / length ** length_penalty


def beam_search_all(next_logits, prompt: list[int], beams: int, max_new_tokens: int, length_penalty: float = 1.0,
                    eos_id: int | None = None, early_stopping: bool | str = False, num_return_sequences: int = 1,
                    process=None) -> list[Hypothesis]:
    """Beam search with transformers' semantics (`generation/utils.py` `_beam_search`, `generation/beam_search.py`
    `BeamSearchScorer` and `BeamHypotheses`). Each step takes log_softmax of every open beam's logits, passes
    it through `process(logprobs [n, vocab], sequences) -> logprobs` if given, adds the beams' running sums,
    extends every beam by its 2 x beams best tokens and keeps the `beams` best non-EOS candidates open; a
    candidate ending in `eos_id` among the top `beams` is finished (EOS kept, counted in the length). The
    `beams` best finished hypotheses are kept; the search stops by `_search_is_done`'s rule for
    `early_stopping` (True, False or "never"), or after `max_new_tokens`, when the open beams are finished as
    they are (not after an early stop: then they cannot win). Returns the `num_return_sequences` best, best
    first.

    `process` stands for transformers' logits processors, which beam search applies to the log-probabilities
    and does not renormalise; without sampling transformers builds no temperature, top-k or top-p warpers, so
    the processors that matter are penalties such as `repetition_penalty`: pass
    `lambda logprobs, seqs: repetition_penalty(logprobs, np.array(seqs), 1.3)` (open beams share one length).
    `next_logits(list of token lists) -> [n, vocab]`."""
    if not (isinstance(early_stopping, bool) or early_stopping == "never"):
        raise ValueError(f"early_stopping must be one of True, False, 'never', got {early_stopping!r}")
    if not 1 <= num_return_sequences <= beams:
        raise ValueError(f"num_return_sequences must be between 1 and beams ({beams}), got {num_return_sequences}")
    open_beams = [_Beam(list(prompt), 0.0)]
    finished: list[Hypothesis] = []

    def finish(beam: _Beam) -> None:
        score = beam.logprob / (len(beam.tokens) - len(prompt)) ** length_penalty
        finished.append(Hypothesis(beam.tokens, float(score)))
        finished.sort(key=lambda h: -h.score)
        del finished[beams:]

    for step in range(1, max_new_tokens + 1):
        sequences = [beam.tokens for beam in open_beams]
        logp = log_softmax(next_logits(sequences))
        if process is not None:
            logp = process(logp, sequences)
        candidates = [_Beam(beam.tokens + [int(v)], beam.logprob + logp[i, v]) for i, beam in enumerate(open_beams)
                      for v in np.argsort(-logp[i], kind="stable")[:2 * beams]]
        candidates.sort(key=lambda c: -c.logprob)
        kept = []
        for rank, candidate in enumerate(candidates):
            if candidate.tokens[-1] == eos_id:
                if rank < beams:
                    finish(candidate)
            else:
                kept.append(candidate)
            if len(kept) == beams:
                break
        open_beams = kept
        if _search_is_done(finished, open_beams[0].logprob, step, beams, max_new_tokens, length_penalty,
                           early_stopping):
            break
    else:
        for beam in open_beams:
            finish(beam)
    return finished[:num_return_sequences]


def beam_search(next_logits, prompt: list[int], beams: int, max_new_tokens: int, length_penalty: float = 1.0,
                eos_id: int | None = None, early_stopping: bool | str = False, process=None) -> Hypothesis:
    """The best hypothesis of `beam_search_all`: (tokens, score)."""
    return beam_search_all(next_logits, prompt, beams, max_new_tokens, length_penalty, eos_id, early_stopping,
                           process=process)[0]


def contrastive_search(model, prompt: list[int], top_k: int, alpha: float, max_new_tokens: int,
                       eos_id: int | None = None) -> list[int]:
    """Contrastive search (Su et al. 2022, Eq. 5): among the top-k next tokens pick
    argmax (1 - alpha) p(v | x) - alpha max_j cos(h_v, h_j), where h_v is the model's hidden state with v
    appended and h_j those of the tokens so far; alpha = 0 is greedy decoding. A chosen `eos_id` is appended
    and ends the search (transformers' `_contrastive_search` with its EOS stopping criterion).
    `model(tokens) -> (next-token logits [vocab], hidden states [len(tokens), d])`."""
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
        if best == eos_id:
            break
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
