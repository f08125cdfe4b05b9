"""The simulator against the roofline, against itself stepping one iteration at a time, and its invariants."""
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infersim.roofline import decode_batch, get_hardware, get_model, prefill_batch, step_cost
from infersim.roofline.kernel_set import KernelSet
from infersim.sim.cluster import Colocated, Disaggregated
from infersim.sim.compiled_replica import CompiledReplica
from infersim.sim.run import KVCacheSpec, RunConfig, requests_from, simulate
from infersim.sim.replica import EngineOverhead
from infersim.sim.request import DONE, REJECTED
from infersim.sim.schedulers import SCHEDULERS, SchedulerLimits
from infersim.sim.workload import Workload, arrival_times

LLAMA, A100 = get_model("llama-2-7b"), get_hardware("a100-sxm-80gb")
TINY = get_model("tiny-llama")


def config(model, hw, *, allocator=None, num_blocks=None, block_size_tokens=16, prefix_caching=False, replicas=1,
           router="round_robin", disaggregated=False, **kw) -> RunConfig:
    """A run configuration from the knobs these tests turn."""
    cluster = Disaggregated(router=router) if disaggregated else Colocated(replicas, router)
    kv = KVCacheSpec(block_size_tokens=block_size_tokens, num_blocks=num_blocks, allocator=allocator,
                     prefix_caching=prefix_caching)
    return RunConfig(model, hw, kv_cache=kv, cluster=cluster, **kw)


def workload(n, rate, prompt, output, seed=0):
    rng = np.random.default_rng(seed)
    return Workload(arrival_times("poisson", rate, n, rng), rng.integers(prompt[0], prompt[1], n, endpoint=True),
                    rng.integers(output[0], output[1], n, endpoint=True))


def run(cfg, wl, **kw):
    return simulate(cfg, requests_from(wl, **kw))


def test_one_request_alone_sees_the_roofline_prefill_and_decode_times():
    cfg = config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0))
    res = run(cfg, Workload(np.array([0.0]), np.array([1000]), np.array([50])))
    req = res.requests[0]
    assert req.first_token_s == pytest.approx(step_cost(LLAMA, A100, prefill_batch([1000])).time_s, rel=1e-12)
    # decode step j reads the 1000 prompt tokens plus the j generated ones already cached
    decode_s = sum(step_cost(LLAMA, A100, decode_batch([1000 + j])).time_s for j in range(49))
    assert req.completion_s - req.first_token_s == pytest.approx(decode_s, rel=1e-12)
    assert res.summary["tpot_s"]["mean"] == pytest.approx(decode_s / 49, rel=1e-12)


def test_engine_overhead_adds_its_fixed_and_per_sequence_parts_to_every_step():
    bare = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0)),
               Workload(np.array([0.0]), np.array([100]), np.array([11]))).requests[0]
    slow = run(config(LLAMA, A100, overhead=EngineOverhead(2e-3, 1e-4)),
               Workload(np.array([0.0]), np.array([100]), np.array([11]))).requests[0]
    assert slow.first_token_s - bare.first_token_s == pytest.approx(2.1e-3, rel=1e-9)
    assert slow.completion_s - bare.completion_s == pytest.approx(11 * 2.1e-3, rel=1e-9)  # 1 prefill + 10 decodes


def test_decode_steps_replayed_from_a_cuda_graph_pay_the_graph_floor_per_kernel():
    from infersim.roofline.kernel_set import KernelSet
    wl = Workload(np.array([0.0]), np.array([100]), np.array([11]))
    eager = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0)), wl).requests[0]
    graphs = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=KernelSet(graph_max_batch=8)),
                 wl).requests[0]
    # the prefill runs eagerly; each of the 10 decode steps launches 388 kernels (12 per layer x 32 layers +
    # embedding, final norm, LM head, sampling) at 1.0 us instead of the A100's 4.6 us eager floor
    assert graphs.first_token_s == pytest.approx(eager.first_token_s, rel=1e-12)
    saved_s = (eager.completion_s - eager.first_token_s) - (graphs.completion_s - graphs.first_token_s)
    assert saved_s == pytest.approx(10 * 388 * (4.6e-6 - 1.0e-6), rel=1e-6)


