"""The KV cache manager on its own: what admitting, growing, sharing, swapping and freeing take from the
pools, counted by hand (PagedAttention, Kwon et al. 2023, §4)."""
import numpy as np
import pytest

from infersim.roofline import SpecError
from infersim.sim.batch import DecodeBatch
from infersim.sim.kv_cache import ContiguousAllocator, KVCacheManager, PagedAllocator
from infersim.sim.request import Request


def paged(blocks=100, block_size=16, **kw):
    return KVCacheManager(PagedAllocator(block_size), blocks, **kw)


def test_a_paged_prompt_takes_its_blocks_and_its_parallel_sequences_copy_the_partial_one():
    kv = paged()
    batch = DecodeBatch(kv.block_size)
    req = Request(0, 0.0, prompt_tokens=40, output_tokens=30, num_seqs=3)
    assert kv.blocks_to_admit(req, 40) == 3  # ceil(40 / 16): two full blocks and one partly filled
    kv.admit(req, 40)
    batch.add_request(req.id, 3, 40, 30, kv.copies_on_write(40), 0.0)
    assert kv.blocks_of(req) == 3 and batch.copy_on_write.tolist() == [0, 1, 1]
    # first step: sequences 2 and 3 copy the partial block; position 40 is inside it, so none opens one
    assert kv.next_step_blocks(batch) == 2 == kv.first_step_blocks(req, 40)
    kv.advance(batch, np.array([1.0]), np.array([1.0]))
    assert kv.blocks_of(req) == 5 == kv.pool.used_blocks
    # 8 more steps write positions 41..48: position 48 opens a fourth block for each sequence
    kv.advance(batch, np.arange(2.0, 10.0), np.ones(8))
    assert kv.blocks_of(req) == 8 == kv.pool.used_blocks
    kv.free(req)
    assert kv.pool.used_blocks == 0 and kv.blocks_of(req) == 0


def test_peak_blocks_count_the_shared_prompt_once():
    # prompt 40 + output 30: the longest context cached is 69 tokens; 2 shared full prompt blocks and
    # ceil(69 / 16) - 2 = 3 of its own per sequence: 2 + 3 x 3 = 11
    assert paged().peak_blocks(Request(0, 0.0, 40, 30, num_seqs=3)) == 11


def test_a_contiguous_allocator_reserves_max_model_len_per_sequence_and_never_grows():
    kv = KVCacheManager(ContiguousAllocator(16, 1000), 200)
    req = Request(0, 0.0, 40, 30, num_seqs=2)
    assert kv.blocks_to_admit(req, 40) == 2 * 63 == kv.peak_blocks(req)  # ceil(1000 / 16) = 63 each
    kv.admit(req, 40)
    batch = DecodeBatch(16)
    batch.add_request(req.id, 2, 40, 30, kv.copies_on_write(40), 0.0)
    assert kv.next_step_blocks(batch) == 0 == kv.first_step_blocks(req, 40) and not batch.copy_on_write.any()
    kv.advance(batch, np.arange(1.0, 51.0), np.ones(50))
    assert kv.blocks_of(req) == 126 == kv.pool.used_blocks


def test_a_cache_smaller_than_one_contiguous_reservation_is_refused_naming_max_model_len():
    with pytest.raises(SpecError, match="scheduler.max_model_len: a contiguous reservation of 4096"):
        ContiguousAllocator.for_cache(16, 4096, 100)


def test_requests_with_a_shared_prefix_share_its_cached_blocks():
    kv = paged(prefix_caching=True)
    first = Request(0, 0.0, 100, 5, prefix_id=7, prefix_tokens=64)
    second = Request(1, 0.0, 90, 5, prefix_id=7, prefix_tokens=64)
    assert kv.tokens_to_compute(first, 100) == 36  # the prefix's 4 full blocks need no prefill
    assert kv.admit(first, 100) == 64 and kv.pool.used_blocks == 7  # 4 prefix blocks + 3 of its own
    assert kv.blocks_to_admit(second, 90) == 2  # ceil(90 / 16) = 6, less the 4 it shares
    kv.admit(second, 90)
    assert kv.pool.used_blocks == 9 and kv.blocks_of(second) == 6
    kv.free(first)
    kv.free(second)
    # nobody holds the prefix now, but it stays cached (evictable) for the next request
    assert kv.pool.used_blocks == 0 and kv.pool.cached_prefix_blocks((7, 4)) == 4


def test_swapping_moves_every_block_to_the_host_and_back():
    kv = paged(blocks=20, host_blocks=10)
    req = Request(0, 0.0, 70, 5)
    kv.admit(req, 70)  # 5 blocks
    assert kv.can_swap_out(req)
    assert kv.swap_out(req) == 5 and kv.pool.used_blocks == 0 and kv.host_pool.used_blocks == 5
    assert kv.can_swap_in(req, DecodeBatch(16))
    assert kv.swap_in(req) == 5 and kv.pool.used_blocks == 5 and kv.host_pool.used_blocks == 0


def test_admission_keeps_the_watermark_and_the_running_batch_next_blocks_free():
    kv = paged(blocks=10, watermark_blocks=2)
    req = Request(0, 0.0, 96, 5)  # 6 blocks
    assert kv.can_admit(req, 96) and not kv.can_admit(req, 96, reserve_blocks=3)
    assert kv.steps_that_fit(DecodeBatch(16), 5) == 5


def test_swapping_costs_a_host_link_transfer_per_request_moved():
    from infersim.roofline import get_hardware
    from infersim.sim.replica import EngineOverhead, ReplicaCosts
    from infersim.sim.step_plan import StepPlan
    # A100: PCIe 4.0 x16, 32 GB/s at 0.8 = 25.6 GB/s, 10 us to start a copy. Two requests of 10 blocks of
    # 1 MB each: 2 x (10 us + 10 MB / 25.6 GB/s) = 2 x 400.625 us
    costs = ReplicaCosts(None, EngineOverhead(), get_hardware("a100-sxm-80gb").host_link, block_bytes=1e6)
    assert costs.swap_s(StepPlan(swap_in_blocks=(10,), swap_out_blocks=(10,))) == pytest.approx(801.25e-6)
    assert costs.swap_s(StepPlan()) == 0.0
