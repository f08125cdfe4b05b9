"""Which blocks each request holds: the manager between a scheduler and the block pool (as vLLM's
KVCacheManager keeps `req_to_blocks` over its BlockPool). A scheduler asks what admitting or growing a
request costs and tells the manager what happened; only the manager touches the pools.

Two allocators decide how many blocks a context takes, behind one interface:
- paged (PagedAttention, Kwon et al. SOSP 2023, §4): a context of t tokens takes floor(t / B) full blocks
  that all of a request's sequences share, plus one partly filled block when B does not divide t;
  sequences 2..n copy that block at their first write (copy-on-write, §4.4); each further block is added
  when a sequence crosses a block boundary. With prefix caching, the full blocks of a shared prefix are
  kept and reused by later requests with the same prefix id and length (their tokens need no prefill).
- contiguous: every sequence reserves `max_model_len` tokens up front, as engines did before paging
  (Orca, FasterTransformer); nothing grows.
Swapped-out blocks move to a second pool in host memory.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from infersim.roofline.errors import SpecError

from .batch import BatchScan, DecodeBatch
from .blocks import BlockGrowth, BlockPool
from .request import Request


class PagedAllocator:
    name = "paged"
    shares_prefixes = True

    def __init__(self, block_size_tokens: int):
        self.block_size = block_size_tokens
        self._growth_of: BatchScan | None = None  # the batch scan `_growth` was made from
        self._growth: BlockGrowth | None = None

    @classmethod
    def for_cache(cls, block_size_tokens: int, max_model_len: int, total_blocks: int) -> "PagedAllocator":
        """Blocks are taken as contexts grow, so any cache size and context limit will do."""
        return cls(block_size_tokens)

    def context_blocks(self, req: Request, context_tokens: int) -> int:
        return math.ceil(context_tokens / self.block_size)

    def peak_blocks(self, req: Request) -> int:
        context = req.total_tokens - 1  # the last token is sampled, never cached
        shared = req.prompt_tokens // self.block_size
        return shared + req.num_seqs * (math.ceil(context / self.block_size) - shared)

    def copies_on_write(self, context_tokens: int) -> bool:
        """Do sequences 2..n share a partly filled last block that they copy at their first write?"""
        return context_tokens % self.block_size != 0

    def first_step_blocks(self, req: Request, context_tokens: int) -> int:
        """Blocks the first decode step of a request with a cached context opens: one per sequence when the
        context fills its blocks exactly, else a copy of the shared partly filled block for sequences 2..n."""
        return req.num_seqs - self.copies_on_write(context_tokens)

    def growth(self, batch: DecodeBatch) -> BlockGrowth:
        scan = batch.scan()
        if self._growth_of is not scan:
            self._growth_of, self._growth = scan, BlockGrowth(scan.crossings_cdf, len(batch), scan.pending_copies)
        return self._growth

    def blocks_for_tokens(self, batch: DecodeBatch, tokens: int) -> int:
        """Blocks the rows open writing min(tokens, what each has left) positions from their contexts: the
        block boundaries crossed (as blocks.BlockGrowth counts them) plus each pending copy-on-write."""
        written = np.minimum(tokens, batch.remaining_tokens)
        first = (self.block_size - batch.context_tokens % self.block_size) % self.block_size
        crossed = np.where(written > 0, (written - 1 + self.block_size - first) // self.block_size, 0)
        return int(crossed.sum() + batch.copy_on_write.sum())

    def advance(self, batch: DecodeBatch, ends_s: np.ndarray, latency_s: np.ndarray, held: HeldBlocks,
                emitted: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
        return batch.advance(ends_s, latency_s, held.counts, emitted, held.base)


class ContiguousAllocator:
    name = "contiguous"
    shares_prefixes = False
    grows = False

    def __init__(self, block_size_tokens: int, max_model_len: int):
        self.block_size = block_size_tokens
        self.reserve_blocks = math.ceil(max_model_len / block_size_tokens)
        self._growth = BlockGrowth(np.zeros(block_size_tokens, dtype=np.int64), 0, 0)  # reservations never grow

    @classmethod
    def for_cache(cls, block_size_tokens: int, max_model_len: int, total_blocks: int) -> "ContiguousAllocator":
        """A cache smaller than one reservation could never serve anything."""
        allocator = cls(block_size_tokens, max_model_len)
        if allocator.reserve_blocks > total_blocks:
            raise SpecError("scheduler.max_model_len", f"a contiguous reservation of {max_model_len} tokens exceeds "
                            f"the KV cache ({total_blocks * block_size_tokens} tokens); lower it", max_model_len)
        return allocator

    def context_blocks(self, req: Request, context_tokens: int) -> int:
        return req.num_seqs * self.reserve_blocks

    def peak_blocks(self, req: Request) -> int:
        return req.num_seqs * self.reserve_blocks

    def copies_on_write(self, context_tokens: int) -> bool:
        return False

    def first_step_blocks(self, req: Request, context_tokens: int) -> int:
        return 0

    def growth(self, batch: DecodeBatch) -> BlockGrowth:
        return self._growth

    def blocks_for_tokens(self, batch: DecodeBatch, tokens: int) -> int:
        return 0  # reservations never grow

    def advance(self, batch: DecodeBatch, ends_s: np.ndarray, latency_s: np.ndarray, held: HeldBlocks,
                emitted: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
        return batch.advance(ends_s, latency_s, None, emitted)


ALLOCATORS = {a.name: a for a in (PagedAllocator, ContiguousAllocator)}


class HeldBlocks:
    """Blocks each request holds, by request id, in an array that spans only the ids of requests holding
    some (`counts[id - base]`): a replica of a large cluster sees ids spread over the whole run, so an array
    indexed by the id itself would take a slot for every request of the run."""

    def __init__(self):
        self.counts, self.base = np.zeros(64, dtype=np.int64), 0

    def __getitem__(self, request_id: int) -> int:
        i = request_id - self.base
        return int(self.counts[i]) if 0 <= i < len(self.counts) else 0

    def __setitem__(self, request_id: int, blocks: int) -> None:
        if not 0 <= request_id - self.base < len(self.counts):
            self._span(request_id)
        self.counts[request_id - self.base] = blocks

    def _span(self, request_id: int) -> None:
        """Lay the array anew over the ids holding blocks and `request_id`, with as much room again."""
        live = np.flatnonzero(self.counts)
        low, high = request_id, request_id
        if len(live):
            low, high = min(low, self.base + int(live[0])), max(high, self.base + int(live[-1]))
        counts = np.zeros(max(64, 2 * (high - low + 1)), dtype=np.int64)
        counts[live + self.base - low] = self.counts[live]
        self.counts, self.base = counts, low


class PrefixKey(NamedTuple):
    prefix_id: int
    blocks: int


class KVCacheManager:
    def __init__(self, allocator: PagedAllocator | ContiguousAllocator, total_blocks: int,
                 watermark_blocks: int = 0, prefix_caching: bool = False, host_blocks: int = 0):
        assert allocator.shares_prefixes or not prefix_caching
        self.allocator = allocator
        self.block_size = allocator.block_size
        self.pool = BlockPool(total_blocks)
        self.host_pool = BlockPool(host_blocks)  # swap space
        self.watermark_blocks = watermark_blocks
        self.prefix_caching = prefix_caching
        self._held = HeldBlocks()  # by request id: blocks it holds (on the GPU or swapped)
        self._prefix: dict[int, PrefixKey] = {}  # request id -> the cached prefix it borrows

    # -- questions --------------------------------------------------------------------------------------
    def peak_blocks(self, req: Request) -> int:
        """Blocks the request holds at its longest, alone in the cache."""
        return self.allocator.peak_blocks(req)

    def blocks_of(self, req: Request) -> int:
        """Blocks the request holds, a cached prefix it borrows included."""
        key = self._prefix.get(req.id)
        return self._held[req.id] + (key.blocks if key else 0)

    def _prefix_blocks(self, req: Request, context_tokens: int) -> int:
        if not (self.prefix_caching and req.prefix_id >= 0) or req.prefix_tokens >= context_tokens:
            return 0  # at least one token is always computed, to sample from
        return req.prefix_tokens // self.block_size

    def tokens_to_compute(self, req: Request, context_tokens: int) -> int:
        """Of a context, the tokens a prefill must compute (the prefix cache holds the rest)."""
        return context_tokens - self._prefix_blocks(req, context_tokens) * self.block_size

    def blocks_to_admit(self, req: Request, context_tokens: int) -> int:
        """New blocks a context of `context_tokens` takes (a prefill, or a prefilled hand-off)."""
        blocks = self.allocator.context_blocks(req, context_tokens)
        prefix = self._prefix_blocks(req, context_tokens)
        if not prefix:
            return blocks
        return blocks - prefix + self.pool.prefix_cost_blocks(PrefixKey(req.prefix_id, prefix), prefix)

    def can_admit(self, req: Request, context_tokens: int, reserve_blocks: int = 0) -> bool:
        """Whether the blocks for the context fit above the watermark, `reserve_blocks` aside (those the
        running batch's next step needs)."""
        return (self.pool.available_blocks - reserve_blocks - self.blocks_to_admit(req, context_tokens)
                >= self.watermark_blocks)

    def growth(self, batch: DecodeBatch) -> BlockGrowth:
        """How the batch's blocks grow step by step."""
        return self.allocator.growth(batch)

    def next_step_blocks(self, batch: DecodeBatch, tokens: int = 1) -> int:
        """New blocks the next decode step of `batch` opens when each row writes up to `tokens` tokens (a
        speculative step's verification writes the k drafted tokens and one more, but no row more than it
        has left to generate)."""
        if not len(batch):
            return 0
        if tokens == 1:
            return self.allocator.growth(batch).next_step()
        return self.allocator.blocks_for_tokens(batch, tokens)

    def first_step_blocks(self, req: Request, context_tokens: int) -> int:
        """New blocks the first decode step of a request whose context is cached opens."""
        return self.allocator.first_step_blocks(req, context_tokens)

    def copies_on_write(self, context_tokens: int) -> bool:
        """Do a request's sequences 2..n copy a shared partly filled block at their first write?"""
        return self.allocator.copies_on_write(context_tokens)

    def steps_that_fit(self, batch: DecodeBatch, steps: int) -> int:
        """Of the next `steps` decode steps of `batch`, how many fit in the free blocks (at least one: the
        scheduler makes room for the next step before it plans a run)."""
        return int(self.allocator.growth(batch).steps_within(steps, self.pool.available_blocks))

    def can_swap_in(self, req: Request, rows: DecodeBatch, tokens: int = 1) -> bool:
        """Whether a swapped request's blocks and its rows' next step (`tokens` per row) fit above the
        watermark."""
        return (self.pool.available_blocks - self._held[req.id] - self.next_step_blocks(rows, tokens)
                >= self.watermark_blocks)

    def can_swap_out(self, req: Request) -> bool:
        return self.blocks_of(req) <= self.host_pool.available_blocks

    # -- what happened ----------------------------------------------------------------------------------
    def admit(self, req: Request, context_tokens: int) -> int:
        """Take the blocks for a context; returns the tokens a prefix cache already holds."""
        blocks = self.allocator.context_blocks(req, context_tokens)
        prefix = self._prefix_blocks(req, context_tokens)
        if prefix:
            key = PrefixKey(req.prefix_id, prefix)
            blocks -= self.pool.acquire_prefix(key, prefix)
            self._prefix[req.id] = key
        self.pool.take(blocks)
        self._held[req.id] = blocks
        return prefix * self.block_size

    def advance(self, batch: DecodeBatch, ends_s: np.ndarray, latency_s: np.ndarray,
                emitted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The batch decoded a token per row in each step ending at `ends_s` (or `emitted[i]` tokens in row
        i, one speculative step): advance it and take the blocks those steps opened for their requests (in
        the same compiled pass). Returns the gaps before the rows' first new tokens (distinct values) and
        how many rows had each."""
        opened_blocks, first_gaps_s, rows_per_gap = self.allocator.advance(batch, ends_s, latency_s, self._held,
                                                                           emitted)
        self.pool.take(opened_blocks)
        return first_gaps_s, rows_per_gap

    def free(self, req: Request) -> None:
        self.pool.give(self._held[req.id])
        self._held[req.id] = 0
        key = self._prefix.pop(req.id, None)
        if key:
            self.pool.release_prefix(key)

    def swap_out(self, req: Request) -> int:
        """Move all of the request's blocks to host memory (a cached prefix it borrows is copied along);
        returns how many."""
        blocks = self.blocks_of(req)
        self.free(req)
        self.host_pool.take(blocks)
        self._held[req.id] = blocks
        return blocks

    def swap_in(self, req: Request) -> int:
        blocks = self._held[req.id]
        self.host_pool.give(blocks)
        self.pool.take(blocks)
        return blocks
