import numpy as np
import pytest

from infersim.sim.blocks import BlockGrowth, BlockPool


def test_new_blocks_by_step_counts_block_boundaries_by_hand():
    # block size 4; contexts 3, 4, 5: the writes at positions 4, 8 (seq 0, steps 1 and 5), 4 and 8 ... open blocks
    # seq 0 (c=3): positions 3,4,5,6,7,8 -> opens at steps 1 (pos 4) and 5 (pos 8)
    # seq 1 (c=4): positions 4..9 -> opens at steps 0 (pos 4) and 4 (pos 8)
    # seq 2 (c=5): positions 5..10 -> opens at step 3 (pos 8)
    growth = BlockGrowth(np.array([3, 4, 5]), np.zeros(3, dtype=bool), 4)
    assert growth.cumulative(6).tolist() == [1, 2, 2, 3, 4, 5]
    assert growth.per_seq(6).tolist() == [2, 2, 1]
    assert growth.per_seq(1).tolist() == [0, 1, 0]
    assert growth.at_most(6) >= 5


def test_copy_on_write_adds_one_block_at_the_first_write():
    # two sequences sharing a 5-token prompt in blocks of 4: the second copies the partly filled block
    growth = BlockGrowth(np.array([5, 5]), np.array([False, True]), 4)
    assert growth.cumulative(4).tolist() == [1, 1, 1, 3]
    assert growth.per_seq(4).tolist() == [1, 2]


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