def test_steps_replayed_from_piecewise_graphs_launch_only_attention_eagerly():
    from infersim.roofline.kernel_set import KernelSet
    wl = Workload(np.array([0.0]), np.array([100]), np.array([11]))
    from infersim.roofline.kernel_set import Replay
    pieces = KernelSet(graph_max_batch=8, piecewise_max_tokens=100)
    assert pieces.replay(False, 1, 100) == Replay.PIECES and pieces.replay(False, 1, 101) == Replay.EAGER
    assert pieces.replay(True, 8, 8) == Replay.GRAPH and pieces.replay(True, 9, 9) == Replay.PIECES
    # 32 attention kernels, one a layer, at the A100's 4.6 us eager floor rather than the graph's 1.0 us
    assert pieces.eager_attention_s(A100, 32) == pytest.approx(32 * 3.6e-6, rel=1e-12)
    graphs = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=KernelSet(graph_max_batch=8)),
                 wl).requests[0]
    piecewise = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=pieces), wl).requests[0]
    # the 100-token prefill's 388 kernels (12 a layer x 32 + 4) at 1.0 us but its 32 attention kernels at
    # 4.6 us: 356 x 3.6 us saved; the decode steps replay the whole graph either way
    assert graphs.first_token_s - piecewise.first_token_s == pytest.approx(356 * 3.6e-6, rel=1e-6)
    assert piecewise.completion_s - piecewise.first_token_s == pytest.approx(
        graphs.completion_s - graphs.first_token_s, rel=1e-12)
    longer = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=pieces),
                 Workload(np.array([0.0]), np.array([101]), np.array([2]))).requests[0]
    eager_101 = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0)),
                    Workload(np.array([0.0]), np.array([101]), np.array([2]))).requests[0]
    assert longer.first_token_s == pytest.approx(eager_101.first_token_s, rel=1e-12)  # past 100 tokens: eager


def test_kernels_enqueued_from_cpp_pay_their_own_floor_in_every_step():
    from infersim.roofline.kernel_set import KernelSet
    wl = Workload(np.array([0.0]), np.array([100]), np.array([11]))
    eager = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0)), wl).requests[0]
    cpp = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=KernelSet(eager_floor_s=1.4e-6)),
              wl).requests[0]
    # the prefill and each of the 10 decode steps launch 388 kernels at 1.4 us instead of 4.6 us
    assert eager.first_token_s - cpp.first_token_s == pytest.approx(388 * 3.2e-6, rel=1e-6)
    saved_s = (eager.completion_s - eager.first_token_s) - (cpp.completion_s - cpp.first_token_s)
    assert saved_s == pytest.approx(10 * 388 * 3.2e-6, rel=1e-6)
    # an all-reduce the engine enqueues costs the same floor, not the 30 us of an eager NCCL call
    assert KernelSet(eager_floor_s=1.4e-6).eager(A100).collective_call_s == 1.4e-6
    assert KernelSet().eager(A100) is A100


def test_a_drafter_runs_on_the_graph_floor_only_where_the_engine_captures_decode_steps():
    from infersim.roofline.kernel_set import KernelSet
    captures = KernelSet(graph_max_batch=8)
    assert captures.graph_hardware(A100).launch_overhead_s == 1.0e-6  # the H200-measured replay floor
    assert captures.decode_hardware(A100).launch_overhead_s == 1.0e-6
    assert KernelSet().graph_hardware(A100) is None
    # without graphs, a C++-enqueuing engine's drafter pays its 1.4 us floor, a Python one the A100's 4.6 us
    assert KernelSet(eager_floor_s=1.4e-6).decode_hardware(A100).launch_overhead_s == 1.4e-6
    assert KernelSet().decode_hardware(A100).launch_overhead_s == A100.launch_overhead_s == 4.6e-6


