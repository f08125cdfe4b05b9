"""Contrastive decoding (Li et al. 2023, "Contrastive Decoding: Open-ended Text Generation as Optimization"):
greedy search over the difference between a large expert's and a small amateur's log-probabilities,
restricted to the tokens the expert finds plausible.

Eq. 2-4: V_head = {v : p_expert(v) >= alpha * max_w p_expert(w)};
score(v) = log p_expert(v) - log p_amateur(v) on V_head and -inf outside it. The plausibility test needs no
normalisation, since p_expert(v) / max_w p_expert(w) = exp(z_v - max_w z_w) for the expert's logits z.
Ties in the score go to the lowest token id (numpy's argmax), so an amateur identical to the expert scores
0 on all of V_head and picks its first token, not necessarily the expert's argmax.
"""
from __future__ import annotations

import numpy as np

from .sampling import log_softmax


def contrastive_scores(expert_logits: np.ndarray, amateur_logits: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 2-4 for a batch: expert and amateur logits [n, vocab] -> contrastive scores [n, vocab] (float64),
    -inf outside each row's plausible set. alpha in (0, 1]; alpha = 1 keeps only the expert's argmax."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    expert_logits = np.asarray(expert_logits, dtype=np.float64)
    plausible = expert_logits - expert_logits.max(axis=-1, keepdims=True) >= np.log(alpha)
    return np.where(plausible, log_softmax(expert_logits) - log_softmax(amateur_logits), -np.inf)


def contrastive_decode(expert, amateur, prompt: list[int], alpha: float, max_new_tokens: int,
                       eos_id: int | None = None) -> list[int]:
    """Greedy contrastive decoding: each new token is the argmax of `contrastive_scores`; a chosen `eos_id`
    is appended and ends the search. `expert(tokens)` and `amateur(tokens)` return next-token logits [vocab]
    (a TinyTransformer as `lambda t: model(t)[0]`). Cost: one expert pass plus one amateur pass per token
    (with a KV cache, one decode step of each; the amateur is the small model, so the overhead over plain
    greedy decoding is the amateur's share)."""
    tokens = list(prompt)
    for _ in range(max_new_tokens):
        scores = contrastive_scores(expert(tokens)[None], amateur(tokens)[None], alpha)[0]
        tokens.append(int(np.argmax(scores)))
        if tokens[-1] == eos_id:
            break
    return tokens
