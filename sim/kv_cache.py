"""Which blocks a request holds: the manager between the scheduler and the block pool (as vLLM's
KVCacheManager sits over its BlockPool). The scheduler asks what admitting or growing costs; only the
manager touches the pool.

Paged (PagedAttention, Kwon et al. 2023, §4): a request's context of t tokens takes floor(t / B) full
blocks that all its sequences share, plus one partly filled block when B does not divide t; sequence 2..n
copy that block at their first write (copy-on-write, §4.4); each further block is added when a sequence
crosses a block boundary. With prefix caching, the full blocks of a shared prefix are kept and reused by
later requests with the same prefix id and length (their tokens need no prefill). Contiguous: every sequence reserves
`max_model_len` tokens up front, as engines did before paging (Orca, FasterTransformer).
"""
from __future__ import annotations

import math

from .batch import Rows
from .blocks import BlockGrowth, BlockPool
from .request import Request


class KVCacheManager:
    def __init__(self, pool: BlockPool, block_size_tokens: int, allocator: str = "paged",
                 prefix_caching: bool = False, watermark_blocks: int = 0, max_model_len: int = 1 << 30):
        self.pool = pool
        self.block_size = block_size_tokens
        self.paged = allocator == "paged"
        self.prefix_caching = prefix_caching
        self.watermark_blocks = watermark_blocks
        self.reserve_blocks = math.ceil(max_model_len / block_size_tokens)
        self._growth: tuple | None = None  # (the rows' scan it came from, BlockGrowth)

    def peak_blocks(self, req: Request) -> int:
        """Blocks the request holds at its longest, alone in the cache."""
        if not self.paged:
            return req.num_seqs * self.reserve_blocks
        context = req.total_tokens - 1  # the last token is sampled, never cached
        shared = req.prompt_tokens // self.block_size
        return shared + req.num_seqs * (math.ceil(context / self.block_size) - shared)

    def _prefix_blocks(self, req: Request, tokens: int) -> int:
        if not (self.paged and self.prefix_caching and req.prefix_id >= 0) or req.prefix_tokens >= tokens:
            return 0  # at least one token is always computed, to sample from
        return req.prefix_tokens // self.block_size

    def blocks_to_admit(self, req: Request, tokens: int) -> int:
        """New blocks to hold a context of `tokens` tokens (a prefill, or a decode hand-off)."""
        if not self.paged:
            return req.num_seqs * self.reserve_blocks
        prefix = self._prefix_blocks(req, tokens)
        if not prefix:
            return math.ceil(tokens / self.block_size)
        return math.ceil(tokens / self.block_size) - prefix + self.pool.prefix_cost_blocks((req.prefix_id, prefix), prefix)

    def can_admit(self, req: Request, tokens: int, reserve_blocks: int = 0) -> bool:
        """Whether the blocks for a context of `tokens` fit above the watermark, `reserve_blocks` aside
        (those the running batch's next step needs)."""
        return self.pool.available_blocks - reserve_blocks - self.blocks_to_admit(req, tokens) >= self.watermark_blocks

    def admit(self, req: Request, tokens: int) -> int:
        """Take the blocks for a context of `tokens`; returns the tokens a prefix cache already holds."""
        if not self.paged:
            req.shared_blocks = req.num_seqs * self.reserve_blocks
            self.pool.take(req.shared_blocks)
            return 0
        prefix = self._prefix_blocks(req, tokens)
        if prefix:
            req.prefix_blocks = self.pool.acquire_prefix((req.prefix_id, prefix), prefix)
        req.shared_blocks = math.ceil(tokens / self.block_size) - req.prefix_blocks
        self.pool.take(req.shared_blocks)
        return req.prefix_blocks * self.block_size

    def add_rows(self, rows: Rows, req: Request, context_tokens: int, now_s: float) -> None:
        """Add the decode rows of a request whose context is cached: its per-sequence blocks move from the
        request's share to the rows (the partly filled block to the first sequence)."""
        n = req.num_seqs
        if self.paged:
            partial = context_tokens % self.block_size != 0
            first_blocks, other_blocks, others_copy = int(partial), 0, partial
        else:
            first_blocks = other_blocks = self.reserve_blocks
            others_copy = False
        req.shared_blocks -= first_blocks + (n - 1) * other_blocks
        rows.add_request(req.id, n, context_tokens, req.remaining_tokens, first_blocks, other_blocks, others_copy,
                         now_s)

    def tokens_to_compute(self, req: Request, tokens: int) -> int:
        """Of a context of `tokens`, those a prefill must compute (the prefix cache holds the rest)."""
        return tokens - self._prefix_blocks(req, tokens) * self.block_size

    def grow(self, blocks: int) -> None:
        """Decode steps opened `blocks` new blocks (see BlockGrowth; the scheduler checked they fit)."""
        self.pool.take(blocks)

    def swap_out(self, req: Request, row_blocks: int) -> int:
        """Move all of the request's blocks to host memory (a cached prefix it shared is copied along);
        returns how many."""
        blocks = req.shared_blocks + req.prefix_blocks + row_blocks
        self.release(req, row_blocks)
        req.shared_blocks = blocks - row_blocks
        return blocks

    def swap_in(self, req: Request, row_blocks: int) -> int:
        blocks = req.shared_blocks + row_blocks
        self.pool.take(blocks)
        return blocks

    def release(self, req: Request, row_blocks: int) -> None:
        self.pool.give(req.shared_blocks + row_blocks)
        req.shared_blocks = 0
        if req.prefix_blocks:
            self.pool.release_prefix((req.prefix_id, req.prefix_blocks))
            req.prefix_blocks = 0

    def growth(self, rows: Rows) -> BlockGrowth | None:
        """How the decode rows' blocks grow (None: contiguous reservations never grow)."""
        if not self.paged:
            return None
        scan = rows.scan(self.block_size)
        if self._growth is None or self._growth[0] is not scan:
            self._growth = (scan, BlockGrowth(scan[3], len(rows), scan[4]))
        return self._growth[1]

    def next_step_blocks(self, rows: Rows) -> int:
        """New blocks the next decode step of `rows` needs."""
        return self.growth(rows).next_step() if self.paged and len(rows) else 0