def test_host_time_that_overlaps_the_gpu_hides_behind_it_until_it_is_the_longer():
    wl = Workload(np.array([0.0]), np.array([100]), np.array([11]))
    bare = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0)), wl).requests[0]
    decode_s = (bare.completion_s - bare.first_token_s) / 10  # Llama-2-7B decode on an A100: ~7 ms a step
    hidden = run(config(LLAMA, A100, overhead=EngineOverhead(1e-3, 0.0, overlaps_gpu=True)), wl).requests[0]
    assert hidden.completion_s == pytest.approx(bare.completion_s, rel=1e-9)
    slow_host = run(config(LLAMA, A100, overhead=EngineOverhead(20e-3, 0.0, overlaps_gpu=True)), wl).requests[0]
    assert decode_s < 20e-3 and slow_host.completion_s - slow_host.first_token_s == pytest.approx(10 * 20e-3, rel=1e-9)


@pytest.mark.parametrize("scheduler,allocator,preemption,router,disaggregated,seqs", [
    ("vllm", "paged", "recompute", "round_robin", False, 1), ("vllm", "paged", "swap", "round_robin", False, 1),
    ("vllm", "paged", "recompute", "least_outstanding", False, 1),  # arrivals not known in advance: they interrupt
    ("vllm", "paged", "recompute", "least_kv", False, 1),  # the router sees blocks a run has opened so far
    ("sarathi", "paged", "recompute", "round_robin", False, 1), ("orca", "contiguous", "recompute", "least_kv", False, 1),
    ("vllm-v1", "paged", "recompute", "round_robin", False, 2), ("vllm-v1", "paged", "recompute", "least_kv", True, 1),
    ("sglang", "paged", "recompute", "least_outstanding", False, 1), ("trtllm", "paged", "recompute", "round_robin", False, 2),
    ("static", "contiguous", "recompute", "round_robin", False, 1),
    ("vllm", "paged", "recompute", "round_robin", True, 1), ("vllm", "paged", "swap", "least_kv", True, 2),
    ("sarathi", "paged", "recompute", "round_robin", True, 1), ("orca", "paged", "recompute", "round_robin", True, 3),
    ("static", "contiguous", "recompute", "round_robin", True, 1)])
def test_decode_jumps_give_the_same_results_as_stepping_one_iteration_at_a_time(scheduler, allocator, preemption,
                                                                                router, disaggregated, seqs):
    contiguous = allocator == "contiguous"  # reserves max_model_len = 64 blocks a request: 4 fit
    cfg = config(TINY, A100, scheduler=scheduler, allocator=allocator,
                 disaggregated=disaggregated, num_blocks=256 if contiguous else 120,
                 block_size_tokens=8, replicas=1 if router == "round_robin" else 2, router=router,
                 limits=SchedulerLimits(max_num_seqs=16, max_num_batched_tokens=2048, max_model_len=512,
                                        chunk_tokens=256, preemption=preemption))
    wl = workload(150, 200.0, (20, 300), (1, 200), seed=1)
    fast, slow = run(cfg, wl, num_seqs=seqs), run(replace(cfg, jumps=False), wl, num_seqs=seqs)
    assert all(r.state in (DONE, REJECTED) for r in fast.requests)
    for a, b in zip(fast.requests, slow.requests):
        assert (a.state, a.preemptions, a.generated_tokens) == (b.state, b.preemptions, b.generated_tokens)
        for t in ("first_token_s", "completion_s", "max_itl_s"):
            assert getattr(a, t) == pytest.approx(getattr(b, t), rel=1e-9, abs=1e-12)
    ft, st_ = fast.metrics.timeline(), slow.metrics.timeline()
    assert len(ft["start_s"]) == len(st_["start_s"])
    for col in ("batch_seqs", "kv_blocks_used", "queue_len", "prefill_tokens"):
        assert np.array_equal(ft[col], st_[col]), col
    assert np.allclose(ft["duration_s"], st_["duration_s"], rtol=1e-9)
    assert fast.summary["itl_s"] == pytest.approx(slow.summary["itl_s"], rel=1e-9)
    assert fast.summary["steps"] == slow.summary["steps"]
    if scheduler == "vllm" and not disaggregated:
        assert fast.summary["preemptions"] > 0  # the small cache really forced preemption


