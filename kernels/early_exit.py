"""Early-exit decoding: each new token leaves the network at the first layer that is confident enough.

CALM (Schuster et al. 2022, "Confident Adaptive Language Modeling", Sec. 3) reads every layer's hidden
state through the shared softmax head and exits at the first layer whose confidence passes a threshold;
LayerSkip (Elhoushi et al. 2024) exits the same way from one shared head. The confidence here is the
entropy (nats) of that distribution: a token exits after the first layer whose entropy is strictly below
`threshold`, and the last layer always exits, so threshold <= 0 is full depth (an entropy is never
negative) and threshold = inf exits every token after layer 1.

Layers a token skipped still owe later tokens their keys and values, which come from each layer's input
states. Two policies fill them:
- "copy": CALM's state propagation (Sec. 3): the exiting hidden state becomes the token's input to every
  deeper layer, at no cost.
- "recompute": a skipped layer's state is computed when a later token first needs it (when that token
  reaches the layer), one layer-pass per (position, layer); every state is then the full model's, and only
  the exit decisions differ from full-depth decoding.

A batch runs as deep as its deepest token: `batched_exit_depth` gives that depth, and
infersim.roofline.early_exit.expected_batch_depth its mean under i.i.d. exits, the reason batching erodes early exit's saving.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tiny_transformer import greedy_decode

POLICIES = ("copy", "recompute")


@dataclass(frozen=True)
class EarlyExitResult:
    """`tokens`: prompt + new tokens; `exit_layers`: the layer (1-based) each new token exited after;
    `layer_passes`: one per (position, layer) computed while decoding, recomputed ones included (the
    prompt's prefill is not counted); `recomputed_layer_passes`: those of the recompute policy;
    `agreement`: the fraction of new-token positions equal to full-depth greedy decoding's."""
    tokens: list[int]
    exit_layers: tuple[int, ...]
    layer_passes: int
    recomputed_layer_passes: int
    agreement: float


def entropy_nats(logits: np.ndarray) -> float:
    """Entropy of softmax(logits), -sum p log p, in nats."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    log_p = shifted - np.log(np.exp(shifted).sum())
    return float(-(np.exp(log_p) * log_p).sum())


def early_exit_decode(model, prompt, max_new_tokens: int, threshold: float,
                      policy: str = "copy") -> EarlyExitResult:
    """Greedy decoding with an entropy early exit after every layer (CALM, Sec. 3). `model` is a
    TinyTransformer: `embed_tokens`, `layer(index, prefix states) -> states` (causal, so the last row of a
    prefix is that position's state), `head` and `layers`. The prompt's positions but the last are
    prefilled at full depth; each new token's step runs the last position up the layers."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if np.isnan(threshold):
        raise ValueError("threshold must be a number of nats (<= 0: full depth, inf: exit at layer 1), got nan")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not len(prompt):
        raise ValueError("prompt must hold at least one token, got an empty prompt")
    tokens = list(prompt)
    depth = model.layers
    prefix = tokens[:-1]
    # states[l, q]: position q's input to layer l (states[depth, q] its last output), valid for l <= filled[q]
    embedded = model.embed_tokens(tokens)
    states = np.zeros((depth + 1, len(prefix) + max_new_tokens, embedded.shape[1]), dtype=embedded.dtype)
    if prefix:
        states[:, :len(prefix)] = np.stack([embedded[:-1], *model.hidden_states(prefix)])
    filled = [depth] * len(prefix)
    exit_layers, recomputed = [], 0
    for _ in range(max_new_tokens):
        p = len(tokens) - 1
        states[0, p] = model.embed_tokens(tokens)[p]
        filled.append(0)
        for index in range(depth):
            for q in range(p):
                if filled[q] < index:  # only the recompute policy leaves states missing
                    states[index, q] = model.layer(index - 1, states[index - 1, :q + 1])[-1]
                    filled[q] = index
                    recomputed += 1
            states[index + 1, p] = model.layer(index, states[index, :p + 1])[-1]
            filled[p] = index + 1
            logits = model.head(states[index + 1, p])
            if index == depth - 1 or entropy_nats(logits) < threshold:
                break
        if policy == "copy":
            states[index + 2:, p] = states[index + 1, p]
            filled[p] = depth
        exit_layers.append(index + 1)
        tokens.append(int(np.argmax(logits)))
    new = tokens[len(prompt):]
    reference = greedy_decode(model, prompt, max_new_tokens)[len(prompt):]
    agreement = float(np.mean([a == b for a, b in zip(new, reference)])) if new else 1.0
    return EarlyExitResult(tokens, tuple(exit_layers), sum(exit_layers) + recomputed, recomputed, agreement)


def batched_exit_depth(exit_layers) -> int:
    """The layers a batch's decode step runs: its deepest token's exit layer (a batch computes a layer
    while any of its tokens still needs it)."""
    if not len(exit_layers) or min(exit_layers) < 1:
        raise ValueError(f"exit_layers must be a non-empty list of layers >= 1, got {list(exit_layers)}")
    return int(max(exit_layers))
