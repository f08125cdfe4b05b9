"""The sequences a replica is decoding, as parallel NumPy arrays (one row per sequence), so that a run of
decode steps updates every sequence with a few array operations instead of a Python loop. The arrays keep
spare capacity: adding a request's sequences writes into it, dropping rows compacts in place."""
from __future__ import annotations

import numpy as np

_FIELDS = {
    "request": np.int64,  # request id
    "context_tokens": np.int64,  # tokens whose K/V is cached; the next step writes position context_tokens
    "remaining_tokens": np.int64,  # tokens still to generate
    "blocks": np.int64,  # KV blocks this sequence holds on its own (shared prompt blocks are the request's)
    "copy_on_write": bool,  # still shares its request's partly filled last prompt block
    "last_token_s": np.float64,
    "max_itl_s": np.float64,  # longest gap between two of this sequence's tokens so far
}


class Rows:
    def __init__(self, capacity: int = 64):
        self._data = {f: np.zeros(capacity, dtype=t) for f, t in _FIELDS.items()}
        self._n = 0
        self.growth = None  # a cache for whoever derives something from the rows; cleared on any change

    def __len__(self) -> int:
        return self._n

    def _reserve(self, extra: int) -> None:
        capacity = len(self._data["request"])
        if self._n + extra > capacity:
            size = max(2 * capacity, self._n + extra)
            for f, values in self._data.items():
                grown = np.zeros(size, dtype=values.dtype)
                grown[:self._n] = values[:self._n]
                self._data[f] = grown

    def add_request(self, request_id: int, seqs: int, context_tokens: int, remaining_tokens: int,
                    blocks: np.ndarray, copy_on_write: np.ndarray, now_s: float) -> None:
        """Append the `seqs` sequences of a request that just got its context into the cache."""
        self._reserve(seqs)
        at = slice(self._n, self._n + seqs)
        d = self._data
        d["request"][at], d["context_tokens"][at], d["remaining_tokens"][at] = request_id, context_tokens, remaining_tokens
        d["blocks"][at], d["copy_on_write"][at] = blocks, copy_on_write
        d["last_token_s"][at], d["max_itl_s"][at] = now_s, 0.0
        self._n += seqs
        self.growth = None

    def extend(self, other: "Rows") -> None:
        self._reserve(len(other))
        for f, values in self._data.items():
            values[self._n:self._n + len(other)] = other._data[f][:len(other)]
        self._n += len(other)
        self.growth = None

    def pop(self, mask: np.ndarray) -> "Rows":
        """Remove the rows where `mask` is true (keeping the others in order) and return them."""
        out = Rows.__new__(Rows)
        out._data, out.growth = {}, None
        keep = np.flatnonzero(~mask)
        for f, values in self._data.items():
            live = values[:self._n]
            out._data[f] = live[mask]
            values[:len(keep)] = live[keep]
        out._n = self._n - len(keep)
        self._n = len(keep)
        self.growth = None
        return out

    def advance(self, steps: int, last_token_s: float) -> None:
        self.context_tokens += steps
        self.remaining_tokens -= steps
        self.copy_on_write.fill(False)
        self.last_token_s.fill(last_token_s)
        self.growth = None


def _column(name: str) -> property:
    """A field of the live rows, as a view: writing to it (or assigning it) writes the rows."""
    def get(self) -> np.ndarray:
        return self._data[name][:self._n]

    def set(self, values) -> None:
        self._data[name][:self._n] = values
    return property(get, set)


for _name in _FIELDS:
    setattr(Rows, _name, _column(_name))
