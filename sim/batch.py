"""The sequences a scheduler is decoding, as columns of two NumPy tables (one column per sequence), so that a
run of decode steps updates every sequence in one compiled pass instead of a Python loop. The tables keep
spare capacity: adding a request's sequences writes into it, dropping sequences compacts in place. The
blocks the sequences hold are the KV cache manager's to count (`sim.kv_cache`)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

_INTS = ("request",  # request id
         "context_tokens",  # tokens whose K/V is cached; the next step writes position context_tokens
         "remaining_tokens",  # tokens still to generate
         "copy_on_write")  # 1 while it shares its request's partly filled last prompt block
_FLOATS = ("last_token_s",
           "max_itl_s")  # longest gap between two of this sequence's tokens so far
REQUEST, CONTEXT, REMAINING, COPY = range(len(_INTS))
LAST, MAX_ITL = range(len(_FLOATS))


class BatchScan(NamedTuple):
    """What a run of decode steps needs to know of a batch before it starts."""

    fewest_remaining_tokens: int  # the run reaches its first completion after this many steps
    context_sum_tokens: int
    context_max_tokens: int
    crossings_cdf: np.ndarray  # running sum of the histogram of first block-boundary steps (blocks.BlockGrowth)
    pending_copies: int  # sequences still to copy a shared partly filled block at their first write


class FinishedRequests(NamedTuple):
    """Requests whose sequences all finished, with the longest gap between two of their tokens."""

    request_ids: list
    max_itl_s: list


_NOT_COUNTED = np.zeros(0, dtype=np.int64)  # held blocks when nothing grows


class DecodeBatch:
    """Sequences in a KV cache of `block_size_tokens`-token blocks."""

    def __init__(self, block_size_tokens: int, capacity: int = 64):
        self.block_size = block_size_tokens
        self._ints = np.zeros((len(_INTS), capacity), dtype=np.int64)
        self._floats = np.zeros((len(_FLOATS), capacity))
        self._n = 0
        self._scan: BatchScan | None = None  # `scan`'s result until the rows change

    def __len__(self) -> int:
        return self._n

    def _reserve(self, extra: int) -> None:
        capacity = self._ints.shape[1]
        if self._n + extra > capacity:
            size = max(2 * capacity, self._n + extra)
            for name in ("_ints", "_floats"):
                old = getattr(self, name)
                grown = np.zeros((old.shape[0], size), dtype=old.dtype)
                grown[:, :self._n] = old[:, :self._n]
                setattr(self, name, grown)

    def add_request(self, request_id: int, seqs: int, context_tokens: int, remaining_tokens: int,
                    others_copy_on_write: bool, now_s: float) -> None:
        """Append the `seqs` sequences of a request that just got its context into the cache; all but the
        first may still have to copy a shared partly filled block."""
        self._reserve(seqs)
        _add_request(self._ints, self._floats, self._n, request_id, seqs, context_tokens, remaining_tokens,
                     int(others_copy_on_write), now_s)
        self._n += seqs
        self._scan = None

    def extend(self, other: "DecodeBatch") -> None:
        self._reserve(len(other))
        self._ints[:, self._n:self._n + len(other)] = other._ints[:, :len(other)]
        self._floats[:, self._n:self._n + len(other)] = other._floats[:, :len(other)]
        self._n += len(other)
        self._scan = None

    def pop(self, mask: np.ndarray) -> "DecodeBatch":
        """Remove the rows where `mask` is true (keeping the others in order) and return them."""
        out = DecodeBatch.__new__(DecodeBatch)
        out.block_size = self.block_size
        out._ints, out._floats = self._ints[:, :self._n][:, mask], self._floats[:, :self._n][:, mask]
        out._n, out._scan = out._ints.shape[1], None
        self._n = _compact(mask, self._ints, self._floats)
        self._scan = None
        return out

    def pop_request(self, request_id: int) -> "DecodeBatch":
        return self.pop(self.request == request_id)

    def pop_finished(self) -> FinishedRequests:
        """Remove the sequences with no tokens left, per request (its sequences are adjacent and finish
        together)."""
        requests, max_itl_s, self._n = _pop_finished(self._ints, self._floats, self._n)
        if len(requests):
            self._scan = None
        return FinishedRequests(requests.tolist(), max_itl_s.tolist())

    def pad_to_longest(self) -> None:
        """Every sequence keeps computing until the longest is done (static batching pads)."""
        if self._n:
            self.remaining_tokens[:] = self.remaining_tokens.max()
            self._scan = None

    def scan(self) -> BatchScan:
        if self._scan is None:
            self._scan = BatchScan(*_scan(self._ints, self._n, self.block_size))
        return self._scan

    def advance(self, ends_s: np.ndarray, latency_s: np.ndarray, held_blocks: np.ndarray | None = None,
                emitted: np.ndarray | None = None, held_base: int = 0) -> tuple[int, np.ndarray, np.ndarray]:
        """Every row decoded one token in each step ending at `ends_s` (lasting `latency_s`), or, given
        `emitted` (one step, speculative decoding), row i that many tokens at once (at most what it has left).
        Given the blocks each request holds (by id, `held_blocks[id - held_base]`; paged KV, whose blocks are
        taken as contexts grow), adds to them the blocks each row opened: one at every multiple of the block
        size, plus a pending copy-on-write (see blocks.BlockGrowth). Returns how many blocks were opened, and the gaps before the
        rows' first new tokens as distinct values with how many rows had each (rows that decoded together
        share their previous token's time)."""
        self._scan = None
        opens_blocks = held_blocks is not None
        return _advance(self._ints, self._floats, self._n, ends_s, latency_s, self.block_size, opens_blocks,
                        held_blocks if opens_blocks else _NOT_COUNTED, held_base,
                        _NOT_COUNTED if emitted is None else emitted)


