"""Each scheduler's distinctive behaviour, driven step by step without a replica or a clock: every step
lasts one second here, so token times count steps."""
from typing import NamedTuple

import numpy as np
import pytest

from infersim.sim.kv_cache import ContiguousAllocator, KVCacheManager, PagedAllocator
from infersim.sim.request import DONE, SWAPPED, Request
from infersim.sim.schedulers import SCHEDULERS, SchedulerLimits
from infersim.sim.step_plan import StepPlan


def scheduler(name, blocks=1000, block_size=4, host_blocks=0, **limits):
    allocator = (ContiguousAllocator(block_size, limits.get("max_model_len", 8192)) if name == "static"
                 else PagedAllocator(block_size))
    kv = KVCacheManager(allocator, blocks, host_blocks=host_blocks)
    return SCHEDULERS[name](SchedulerLimits(**limits), kv)


def request(i, prompt, output, arrival=0.0):
    return Request(i, arrival, prompt, output)


class Step(NamedTuple):
    plan: StepPlan
    decoding_seqs: int  # when it was planned (plan.decode is the scheduler's live batch)
    end_s: float


def step(sched, now):
    """Plan and run one step (a decode run is cut to its first step); None when there is nothing to run."""
    plan = sched.schedule(now)
    if plan is None:
        return None
    taken = Step(plan, plan.decoding_seqs, now + 1.0)
    sched.apply(plan, np.array([taken.end_s]), np.array([1.0]))
    sched.retire_finished(taken.end_s)
    return taken


def drive(sched, requests, steps=None):
    """Add the requests, then run `steps` steps, or until nothing is left; returns the steps."""
    for req in requests:
        sched.add(req)
    taken, now = [], 0.0
    while steps is None or len(taken) < steps:
        one = step(sched, now)
        if one is None:
            break
        taken.append(one)
        now = one.end_s
        assert len(taken) < 1000, "did not finish"
    return taken


def test_sarathi_never_stalls_running_decodes_for_a_long_prompt():
    sched = scheduler("sarathi", chunk_tokens=64)
    short = request(0, 10, 50)
    drive(sched, [short], steps=3)  # short is decoding now
    sched.add(request(1, 400, 5))
    steps = [step(sched, 10.0 + i) for i in range(8)]
    for taken in steps[:7]:
        assert taken.decoding_seqs == 1  # the short request decodes in every step
        assert sum(chunk.tokens for chunk in taken.plan.prefills) <= 64 - 1
    # 400 prompt tokens at 63 a step: 7 chunks (6 x 63 + 22), then the long request decodes too
    assert [chunk.tokens for taken in steps[:7] for chunk in taken.plan.prefills] == [63] * 6 + [22]
    assert steps[7].decoding_seqs == 2 and not steps[7].plan.prefills


def test_orca_runs_whole_prompts_in_the_same_step_as_the_others_decodes():
    sched = scheduler("orca")
    drive(sched, [request(0, 10, 50)], steps=3)
    sched.add(request(1, 300, 5))
    taken = step(sched, 10.0)
    assert taken.decoding_seqs == 1 and [(c.tokens, c.cached_tokens) for c in taken.plan.prefills] == [(300, 0)]


def test_vllm_prefills_new_prompts_in_steps_of_their_own():
    sched = scheduler("vllm")
    drive(sched, [request(0, 10, 50)], steps=3)
    sched.add(request(1, 300, 5))
    taken = step(sched, 10.0)
    assert taken.decoding_seqs == 0 and [c.tokens for c in taken.plan.prefills] == [300]
    taken = step(sched, 11.0)
    assert taken.decoding_seqs == 2 and not taken.plan.prefills


def test_static_pads_finished_sequences_and_returns_every_response_at_the_batch_end():
    sched = scheduler("static", blocks=100, max_model_len=64)
    short, long_ = request(0, 10, 3), request(1, 10, 10)
    late = request(2, 10, 2, arrival=0.5)
    for req in (short, long_):
        sched.add(req)
    now = step(sched, 0.0).end_s  # prefills both: their first tokens at t = 1
    sched.add(late)  # arrives during the batch: waits for the next one
    while len(sched.running):
        taken = step(sched, now)
        assert taken.decoding_seqs == 2  # the short one keeps computing as padding
        now = taken.end_s
    # first token at t = 1, then 9 more decode steps: both return at t = 10
    assert short.completion_s == long_.completion_s == 10.0
    assert short.state == long_.state == DONE and late.first_token_s != late.first_token_s  # late: not yet
    step(sched, now)
    assert late.first_token_s == 11.0


