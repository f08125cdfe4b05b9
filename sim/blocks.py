"""The KV cache as blocks (PagedAttention, Kwon et al. SOSP 2023): a pool that only knows block counts and
a prefix cache, and how the blocks of a decode batch grow step by step.

Blocks of one pool are interchangeable, so the pool counts them instead of naming them: what is free,
what is held, and which shared prefixes still sit in the cache (reference-counted; unreferenced ones are
evicted least-recently-used when blocks run short, as vLLM's prefix caching does).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numba import njit

@dataclass
class CachedPrefix:
    blocks: int
    references: int  # requests using it; at 0 it stays cached but may be evicted


class BlockPool:
    def __init__(self, total_blocks: int):
        self.total_blocks = total_blocks
        self.free_blocks = total_blocks
        self._prefixes: dict[tuple, CachedPrefix] = {}
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
        return entry.blocks if entry else 0

    def prefix_cost_blocks(self, prefix_key: tuple, blocks: int) -> int:
        """What referencing a prefix of `blocks` blocks takes from `available_blocks`: nothing if another
        request holds it, its blocks if it must be cached or brought back from the evictable list."""
        entry = self._prefixes.get(prefix_key)
        return 0 if entry is not None and entry.references > 0 else blocks

    def acquire_prefix(self, prefix_key: tuple, blocks: int) -> int:
        """Reference the cached prefix, or cache `blocks` of it (taken from the pool). Returns the blocks
        the caller now shares."""
        entry = self._prefixes.get(prefix_key)
        if entry is None:
            self.take(blocks)
            self._prefixes[prefix_key] = CachedPrefix(blocks, 1)
            return blocks
        if entry.references == 0:
            self.evictable_blocks -= self._evictable.pop(prefix_key)
        entry.references += 1
        return entry.blocks

    def release_prefix(self, prefix_key: tuple) -> None:
        entry = self._prefixes[prefix_key]
        entry.references -= 1
        if entry.references == 0:
            self._evictable[prefix_key] = entry.blocks
            self.evictable_blocks += entry.blocks


def cumulative_new_blocks(seqs, copies, crossings_cdf: np.ndarray, run, step, block_size: int) -> np.ndarray:
    """New blocks decode run `run` has added by the end of its step `step` (arrays of equal length index
    several runs at once; see `BlockGrowth`)."""
    return seqs * (step // block_size) + crossings_cdf[run, step % block_size] + copies


@njit(cache=True)
def steps_within(crossings_cdf, seqs, copies, steps, available_blocks):
    """`BlockGrowth.steps_within` from its parts (compiled code calls it too): all `steps` when even their
    bound (`at_most`) fits, else the steps before the first whose running total of new blocks exceeds what is
    available, at least one."""
    block_size = len(crossings_cdf)
    if seqs * -(-steps // block_size) + copies <= available_blocks:
        return steps
    fit = 0
    while fit < steps and seqs * (fit // block_size) + crossings_cdf[fit % block_size] + copies <= available_blocks:
        fit += 1
    return max(1, fit)


class BlockGrowth:
    """How the blocks of a decode batch grow, step by step.

    Step j writes token position c_i + j of sequence i, which opens a block when (c_i + j) % block_size
    == 0; a sequence still sharing its request's partly filled last prompt block copies it at its first
    write (copy-on-write). With r_i = (-c_i) mod block_size the step of its first boundary, by step
    j = q block_size + r every sequence has crossed q times, plus once more if r_i <= r. So a histogram
    of the r_i (its running sum `crossings_cdf`) fixes the growth of the whole batch.
    """

    def __init__(self, crossings_cdf: np.ndarray, seqs: int, copies: int):
        self.crossings_cdf, self.seqs, self.copies = crossings_cdf, seqs, copies
        self.block_size = len(crossings_cdf)

    def at_most(self, steps: int) -> int:
        """A bound on the blocks `steps` steps add, cheap enough to skip the exact count when blocks abound."""
        return self.seqs * -(-steps // self.block_size) + self.copies

    def next_step(self) -> int:
        """Blocks the next step adds: sequences whose blocks are full (r_i = 0) and pending copies."""
        return int(self.crossings_cdf[0]) + self.copies

    def steps_within(self, steps: int, available_blocks: int) -> int:
        """Of the next `steps` steps, how many open no more than `available_blocks` blocks (at least one)."""
        return steps_within(self.crossings_cdf, self.seqs, self.copies, steps, available_blocks)

    def cumulative(self, steps: int) -> np.ndarray:
        """Blocks added by the end of each of the next `steps` steps."""
        return cumulative_new_blocks(self.seqs, self.copies, self.crossings_cdf[None, :], 0, np.arange(steps),
                                     self.block_size)