@pytest.mark.parametrize("overlapped", [False, True])
def test_padded_decode_jumps_give_the_same_results_as_stepping(overlapped):
    # a padded capture (1, 2, 4, 8, 16): runs of 5-7 sequences replay 8 rows, the padding rows' context never
    # grows, whether the run is jumped over or stepped one iteration at a time
    cfg = config(TINY, A100, overhead=EngineOverhead(1e-4, 1e-6, overlaps_gpu=overlapped),
                 kernels=KernelSet(graph_max_batch=16, padded_sizes=(1, 2, 4, 8, 16)))
    wl = workload(60, 100.0, (20, 300), (50, 400), seed=3)
    fast, slow = run(cfg, wl), run(replace(cfg, jumps=False), wl)
    for a, b in zip(fast.requests, slow.requests):
        for t in ("first_token_s", "completion_s", "max_itl_s"):
            assert getattr(a, t) == pytest.approx(getattr(b, t), rel=1e-9, abs=1e-12)
    assert fast.summary["model_flops_utilization"] == pytest.approx(slow.summary["model_flops_utilization"], rel=1e-9)


def test_a_request_larger_than_the_kv_cache_is_rejected_with_a_reason():
    cfg = config(TINY, A100, num_blocks=10, block_size_tokens=16, limits=SchedulerLimits(max_model_len=1024))
    res = run(cfg, Workload(np.array([0.0, 1.0]), np.array([100, 300]), np.array([20, 10])))
    ok, big = res.requests
    assert ok.state == DONE and ok.generated_tokens == 20
    assert big.state == REJECTED and "KV blocks" in big.reject_reason
    assert res.summary["requests_rejected"] == 1


def test_a_request_longer_than_max_model_len_is_rejected():
    cfg = config(TINY, A100, limits=SchedulerLimits(max_model_len=256))
    req = run(cfg, Workload(np.array([0.0]), np.array([200]), np.array([100]))).requests[0]
    assert req.state == REJECTED and "max_model_len=256" in req.reject_reason


def test_continuous_batching_beats_static_batching_on_the_same_traffic():
    wl = workload(300, 4.0, (128, 1024), (16, 512), seed=3)
    limits = SchedulerLimits(max_num_seqs=32, max_model_len=4096)
    static = run(config(LLAMA, A100, scheduler="static", allocator="contiguous", limits=limits), wl).summary
    vllm = run(config(LLAMA, A100, scheduler="vllm", limits=limits), wl).summary
    assert vllm["e2e_s"]["mean"] < static["e2e_s"]["mean"] / 2
    assert vllm["ttft_s"]["p99"] < static["ttft_s"]["p99"]


def test_paging_fits_more_sequences_than_contiguous_reservation():
    wl = workload(300, 20.0, (100, 400), (50, 200), seed=4)
    limits = SchedulerLimits(max_model_len=4096)
    paged = run(config(LLAMA, A100, limits=limits, num_blocks=1000), wl).summary
    contiguous = run(config(LLAMA, A100, limits=limits, num_blocks=1000, allocator="contiguous"), wl).summary
    # contiguous reserves 4096 tokens = 256 blocks a request: at most 3 run at once
    assert contiguous["batch_size_mean"] <= 3
    assert paged["batch_size_mean"] > 3 * contiguous["batch_size_mean"]