def test_vllm_preempts_the_newest_request_when_blocks_run_out_and_recomputes_it():
    # 6 blocks of 4 tokens; two requests of 8-token prompts take 2 blocks each, then each step needs
    # a new block every 4 tokens: the newest (request 1) is preempted when the 7th block is needed
    sched = scheduler("vllm", blocks=6, block_size=4)
    first, newest = request(0, 8, 12), request(1, 8, 12, arrival=0.1)
    steps = drive(sched, [first, newest])
    assert newest.preemptions >= 1 and first.preemptions == 0
    assert any(taken.plan.preempted for taken in steps)
    assert first.state == newest.state == DONE
    assert first.completion_s < newest.completion_s
    assert sched.kv.pool.used_blocks == 0


def test_vllm_swaps_the_newest_request_out_and_brings_it_back_before_admitting_new_ones():
    sched = scheduler("vllm", blocks=6, block_size=4, host_blocks=100, preemption="swap")
    first, newest = request(0, 8, 12), request(1, 8, 12, arrival=0.1)
    later = request(2, 4, 2, arrival=0.2)
    for req in (first, newest):
        sched.add(req)
    now, swapped_out_s, swapped_in_s = 0.0, None, None
    while swapped_in_s is None:
        taken = step(sched, now)
        now = taken.end_s
        if taken.plan.swap_out_blocks:
            assert newest.state == SWAPPED and sum(taken.plan.swap_out_blocks) == sched.kv.blocks_of(newest)
            swapped_out_s = now
            sched.add(later)  # arrives while request 1 is out: it must wait for request 1 to come back
        if taken.plan.swap_in_blocks:
            swapped_in_s = taken.end_s - 1.0
        assert later.first_scheduled_s != later.first_scheduled_s or swapped_in_s is not None
    assert swapped_out_s is not None and sched.kv.host_pool.used_blocks == 0
    drive(sched, [])
    assert later.first_scheduled_s >= swapped_in_s and all(r.state == DONE for r in (first, newest, later))


def test_a_request_never_served_gets_its_reason():
    sched = scheduler("vllm", blocks=10, block_size=4, max_model_len=100, max_num_batched_tokens=64)
    assert "max_model_len=100" in sched.reject_reason(request(0, 90, 20))
    assert "max_num_batched_tokens=64" in sched.reject_reason(request(1, 80, 5))
    assert "KV blocks" in sched.reject_reason(request(2, 50, 40))
    assert scheduler("sarathi", max_num_batched_tokens=64).reject_reason(request(1, 80, 5)) == ""


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_serves_every_token_and_frees_every_block(name):
    sched = scheduler(name, blocks=400, block_size=4, max_model_len=128, max_num_seqs=4)
    rng = np.random.default_rng(3)
    reqs = [request(i, int(rng.integers(1, 60)), int(rng.integers(1, 60)), arrival=0.01 * i) for i in range(12)]
    drive(sched, reqs)
    assert all(r.state == DONE and r.generated_tokens == r.output_tokens for r in reqs)
    assert sched.kv.pool.used_blocks == 0 and not len(sched.running) and not len(sched.waiting)


def test_adding_a_scheduler_is_one_class_in_the_registry():
    # what a policy declares: nothing outside the registry needs its name
    for name, cls in SCHEDULERS.items():
        assert cls.name == name and cls.allocators and cls.step_token_budget(SchedulerLimits()) > 0
    assert SCHEDULERS["sarathi"].step_token_budget(SchedulerLimits(chunk_tokens=256)) == 256
    assert SCHEDULERS["static"].allocators == ("contiguous",) and SCHEDULERS["static"].pads_batch


def prefilled_elsewhere(i, prompt, output):
    """A request whose prompt a prefill replica computed: its first token is out and its KV cache came along."""
    req = request(i, prompt, output)
    req.emit_token(0.0)
    req.kv_arrived = True
    return req


def test_a_decode_replica_recomputes_the_context_of_a_request_it_preempts():
    # 6 blocks of 4 tokens: two handed-off requests with 9 cached tokens take 3 blocks each, and their first
    # decode steps need more, so the newest is preempted (after 3 steps: 4 tokens out); what arrived with it
    # is gone, so it comes back through a prefill of its prompt and generated tokens (9 + 4), not straight
    # to decoding
    sched = scheduler("vllm", blocks=6, block_size=4)
    first, newest = prefilled_elsewhere(0, 9, 10), prefilled_elsewhere(1, 9, 10)  # 5 blocks at their longest
    steps = drive(sched, [first, newest])
    assert newest.preemptions >= 1 and not newest.kv_arrived
    recomputed = [chunk for taken in steps for chunk in taken.plan.prefills if chunk.request is newest]
    assert recomputed and recomputed[0].tokens == 13 and recomputed[0].cached_tokens == 0
    assert first.state == newest.state == DONE and sched.kv.pool.used_blocks == 0


