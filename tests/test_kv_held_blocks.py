"""The blocks each request holds, kept in an array that spans only the ids of requests holding some."""
from infersim.sim.kv_cache import HeldBlocks


def test_held_blocks_follow_ids_spread_over_a_long_run_in_an_array_as_long_as_the_live_ids_span():
    held = HeldBlocks()
    for request_id in range(0, 64_000_000, 64_000):  # a replica's share of a huge run, one at a time
        held[request_id] = 5
        held[request_id] = 0  # done: its blocks are free
    assert held[63_936_000] == 0 and len(held.counts) <= 128
    held[10] = 3  # an early request admitted again (after preemption), below the window
    held[1_000_000] = 7
    assert (held[10], held[1_000_000], held[500]) == (3, 7, 0)
    assert held.counts[10 - held.base] == 3  # where the compiled decode step adds its new blocks
