"""Jacobi decoding: greedy decoding as a fixed point solved a block of tokens at a time.

Santilli et al. 2023 ("Accelerating Transformer Inference for Translation via Parallel Decoding",
Sec. 3, Algorithm 1) write greedy decoding of m tokens as m equations y_i = argmax p(. | x, y_1..y_(i-1))
and solve them by Jacobi iteration: guess all m, then in one parallel pass over prompt + guesses replace
every guess by the model's greedy prediction at its position. After pass k the first k tokens are right
(each depends only on the ones before it), so the block is exact after at most m passes; it stops earlier
at a fixed point, a pass that changes no guess (the greedy tokens are the system's only fixed point). Fu et
al. 2024 (Lookahead decoding, Sec. 2) iterate the same fixed point. Each block's guesses start as the last
token of the sequence so far, repeated m times.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JacobiResult:
    """`tokens`: prompt + new tokens, as greedy_decode returns them; `passes`: sequential model passes in
    all (greedy decoding spends one per new token); `block_passes`: the passes each block took."""
    tokens: list[int]
    passes: int
    block_passes: tuple[int, ...]


def jacobi_block(model, tokens: list[int], block_size: int) -> tuple[list[int], int]:
    """One block of Santilli et al.'s Algorithm 1: (the block's greedy tokens, passes it took).
    `model.position_logits(tokens) -> [len(tokens), vocab]` is one parallel pass."""
    guesses = [tokens[-1]] * block_size
    first = len(tokens) - 1  # the logits at position i predict token i + 1
    for passes in range(1, block_size + 1):
        logits = model.position_logits(tokens + guesses)[first:first + block_size]
        predictions = [int(v) for v in np.argmax(logits, axis=-1)]
        if predictions == guesses:
            break
        guesses = predictions
    return guesses, passes


def jacobi_decode(model, prompt, max_new_tokens: int, block_size: int) -> JacobiResult:
    """Greedy decoding of `max_new_tokens` by Jacobi iteration over blocks of `block_size` guesses (the last
    block is shorter when block_size does not divide max_new_tokens); block_size 1 is plain greedy."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not len(prompt):
        raise ValueError("prompt must hold at least one token, got an empty prompt")
    tokens = list(prompt)
    block_passes = []
    while len(tokens) - len(prompt) < max_new_tokens:
        block, passes = jacobi_block(model, tokens, min(block_size, max_new_tokens - len(tokens) + len(prompt)))
        tokens += block
        block_passes.append(passes)
    return JacobiResult(tokens, sum(block_passes), tuple(block_passes))