@pytest.mark.parametrize("name", ["orca", "sarathi"])
def test_requests_joining_with_their_kv_cache_keep_the_next_step_blocks_free(name):
    # a decode replica of a disaggregated cluster: three prefilled requests of 8 cached tokens (2 blocks
    # each, full) arrive; each one's first decode step opens a block, so only two fit in 6 blocks at once
    sched = scheduler(name, blocks=6, block_size=4, chunk_tokens=64)
    reqs = [prefilled_elsewhere(i, 8, 5) for i in range(3)]
    for req in reqs:
        sched.add(req)
    taken = step(sched, 0.0)
    assert taken.decoding_seqs == 2 and len(sched.waiting) == 1
    drive(sched, [])
    assert all(r.state == DONE for r in reqs) and sched.kv.pool.used_blocks == 0


def test_vllm_v1_shares_one_token_budget_between_decodes_and_prompt_chunks():
    # max_num_batched_tokens 64: one running decode takes 1 token, the 150-token prompt gets 63, then 63,
    # then the last 24 -- every step also decodes the running request (V1 has no prefill-only steps)
    sched = scheduler("vllm-v1", max_num_batched_tokens=64)
    drive(sched, [request(0, 10, 50)], steps=2)
    sched.add(request(1, 150, 5))
    steps = [step(sched, 10.0 + i) for i in range(3)]
    assert [taken.decoding_seqs for taken in steps] == [1, 1, 1]
    assert [chunk.tokens for taken in steps for chunk in taken.plan.prefills] == [63, 63, 24]


def test_vllm_v1_admits_no_one_in_a_step_that_preempted():
    # 6 blocks of 4 tokens: two running requests outgrow them and the newer is preempted; the request waiting
    # behind them (small enough to fit the freed blocks) must not be admitted in that same step
    sched = scheduler("vllm-v1", blocks=6, block_size=4)
    first, second = request(0, 8, 12), request(1, 8, 12, arrival=0.1)
    small = request(2, 1, 2, arrival=0.2)
    for req in (first, second):
        sched.add(req)
    now = step(sched, 0.0).end_s  # both prompts prefilled: 3 + 3 blocks, none free
    sched.add(small)
    preempting = None
    for _ in range(30):
        taken = step(sched, now)
        now = taken.end_s
        if taken.plan.preempted:
            preempting = taken
            break
    # the step that preempted request 1 decoded request 0 alone and admitted nobody, though request 2's
    # one block would have fitted in the three freed
    assert preempting is not None and not preempting.plan.prefills and preempting.decoding_seqs == 1
    assert small.state == "waiting"
    drive(sched, [])
    assert all(r.state == DONE for r in (first, second, small))


def test_sglang_prefills_first_in_chunks_and_decodes_in_steps_of_their_own():
    sched = scheduler("sglang", chunk_tokens=64)
    drive(sched, [request(0, 10, 50)], steps=2)
    sched.add(request(1, 150, 5))
    steps = [step(sched, 10.0 + i) for i in range(4)]
    # 150 prompt tokens in chunks of 64, 64, 22, each step prefill only; then both decode
    assert [taken.decoding_seqs for taken in steps] == [0, 0, 0, 2]
    assert [chunk.tokens for taken in steps for chunk in taken.plan.prefills] == [64, 64, 22]


def test_sglang_retracts_the_request_with_the_shortest_output_so_far_first():
    # request 0 starts first and has generated more tokens when blocks run out: request 1 is retracted
    sched = scheduler("sglang", blocks=6, block_size=4)
    first, second = request(0, 8, 12), request(1, 8, 12)
    sched.add(first)
    step(sched, 0.0)
    step(sched, 1.0)  # request 0 has two tokens now
    sched.add(second)
    drive(sched, [])
    assert second.preemptions >= 1 and first.preemptions == 0


def test_trtllm_admits_only_what_fits_at_its_longest_and_never_preempts():
    # 6 blocks of 4 tokens; each request reaches 19 cached tokens (8 + 12 - 1): 5 blocks. The second must
    # wait for the first to finish, where vLLM would admit both and preempt one
    sched = scheduler("trtllm", blocks=6, block_size=4)
    first, second = request(0, 8, 12), request(1, 8, 12)
    steps = drive(sched, [first, second])
    assert not any(taken.plan.preempted for taken in steps) and first.preemptions == second.preemptions == 0
    assert second.first_scheduled_s >= first.completion_s
    mixed = scheduler("trtllm", max_num_batched_tokens=64)
    drive(mixed, [request(0, 10, 50)], steps=2)
    mixed.add(request(1, 40, 5))
    taken = step(mixed, 10.0)  # the whole prompt joins the running decode in one step
    assert taken.decoding_seqs == 1 and [c.tokens for c in taken.plan.prefills] == [40]


