"""Routers and metrics on their own, with hand-worked values."""
import numpy as np
import pytest

from infersim.roofline.step import UtilizationPeaks
from infersim.sim.metrics import Metrics, RunRecord, Slo, StepRecord, request_table, stats, summarize
from infersim.sim.request import DONE, Request
from infersim.sim.router import ROUTERS, make_router


class FakeReplica:
    def __init__(self, index, outstanding, kv_usage):
        self.index, self.outstanding, self.kv_usage = index, outstanding, kv_usage


def test_round_robin_goes_in_turn_and_knows_each_replicas_arrivals_in_advance():
    replicas = [FakeReplica(i, 0, 0.0) for i in range(3)]
    router = make_router("round_robin", replicas)
    requests = [Request(i, float(i), 10, 10) for i in range(7)]
    assert router.arrival_times(requests) == [[0.0, 3.0, 6.0], [1.0, 4.0], [2.0, 5.0]]
    assert [router.pick().index for _ in range(4)] == [0, 1, 2, 0]


def test_least_outstanding_and_least_kv_pick_the_emptiest_with_deterministic_ties():
    replicas = [FakeReplica(0, 3, 0.5), FakeReplica(1, 1, 0.9), FakeReplica(2, 1, 0.2), FakeReplica(3, 2, 0.2)]
    assert make_router("least_outstanding", replicas).pick().index == 1  # 1 outstanding: replicas 1, 2 -> 1
    assert make_router("least_kv", replicas).pick().index == 2  # 20% used: 2 and 3 -> fewer outstanding
    assert make_router("least_outstanding", replicas).arrival_times([]) is None
    assert set(ROUTERS) == {"round_robin", "least_outstanding", "least_kv"}


def test_a_run_of_decode_steps_becomes_one_timeline_row_per_step_with_its_blocks_and_tokens():
    metrics = Metrics()
    metrics.step(StepRecord(0.0, 0.5, 0, 2, 100, 0, 7, 3, 100))  # a prefill of two prompts
    # two sequences at contexts with first block boundaries after 0 and 2 steps (block size 4)
    metrics.run(np.array([1.0, 1.5, 2.0]), np.array([0.5, 0.5, 0.5]), RunRecord(0, 2, 7, 3, 1, 2, 0, 100),
                np.array([1, 1, 2, 2]))
    tl = metrics.timeline()
    assert tl["start_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert tl["kv_blocks_used"].tolist() == [7, 8, 8, 9]  # +1 at step 0, +1 more at step 2
    assert tl["kv_tokens"].tolist() == [100, 102, 104, 106]
    assert tl["queue_len"].tolist() == [3, 3, 1, 1]  # the run's later steps see the queue once it was planned
    assert tl["decode_tokens"].tolist() == [0, 2, 2, 2]


def test_inter_token_gaps_are_weighted_by_the_tokens_after_them():
    metrics = Metrics()
    metrics.inter_token_gaps(np.array([0.1, 0.3]), np.array([3, 1]))  # 3 tokens after 0.1 s, 1 after 0.3
    metrics.step_gaps(np.array([0.2]), 4)  # 4 tokens after 0.2 s
    gaps, weights = metrics.itl_gaps()
    result = stats(gaps, weights)
    # 8 tokens: 0.1 x 3, 0.2 x 4, 0.3 x 1 -> mean 1.4 / 8 = 0.175; 7 of 8 (87.5%) are <= 0.2, so the
    # median is 0.2 and p90 and p99 are 0.3
    assert result == pytest.approx({"mean": 0.175, "p50": 0.2, "p90": 0.3, "p99": 0.3})


def test_a_summary_without_an_slo_has_no_goodput_and_an_empty_one_no_percentiles():
    req = Request(0, 0.0, 10, 1)
    req.state, req.first_scheduled_s, req.first_token_s, req.completion_s = DONE, 0.0, 0.5, 0.5
    table, metrics = request_table([req]), Metrics()
    metrics.step(StepRecord(0.0, 0.5, 0, 1, 10, 0, 1, 0, 10))
    summary = summarize(table, metrics.timeline(), metrics, kv_blocks_per_replica=10, block_size_tokens=16,
                        replicas=1, slo=Slo(), peaks=UtilizationPeaks(1e12, 1e12))
    assert summary["goodput_requests_per_s"] is None and summary["slo_attainment"] is None
    assert summary["tpot_s"] == {"mean": None, "p50": None, "p90": None, "p99": None}  # one output token
    assert summary["ttft_s"]["p50"] == 0.5 and summary["throughput_requests_per_s"] == 2.0
    with_slo = summarize(table, metrics.timeline(), metrics, kv_blocks_per_replica=10, block_size_tokens=16,
                         replicas=1, slo=Slo(ttft_s=0.4), peaks=UtilizationPeaks(1e12, 1e12))
    assert with_slo["slo_attainment"] == 0.0 and with_slo["goodput_requests_per_s"] == 0.0
