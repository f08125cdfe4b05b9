"""The sequences a replica is decoding, as parallel NumPy arrays (one row per sequence), so that a run of
decode steps updates every sequence with a few array operations instead of a Python loop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FIELDS = ("request", "context_tokens", "remaining_tokens", "blocks", "copy_on_write", "last_token_s", "max_itl_s")


@dataclass
class Rows:
    request: np.ndarray  # request id
    context_tokens: np.ndarray  # tokens whose K/V is cached; the next step writes position context_tokens
    remaining_tokens: np.ndarray  # tokens still to generate
    blocks: np.ndarray  # KV blocks this sequence holds on its own (shared prompt blocks are the request's)
    copy_on_write: np.ndarray  # still shares its request's partly filled last prompt block
    last_token_s: np.ndarray
    max_itl_s: np.ndarray  # longest gap between two of this sequence's tokens so far

    @classmethod
    def empty(cls) -> "Rows":
        return cls(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.int64, np.int64, bool, np.float64, np.float64)))

    @classmethod
    def for_request(cls, request_id: int, seqs: int, context_tokens: int, remaining_tokens: int,
                    blocks: np.ndarray, copy_on_write: np.ndarray, now_s: float) -> "Rows":
        return cls(np.full(seqs, request_id), np.full(seqs, context_tokens), np.full(seqs, remaining_tokens),
                   blocks, copy_on_write, np.full(seqs, now_s), np.zeros(seqs))

    def __len__(self) -> int:
        return len(self.request)

    def select(self, mask: np.ndarray) -> "Rows":
        return Rows(*(getattr(self, f)[mask] for f in _FIELDS))

    def extend(self, other: "Rows") -> None:
        for f in _FIELDS:
            setattr(self, f, np.concatenate((getattr(self, f), getattr(other, f))))

    def advance(self, steps: int, last_token_s: float) -> None:
        self.context_tokens += steps
        self.remaining_tokens -= steps
        self.copy_on_write.fill(False)
        self.last_token_s.fill(last_token_s)
