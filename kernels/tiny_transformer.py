"""A tiny decoder-only transformer with fixed random weights, the model the decoding kernels run on.

Token and position embeddings, `layers` residual blocks of causal multi-head self-attention (the attention
kernel's NumPy reference) and a ReLU MLP, and a head tied to the embedding (as GPT-2 ties it). Every
layer's hidden state can be read out through the same head, which is what early-exit decoding needs (CALM,
Schuster et al. 2022, reads intermediate layers through the shared softmax head). It has no KV cache: each
call recomputes the prefix, which is exact for a causal model and keeps the reference plain.
"""
from __future__ import annotations

import numpy as np

from infersim.kernels.attention import naive_attention


class TinyTransformer:
    """Weights drawn once from `seed`; `layers=1` draws exactly the one-layer model the tests started with."""

    def __init__(self, vocab: int = 12, dim: int = 8, heads: int = 2, layers: int = 1, max_len: int = 64,
                 seed: int = 0):
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        rng = np.random.default_rng(seed)
        self.embed = rng.standard_normal((vocab, dim)).astype(np.float32)
        self.pos = 0.1 * rng.standard_normal((max_len, dim)).astype(np.float32)
        self.blocks = [self._draw_block(rng, dim) for _ in range(layers)]
        self.heads = heads

    @staticmethod
    def _draw_block(rng: np.random.Generator, dim: int) -> dict[str, np.ndarray]:
        return {"qkv": (rng.standard_normal((dim, 3 * dim)) / np.sqrt(dim)).astype(np.float32),
                "mlp_in": (rng.standard_normal((dim, 4 * dim)) / np.sqrt(dim)).astype(np.float32),
                "mlp_out": (rng.standard_normal((4 * dim, dim)) / np.sqrt(4 * dim)).astype(np.float32)}

    @property
    def layers(self) -> int:
        return len(self.blocks)

    @property
    def vocab(self) -> int:
        return self.embed.shape[0]

    def embed_tokens(self, tokens) -> np.ndarray:
        """Layer 0's input: token plus position embeddings, [len(tokens), dim]."""
        return self.embed[list(tokens)] + self.pos[:len(tokens)]

    def layer(self, index: int, x: np.ndarray) -> np.ndarray:
        """Block `index` over a whole causal prefix x [n, dim]: x + attn(x), then + mlp."""
        block = self.blocks[index]
        n, d = x.shape
        q, k, v = (t.reshape(n, self.heads, d // self.heads).transpose(1, 0, 2)[None]
                   for t in np.split(x @ block["qkv"], 3, axis=1))
        x = x + naive_attention(q, k, v, causal=True)[0].transpose(1, 0, 2).reshape(n, d)
        return x + np.maximum(x @ block["mlp_in"], 0) @ block["mlp_out"]

    def hidden_states(self, tokens) -> list[np.ndarray]:
        """Every layer's output for every position: [layers] arrays of [len(tokens), dim]."""
        x = self.embed_tokens(tokens)
        states = []
        for index in range(self.layers):
            x = self.layer(index, x)
            states.append(x)
        return states

    def head(self, hidden: np.ndarray) -> np.ndarray:
        """Logits of hidden states through the tied head: hidden @ embed^T."""
        return hidden @ self.embed.T

    def hidden(self, tokens) -> np.ndarray:
        """The last layer's hidden states, [len(tokens), dim]."""
        return self.hidden_states(tokens)[-1]

    def position_logits(self, tokens) -> np.ndarray:
        """Next-token logits at every position, [len(tokens), vocab]: one parallel pass."""
        return self.head(self.hidden(tokens))

    def __call__(self, tokens) -> tuple[np.ndarray, np.ndarray]:
        """(next-token logits [vocab], final hidden states [len(tokens), dim]): contrastive search's model."""
        h = self.hidden(tokens)
        return self.head(h[-1]), h

    def logits(self, sequences) -> np.ndarray:
        """Next-token logits of several sequences, [len(sequences), vocab]: beam search's model."""
        return np.stack([self(s)[0] for s in sequences])


def greedy_decode(model: TinyTransformer, prompt, new_tokens: int) -> list[int]:
    """Plain autoregressive greedy decoding, one full pass per token: the reference the faster decoders
    (Jacobi, early exit, speculative) are checked against."""
    tokens = list(prompt)
    for _ in range(new_tokens):
        tokens.append(int(np.argmax(model(tokens)[0])))
    return tokens