def test_prefix_caching_skips_the_shared_prefix_prefill():
    wl = workload(100, 2.0, (2100, 2100), (10, 10), seed=5)
    kw = dict(prefix_id=np.zeros(100, dtype=np.int64), prefix_tokens=2048)
    cold = run(config(LLAMA, A100), wl, **kw).summary
    warm = run(config(LLAMA, A100, prefix_caching=True), wl, **kw).summary
    assert warm["ttft_s"]["p50"] < cold["ttft_s"]["p50"] / 5


def test_parallel_sequences_share_prompt_blocks_and_all_finish():
    wl = Workload(np.array([0.0]), np.array([100]), np.array([40]))
    res = run(config(TINY, A100, block_size_tokens=16), wl, num_seqs=4)
    assert res.requests[0].state == DONE
    # 100-token prompt: 6 shared full blocks + 1 partial; after 39 decode steps each sequence holds
    # ceil(139 / 16) - 6 = 3 blocks of its own: 6 + 4 x 3 = 18 at the peak
    assert res.metrics.timeline()["kv_blocks_used"].max() == 18


def test_disaggregated_decode_starts_after_the_kv_transfer():
    cfg = config(LLAMA, A100, disaggregated=True, overhead=EngineOverhead(0.0, 0.0))
    req = run(cfg, Workload(np.array([0.0]), np.array([2000]), np.array([2]))).requests[0]
    kv_bytes = 2000 * 2 * 32 * 4096 * 2  # tokens x (K, V) x layers x width x fp16
    transfer_s = A100.interconnect_latency_s + kv_bytes / (A100.interconnect_bandwidth_bytes_per_s * A100.interconnect_efficiency)
    decode_s = step_cost(LLAMA, A100, decode_batch([2000])).time_s
    assert req.completion_s - req.first_token_s == pytest.approx(transfer_s + decode_s, rel=1e-9)


def test_same_seed_same_numbers():
    wl = workload(200, 30.0, (10, 500), (1, 300), seed=6)
    cfg = config(TINY, A100, num_blocks=200, limits=SchedulerLimits(max_model_len=1024))
    a, b = run(cfg, wl), run(cfg, wl)
    assert a.summary == b.summary


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scheduler=st.sampled_from(["static", "orca", "vllm", "sarathi", "vllm-v1", "sglang", "trtllm"]),
       disaggregated=st.booleans(),
       preemption=st.sampled_from(["recompute", "swap"]), block_size=st.sampled_from([1, 8, 16]),
       num_blocks=st.integers(40, 400), rate=st.floats(1.0, 500.0), seqs=st.integers(1, 3),
       prefix=st.booleans(), replicas=st.integers(1, 3), seed=st.integers(0, 1000),
       router=st.sampled_from(["round_robin", "least_outstanding", "least_kv"]))
