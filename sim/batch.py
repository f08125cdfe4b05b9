"""The sequences a replica is decoding, as parallel NumPy arrays (one row per sequence), so that a run of
decode steps updates every sequence with a few array operations instead of a Python loop. The arrays keep
spare capacity: adding a request's sequences writes into it, dropping rows compacts in place."""
from __future__ import annotations

import numpy as np
from numba import njit

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
        self._scan: tuple | None = None  # `scan`'s result until the rows change

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
                    first_blocks: int, other_blocks: int, others_copy_on_write: bool, now_s: float) -> None:
        """Append the `seqs` sequences of a request that just got its context into the cache: the first holds
        `first_blocks` of its own, the others `other_blocks` and maybe a pending copy-on-write."""
        self._reserve(seqs)
        at = slice(self._n, self._n + seqs)
        d = self._data
        d["request"][at], d["context_tokens"][at], d["remaining_tokens"][at] = request_id, context_tokens, remaining_tokens
        d["blocks"][at], d["copy_on_write"][at] = other_blocks, others_copy_on_write
        d["blocks"][self._n], d["copy_on_write"][self._n] = first_blocks, False
        d["last_token_s"][at], d["max_itl_s"][at] = now_s, 0.0
        self._n += seqs
        self._scan = None

    def extend(self, other: "Rows") -> None:
        self._reserve(len(other))
        for f, values in self._data.items():
            values[self._n:self._n + len(other)] = other._data[f][:len(other)]
        self._n += len(other)
        self._scan = None

    def pop(self, mask: np.ndarray) -> "Rows":
        """Remove the rows where `mask` is true (keeping the others in order) and return them."""
        out = Rows.__new__(Rows)
        live = [values[:self._n] for values in self._data.values()]
        out._data, out._scan = {f: values[mask] for f, values in zip(self._data, live)}, None
        out._n = len(out._data["request"])
        self._n = _compact(mask, *live)
        self._scan = None
        return out

    def scan(self, block_size: int) -> tuple:
        """(fewest remaining tokens, context sum, longest context, running sum of the histogram of first
        block-boundary steps r_i = (-c_i) mod block_size, pending copies-on-write): what a decode run needs
        to know before it starts (see `blocks.BlockGrowth`)."""
        if self._scan is None or len(self._scan[3]) != block_size:
            self._scan = _scan(self.context_tokens, self.remaining_tokens, self.copy_on_write, block_size)
        return self._scan

    def advance(self, steps: int, block_size: int, first_end_s: float, last_end_s: float,
                later_gap_s: float) -> tuple[int, np.ndarray, np.ndarray]:
        """Every row decoded `steps` tokens, the first at `first_end_s`, the last at `last_end_s`, the
        others `later_gap_s` apart at most. Adds the blocks the rows opened (block_size 0: none, contiguous)
        and returns how many, with the gaps before the rows' first new tokens as distinct values and how
        many rows had each (rows that decoded together share their previous token's time)."""
        d = self._data
        n = self._n
        new_blocks, gaps, counts = _advance(
            d["context_tokens"][:n], d["remaining_tokens"][:n], d["blocks"][:n], d["copy_on_write"][:n],
            d["last_token_s"][:n], d["max_itl_s"][:n], steps, block_size, first_end_s, last_end_s, later_gap_s)
        self._scan = None
        return new_blocks, gaps, counts


@njit(cache=True)
def _compact(remove, a, b, c, d, e, f, g):
    """Move the rows not in `remove` to the front of every column, in order; returns how many."""
    kept = 0
    for i in range(len(remove)):
        if not remove[i]:
            a[kept], b[kept], c[kept], d[kept], e[kept], f[kept], g[kept] = a[i], b[i], c[i], d[i], e[i], f[i], g[i]
            kept += 1
    return kept


@njit(cache=True)
def _scan(context, remaining, copy_on_write, block_size):
    crossings = np.zeros(block_size, dtype=np.int64)
    fewest, total, longest, copies = 1 << 62, 0, 0, 0
    for i in range(len(context)):
        c = context[i]
        total += c
        longest = max(longest, c)
        fewest = min(fewest, remaining[i])
        copies += copy_on_write[i]
        crossings[(block_size - c % block_size) % block_size] += 1
    return fewest, total, longest, np.cumsum(crossings), copies


@njit(cache=True)
def _advance(context, remaining, blocks, copy_on_write, last_token_s, max_itl_s, steps, block_size, first_end_s,
             last_end_s, later_gap_s):
    added = 0
    gaps = np.empty(len(context))
    counts = np.zeros(len(context), dtype=np.int64)
    distinct = 0
    for i in range(len(context)):
        if block_size:  # boundaries at r_i, r_i + B, ... below `steps`, plus a pending copy (blocks.BlockGrowth)
            first = (block_size - context[i] % block_size) % block_size
            grown = (steps - 1 + block_size - first) // block_size + copy_on_write[i]
            blocks[i] += grown
            added += grown
        gap = first_end_s - last_token_s[i]
        j = 0
        while j < distinct and gaps[j] != gap:
            j += 1
        if j == distinct:
            gaps[j] = gap
            distinct += 1
        counts[j] += 1
        max_itl_s[i] = max(max_itl_s[i], gap, later_gap_s)
        context[i] += steps
        remaining[i] -= steps
        copy_on_write[i] = False
        last_token_s[i] = last_end_s
    return added, gaps[:distinct], counts[:distinct]


def _column(name: str) -> property:
    """A field of the live rows, as a view: writing to it (or assigning it) writes the rows."""
    def get(self) -> np.ndarray:
        return self._data[name][:self._n]

    def set(self, values) -> None:
        self._data[name][:self._n] = values
    return property(get, set)


for _name in _FIELDS:
    setattr(Rows, _name, _column(_name))
