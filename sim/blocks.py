"""The KV cache as blocks (PagedAttention, Kwon et al. SOSP 2023): a pool that only knows block counts and
a prefix cache, and the two allocation policies that decide how many blocks a sequence holds.

Blocks of one pool are interchangeable, so the pool counts them instead of naming them: what is free,
what is held, and which shared prefixes still sit in the cache (reference-counted; unreferenced ones are
evicted least-recently-used when blocks run short, as vLLM's prefix caching does).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

ALLOCATORS = ("paged", "contiguous")


class BlockPool:
    def __init__(self, total_blocks: int):
        self.total_blocks = total_blocks
        self.free_blocks = total_blocks
        self._prefixes: dict[tuple, list] = {}  # prefix key -> [blocks, references]
        self._evictable: OrderedDict[tuple, int] = OrderedDict()  # unreferenced prefixes, oldest first
        self.evictable_blocks = 0

    @property
    def available_blocks(self) -> int:
        return self.free_blocks + self.evictable_blocks

    @property
    def used_blocks(self) -> int:
        """Blocks holding KV that some running sequence needs."""
        return self.total_blocks - self.free_blocks - self.evictable_blocks

    def take(self, blocks: int) -> None:
        assert 0 <= blocks <= self.available_blocks, (blocks, self.available_blocks)
        while self.free_blocks < blocks:
            key, held = self._evictable.popitem(last=False)
            del self._prefixes[key]
            self.evictable_blocks -= held
            self.free_blocks += held
        self.free_blocks -= blocks

    def give(self, blocks: int) -> None:
        self.free_blocks += blocks
        assert self.free_blocks + self.evictable_blocks <= self.total_blocks

    def cached_prefix_blocks(self, prefix_key: tuple) -> int:
        entry = self._prefixes.get(prefix_key)
        return entry[0] if entry else 0

    def prefix_cost_blocks(self, prefix_key: tuple, blocks: int) -> int:
        """What referencing a prefix of `blocks` blocks takes from `available_blocks`: nothing if another
        request holds it, its blocks if it must be cached or brought back from the evictable list."""
        entry = self._prefixes.get(prefix_key)
        return 0 if entry is not None and entry[1] > 0 else blocks

    def acquire_prefix(self, prefix_key: tuple, blocks: int) -> int:
        """Reference the cached prefix, or cache `blocks` of it (taken from the pool). Returns the blocks
        the caller now shares."""
        entry = self._prefixes.get(prefix_key)
        if entry is None:
            self.take(blocks)
            self._prefixes[prefix_key] = [blocks, 1]
            return blocks
        if entry[1] == 0:
            self.evictable_blocks -= self._evictable.pop(prefix_key)
        entry[1] += 1
        return entry[0]

    def release_prefix(self, prefix_key: tuple) -> None:
        entry = self._prefixes[prefix_key]
        entry[1] -= 1
        if entry[1] == 0:
            self._evictable[prefix_key] = entry[0]
            self.evictable_blocks += entry[0]


def blocks_for(tokens, block_size: int):
    """Blocks that hold `tokens` tokens (works on arrays)."""
    return -(-np.asarray(tokens) // block_size) if isinstance(tokens, np.ndarray) else math.ceil(tokens / block_size)


def new_blocks_by_step(context_tokens: np.ndarray, copy_on_write: np.ndarray, steps: int,
                       block_size: int) -> np.ndarray:
    """Cumulative blocks a decode batch must add by the end of each of the next `steps` steps.

    Step j writes token position c_i + j of sequence i, which opens a block when (c_i + j) % block_size
    == 0; a sequence still sharing its request's partly filled last prompt block copies it at its first
    write (copy-on-write). Counting sequences by their first boundary step r_i = (-c_i) mod block_size,
    by step j = q block_size + r every sequence has crossed q times plus once more if r_i <= r.
    """
    first = np.bincount((-context_tokens) % block_size, minlength=block_size)
    j = np.arange(steps)
    return (len(context_tokens) * (j // block_size) + np.cumsum(first)[j % block_size]
            + int(np.count_nonzero(copy_on_write)))


def seq_new_blocks(context_tokens: np.ndarray, copy_on_write: np.ndarray, steps: int, block_size: int):
    """Blocks each sequence adds over `steps` decode steps (see `new_blocks_by_step`)."""
    return (blocks_for(context_tokens + steps, block_size) - blocks_for(context_tokens, block_size)
            + copy_on_write)