def test_invariants_hold_on_random_scenarios(scheduler, disaggregated, preemption, block_size, num_blocks, rate, seqs,
                                             prefix, replicas, seed, router):
    allocator = "contiguous" if scheduler == "static" or (scheduler == "orca" and not prefix) else "paged"
    preemption = preemption if "swap" in SCHEDULERS[scheduler].preemption_modes else "recompute"
    cfg = config(TINY, A100, scheduler=scheduler, allocator=allocator,
                 num_blocks=num_blocks, block_size_tokens=block_size, prefix_caching=prefix and allocator == "paged",
                 replicas=replicas, router=router, disaggregated=disaggregated,
                 limits=SchedulerLimits(max_num_seqs=8, max_num_batched_tokens=1024, max_model_len=512,
                                        chunk_tokens=64, preemption=preemption))
    if allocator == "contiguous" and math.ceil(512 / block_size) > num_blocks:
        cfg = replace(cfg, limits=replace(cfg.limits, max_model_len=num_blocks * block_size))
    wl = workload(60, rate, (1, 300), (1, 200), seed=seed)
    kw = dict(num_seqs=seqs, prefix_id=np.arange(60) % 3 if prefix else None, prefix_tokens=64 if prefix else 0)
    res = run(cfg, wl, **kw)
    total = res.total_blocks
    for r in res.requests:
        assert r.state in (DONE, REJECTED)
        if r.state == DONE:
            assert r.generated_tokens == r.output_tokens
            assert r.arrival_s <= r.first_scheduled_s <= r.first_token_s <= r.completion_s
            assert r.completion_s - r.arrival_s >= r.first_token_s - r.arrival_s  # TTFT <= E2E
        else:
            assert r.reject_reason
    tl = res.metrics.timeline()
    assert tl["kv_blocks_used"].max(initial=0) <= total
    assert np.all(np.diff(tl["start_s"]) >= 0)
    for replica in res.replicas:
        if isinstance(replica, CompiledReplica):  # told by one compiled loop (sim/compiled_replica.py)
            assert replica.kv_blocks_in_use == 0 and replica.unfinished == 0
            continue
        assert replica.kv.pool.used_blocks == 0 and replica.outstanding == 0
        s = replica.scheduler
        assert not len(s.waiting) and not s.swapped and not s.prefilling and len(s.running) == 0


def test_timeline_counts_cached_tokens_and_fragmentation_by_hand():
    # a 20-token prompt in blocks of 16: 2 blocks after prefill; decode steps cache tokens 21..24 (the fifth
    # output token is sampled, never cached); every step leaves 32 - tokens slots empty
    res = run(config(TINY, A100, block_size_tokens=16), Workload(np.array([0.0]), np.array([20]), np.array([5])))
    tl = res.metrics.timeline()
    assert tl["kv_tokens"].tolist() == [20, 21, 22, 23, 24]
    assert tl["kv_blocks_used"].tolist() == [2, 2, 2, 2, 2]
    assert 8 / 32 < res.summary["kv_fragmentation_mean"] < 12 / 32


def test_higher_priority_requests_are_admitted_first():
    # three requests arrive while the only sequence slot is taken; the priority-5 one goes next
    cfg = config(TINY, A100, limits=SchedulerLimits(max_num_seqs=1, max_model_len=1024))
    wl = Workload(np.array([0.0, 1e-6, 2e-6, 3e-6]), np.array([50] * 4), np.array([30] * 4))
    res = run(cfg, wl, priority=np.array([0, 0, 0, 5]))
    order = np.argsort([r.first_token_s for r in res.requests]).tolist()
    assert order == [0, 3, 1, 2]


def test_unknown_names_in_a_run_config_are_refused_by_field():
    with pytest.raises(Exception, match=r"^kv_cache.allocator: must be one of paged, contiguous, got 'pagd'"):
        run(config(TINY, A100, allocator="pagd"), Workload(np.array([0.0]), np.array([10]), np.array([2])))


def test_a_whole_prompt_scheduler_needs_a_budget_for_the_longest_context():
    # a preempted request is prefilled again, prompt and output so far: with 4096 tokens of budget and
    # 8192 of context it could never be (vLLM V0 refuses this configuration too)
    limits = SchedulerLimits(max_num_batched_tokens=4096, max_model_len=8192)
    for name in ("vllm", "orca", "static"):
        with pytest.raises(Exception, match=r"^scheduler.max_num_batched_tokens: must be >= scheduler.max_model_len="
                                            r"8192 for the " + name):
            run(config(TINY, A100, scheduler=name, limits=limits), Workload(np.array([0.0]), np.array([10]), np.array([2])))
    for name in ("sarathi", "trtllm"):  # chunks prompts; reserves every block up front and never preempts
        res = run(config(TINY, A100, scheduler=name, limits=limits), Workload(np.array([0.0]), np.array([10]), np.array([2])))
        assert res.summary["requests_completed"] == 1