def test_trtllm_admits_at_once_exactly_what_fits_at_its_longest_beside_a_running_request():
    # 20 blocks of 4 tokens. A running request (8 + 12 tokens: 19 cached at its longest, 5 blocks) has
    # decoded; six 8/4-token requests (11 cached at their longest: 3 blocks each) arrive together. At their
    # longest, 5 + 5 x 3 = 20 blocks fill the cache exactly, so five join in one step; the sixth would need
    # 23 and waits, though 7 blocks stay free now
    sched = scheduler("trtllm", blocks=20, block_size=4)
    drive(sched, [request(0, 8, 12)], steps=2)
    arrivals = [request(i, 8, 4) for i in range(1, 7)]
    for req in arrivals:
        sched.add(req)
    taken = step(sched, 2.0)
    assert [c.tokens for c in taken.plan.prefills] == [8] * 5
    assert sched.kv.pool.available_blocks == 20 - 3 - 5 * 2  # the running one's 3 (10 tokens), 2 each
    assert np.isnan(arrivals[5].first_scheduled_s)


def test_trtllm_with_chunked_context_prefills_a_long_prompt_over_steps_beside_running_decodes():
    # budget 64 tokens a step, decodes counted: a 10-token request decodes, then a 150-token prompt arrives.
    # Without chunking it can never fit the budget and is refused; with it, each step gives the prompt what
    # the decode leaves: 63, 63, then the last 24 tokens (150 = 63 + 63 + 24)
    long = request(1, 150, 5)
    assert "exceeds scheduler.max_num_batched_tokens=64" in scheduler("trtllm", max_num_batched_tokens=64).reject_reason(long)
    sched = scheduler("trtllm-chunked", max_num_batched_tokens=64)
    assert sched.reject_reason(long) == ""
    drive(sched, [request(0, 10, 50)], steps=2)
    sched.add(long)
    taken = [step(sched, 10.0 + i) for i in range(3)]
    assert [[c.tokens for c in one.plan.prefills] for one in taken] == [[63], [63], [24]]
    assert [one.decoding_seqs for one in taken] == [1, 1, 1] and long.first_token_s == 13.0


def test_trtllm_in_a_prefill_pool_reserves_no_output_blocks():
    # a disaggregated prefill replica hands requests off once prefilled: the same two requests (8-token
    # prompts, 2 blocks each) are prefilled together in the first step, not one after the other
    kv = KVCacheManager(PagedAllocator(4), 6)
    sched = SCHEDULERS["trtllm"](SchedulerLimits(), kv, hands_off_prefilled=True)
    sched.add(request(0, 8, 12))
    sched.add(request(1, 8, 12))
    assert [c.tokens for c in sched.schedule(0.0).prefills] == [8, 8]


def test_trtllm_carried_reserve_equals_the_fresh_sum_at_every_admission():
    # The reserve is carried from one admission candidate to the next within a step (only newcomers added);
    # at every candidate it must equal summing what every running request will still take afresh, through
    # arrivals, completions, several sequences per request and prompts chunked over steps
    from infersim.sim.schedulers.trtllm import TrtllmScheduler

    checked = []

    def fresh(sched):
        running = list(sched._decoding.values()) + sched.prefilling
        return sum(sched.kv.peak_blocks(r) - sched.kv.blocks_of(r) for r in running)

    for name in ("trtllm", "trtllm-chunked"):
        sched = scheduler(name, blocks=400, block_size=4, max_num_batched_tokens=64)
        carried = sched._running_reserve

        def checking(self=sched, carried=carried):
            value = carried()
            assert value == fresh(self)
            checked.append(value)
            return value
        sched._running_reserve = checking
        rng = np.random.default_rng(7)
        requests = [Request(i, 0.0, int(rng.integers(4, 60)), int(rng.integers(2, 30)), num_seqs=int(rng.integers(1, 4)))
                    for i in range(40)]
        for batch in (requests[:15], requests[15:30], requests[30:]):
            drive(sched, batch, steps=6)
        drive(sched, [])
        assert isinstance(sched, TrtllmScheduler) and all(r.state == DONE for r in requests)
    assert len(checked) > 40