def _column(table: str, index: int) -> property:
    """A field of the live rows, as a view: writing to it (or assigning it) writes the rows."""
    def get(self) -> np.ndarray:
        return getattr(self, table)[index, :self._n]

    def set(self, values) -> None:
        getattr(self, table)[index, :self._n] = values
    return property(get, set)


for _i, _name in enumerate(_INTS):
    setattr(DecodeBatch, _name, _column("_ints", _i))
for _i, _name in enumerate(_FLOATS):
    setattr(DecodeBatch, _name, _column("_floats", _i))


@njit(cache=True)
def _compact(remove, ints, floats):
    """Move the rows not in `remove` to the front of both tables, in order; returns how many."""
    kept = 0
    for i in range(len(remove)):
        if not remove[i]:
            for f in range(ints.shape[0]):
                ints[f, kept] = ints[f, i]
            for f in range(floats.shape[0]):
                floats[f, kept] = floats[f, i]
            kept += 1
    return kept


@njit(cache=True)
def _pop_finished(ints, floats, n):
    finished = 0
    for i in range(n):
        finished += ints[REMAINING, i] == 0
    requests = np.empty(finished, dtype=np.int64)
    max_itl_s = np.zeros(finished)
    if finished == 0:
        return requests, max_itl_s, n
    found, kept = 0, 0
    for i in range(n):
        if ints[REMAINING, i] == 0:
            if found == 0 or requests[found - 1] != ints[REQUEST, i]:
                requests[found] = ints[REQUEST, i]
                found += 1
            max_itl_s[found - 1] = max(max_itl_s[found - 1], floats[MAX_ITL, i])
        else:
            if kept != i:
                for f in range(ints.shape[0]):
                    ints[f, kept] = ints[f, i]
                for f in range(floats.shape[0]):
                    floats[f, kept] = floats[f, i]
            kept += 1
    return requests[:found], max_itl_s[:found], kept


@njit(cache=True)
def _scan(ints, n, block_size):
    crossings = np.zeros(block_size, dtype=np.int64)
    fewest, total, longest, copies = 1 << 62, 0, 0, 0
    for i in range(n):
        c = ints[CONTEXT, i]
        total += c
        longest = max(longest, c)
        fewest = min(fewest, ints[REMAINING, i])
        copies += ints[COPY, i]
        crossings[(block_size - c % block_size) % block_size] += 1
    return fewest, total, longest, np.cumsum(crossings), copies


@njit(cache=True)
def _add_request(ints, floats, n, request_id, seqs, context, remaining, others_copy, now_s):
    for i in range(n, n + seqs):
        ints[REQUEST, i], ints[CONTEXT, i], ints[REMAINING, i] = request_id, context, remaining
        ints[COPY, i] = others_copy
        floats[LAST, i], floats[MAX_ITL, i] = now_s, 0.0
    ints[COPY, n] = 0


@njit(cache=True)
def _advance(ints, floats, n, ends_s, latency_s, block_size, opens_blocks, held, held_base, emitted):
    steps = len(ends_s)
    per_row = len(emitted) > 0  # one step in which row i wrote emitted[i] tokens, else `steps` each
    first_end_s, last_end_s = ends_s[0], ends_s[steps - 1]
    later_gap_s = 0.0
    for j in range(1, steps):
        later_gap_s = max(later_gap_s, latency_s[j])
    gaps = np.empty(n)
    counts = np.zeros(n, dtype=np.int64)
    distinct = 0
    opened = 0
    for i in range(n):
        tokens = min(emitted[i], ints[REMAINING, i]) if per_row else steps
        if opens_blocks:  # boundaries at r_i, r_i + B, ... below `tokens`, plus a pending copy (blocks.BlockGrowth)
            first = (block_size - ints[CONTEXT, i] % block_size) % block_size
            grown = (tokens - 1 + block_size - first) // block_size + ints[COPY, i]
            held[ints[REQUEST, i] - held_base] += grown
            opened += grown
        gap = first_end_s - floats[LAST, i]
        j = 0
        while j < distinct and gaps[j] != gap:
            j += 1
        if j == distinct:
            gaps[j] = gap
            distinct += 1
        counts[j] += 1
        floats[MAX_ITL, i] = max(floats[MAX_ITL, i], gap, later_gap_s)
        ints[CONTEXT, i] += tokens
        ints[REMAINING, i] -= tokens
        ints[COPY, i] = 0
        floats[LAST, i] = last_end_s
    return opened, gaps[:distinct], counts[:distinct]