def test_closed_loop_clients_send_their_next_request_when_the_last_one_completes():
    wl = Workload(np.zeros(12), np.full(12, 100), np.full(12, 20))
    one = simulate(config(LLAMA, A100, concurrency=1), requests_from(wl)).requests
    # one client: every request arrives when the one before it completes, and runs alone
    assert [r.arrival_s for r in one[1:]] == [r.completion_s for r in one[:-1]]
    assert one[0].arrival_s == 0.0 and all(r.first_scheduled_s == r.arrival_s for r in one)
    four = simulate(config(LLAMA, A100, concurrency=4), requests_from(wl))
    times = sorted([(r.arrival_s, 1) for r in four.requests] + [(r.completion_s, -1) for r in four.requests])
    in_flight = np.cumsum([change for _, change in times])
    assert in_flight.max() == 4  # never more than the clients in flight
    # Little's law over the whole run: throughput = clients / mean time in system, within the ramp-down
    s = four.summary
    assert s["throughput_requests_per_s"] == pytest.approx(4 / s["e2e_s"]["mean"], rel=0.25)


def test_a_closed_loop_of_refused_requests_sends_them_all_without_recursing():
    # each too-long request is refused inside submit(), which sends the next: 3000 in a row must not
    # nest 3000 calls deep (they once raised RecursionError)
    wl = Workload(np.zeros(3000), np.full(3000, 5000), np.full(3000, 10))
    cfg = config(TINY, A100, concurrency=2, limits=SchedulerLimits(max_model_len=1024))
    res = simulate(cfg, requests_from(wl))
    assert res.summary["requests_rejected"] == 3000
    assert all(r.state == REJECTED and r.arrival_s == 0.0 for r in res.requests)


def test_a_padded_graph_replay_runs_its_padding_rows():
    # One sequence decoding in a graph captured padded at 4 and 8 sequences: its step replays the graph of 4,
    # the padding three one-token rows with no context, so it costs the roofline's decode step of contexts
    # [100, 0, 0, 0] on the graph's hardware (GEMM rows, norms and sampling at 4).
    from infersim.roofline.kernel_set import KernelSet, Replay
    padded = KernelSet(graph_max_batch=8, padded_sizes=(4, 8))
    wl = Workload(np.array([0.0]), np.array([100]), np.array([2]))
    req = run(config(LLAMA, A100, overhead=EngineOverhead(0.0, 0.0), kernels=padded), wl).requests[0]
    step_s = step_cost(LLAMA, padded.in_graph(A100), decode_batch([100, 0, 0, 0])).time_s
    assert req.completion_s - req.first_token_s == pytest.approx(step_s, rel=1e-12)
    # the smallest captured size at least the batch: 1 -> 4 (3 rows), 5 -> 8 (3), 8 -> 8 (0); 9 replays no graph
    assert [padded.padding_rows(n) for n in (1, 5, 8)] == [3, 3, 0]
    assert padded.replay(True, 9, 9) == Replay.EAGER
    assert KernelSet(graph_max_batch=8).padding_rows(5) == 0  # no sizes listed: the padding is not costed
    # a padded capture in place of an unpadded one: its sizes dropped, replayed up to the largest padded size
    unpadded = KernelSet(graph_max_batch=128, captured_sizes=frozenset({1, 2, 64, 128}))
    assert unpadded.padded_capture((4, 8)) == padded
    assert unpadded.padded_capture((4, 8), max_batch=4).graph_max_batch == 4


def test_padded_sizes_must_ascend_and_not_come_with_an_unpadded_capture():
    from infersim.roofline import SpecError
    from infersim.roofline.kernel_set import KernelSet
    with pytest.raises(SpecError, match="cuda_graph_padded_sizes"):
        KernelSet(graph_max_batch=8, padded_sizes=(8, 4))
    with pytest.raises(SpecError, match="cuda_graph_padded_sizes"):
        KernelSet(graph_max_batch=8, padded_sizes=(4, 8), captured_sizes=frozenset({4}))
