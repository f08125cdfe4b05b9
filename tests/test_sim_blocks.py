import numpy as np
import pytest

from infersim.sim.batch import DecodeBatch
from infersim.sim.blocks import BlockPool
from infersim.sim.kv_cache import PagedAllocator


def rows_of(contexts, copy_on_write, block_size=4):
    rows = DecodeBatch(block_size, capacity=2)
    for i, (c, cow) in enumerate(zip(contexts, copy_on_write)):
        rows.add_request(i, 1, c, 100, False, 0.0)
        rows.copy_on_write[-1] = cow
    return rows


def growth_of(rows, block_size):
    return PagedAllocator(block_size).growth(rows)


def test_block_growth_counts_block_boundaries_by_hand():
    # block size 4, contexts 3, 4, 5 (the next write goes to position 3, 4, 5):
    # seq 0 writes 3,4,5,6,7,8 -> opens blocks at steps 1 (pos 4) and 5 (pos 8)
    # seq 1 writes 4..9 -> opens at steps 0 (pos 4) and 4 (pos 8)
    # seq 2 writes 5..10 -> opens at step 3 (pos 8)
    rows = rows_of([3, 4, 5], [False] * 3)
    allocator = PagedAllocator(4)
    growth = allocator.growth(rows)
    assert growth.cumulative(6).tolist() == [1, 2, 2, 3, 4, 5]
    assert growth.next_step() == 1 and growth.at_most(6) >= 5
    held = np.zeros(3, dtype=np.int64)
    # six steps: the first ends at 1.0, the others 0.1 apart, the last at 1.5
    opened, gaps, counts = rows.advance(np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5]), np.array([1.0] + [0.1] * 5), held)
    assert opened == 5 and held.tolist() == [2, 2, 1]
    assert rows.context_tokens.tolist() == [9, 10, 11] and rows.remaining_tokens.tolist() == [94] * 3
    assert gaps.tolist() == [1.0] and counts.tolist() == [3]  # all three last decoded at time 0
    assert rows.last_token_s.tolist() == [1.5] * 3 and rows.max_itl_s.tolist() == [1.0] * 3


def test_copy_on_write_adds_one_block_at_the_first_write():
    # two sequences sharing a 5-token prompt in blocks of 4: the second copies the partly filled block
    rows = rows_of([5, 5], [False, True])
    assert growth_of(rows, 4).cumulative(4).tolist() == [1, 1, 1, 3]
    held = np.zeros(2, dtype=np.int64)
    assert rows.advance(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), held)[0] == 3 and held.tolist() == [1, 2]
    assert not rows.copy_on_write.any()


def test_rows_keep_order_when_some_are_popped():
    rows = rows_of([10, 20, 30, 40], [False] * 4)
    gone = rows.pop(np.array([False, True, False, True]))
    assert gone.context_tokens.tolist() == [20, 40] and rows.context_tokens.tolist() == [10, 30]
    scan = rows.scan()
    assert (scan.fewest_remaining_tokens, scan.context_sum_tokens, scan.context_max_tokens) == (100, 40, 30)


def test_prefix_cache_is_reused_then_evicted_lru_when_blocks_run_short():
    pool = BlockPool(10)
    assert pool.acquire_prefix((7, 4), 4) == 4 and pool.used_blocks == 4
    assert pool.acquire_prefix((7, 4), 4) == 4 and pool.used_blocks == 4  # second user shares it
    pool.release_prefix((7, 4))
    pool.release_prefix((7, 4))
    assert pool.used_blocks == 0 and pool.available_blocks == 10 and pool.cached_prefix_blocks((7, 4)) == 4
    pool.take(8)  # needs the evictable prefix's blocks
    assert pool.cached_prefix_blocks((7, 4)) == 0 and pool.free_blocks == 2


def test_pool_refuses_to_hand_out_more_than_it_has():
    pool = BlockPool(3)
    with pytest.raises(AssertionError):
        pool.take(4)
