"""Replicas simulated apart (one environment each, over worker processes) give the run of one environment."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import get_hardware, get_model
from infersim.sim.cluster import Colocated
from infersim.sim.run import RunConfig, requests_from, simulate
from infersim.sim.shards import SHARD_MIN_REQUESTS, simulate_sharded, worth_sharding
from infersim.sim.workload import Workload

# summed in the order events happen across replicas: equal but for rounding
SUMMED_ACROSS_REPLICAS = {"itl_s", "model_flops_utilization", "model_bandwidth_utilization"}


def _workload(n: int) -> Workload:
    rng = np.random.default_rng(7)
    return Workload(np.cumsum(rng.exponential(1 / 40.0, n)), rng.integers(20, 900, n), rng.integers(1, 120, n))


def test_replicas_simulated_apart_give_the_table_timeline_and_summary_of_one_environment():
    cfg = RunConfig(get_model("tiny-llama"), get_hardware("a100-sxm-80gb"), cluster=Colocated(5, "round_robin"))
    wl = _workload(300)
    whole = simulate(cfg, requests_from(wl))
    apart = simulate_sharded(cfg, requests_from(wl), workers=2)
    in_one_process = simulate_sharded(cfg, requests_from(wl), workers=1)
    assert in_one_process.summary == apart.summary  # the same blocks, merged in the same order, wherever run
    for name, column in whole.table.items():
        assert np.array_equal(apart.table[name], column, equal_nan=column.dtype.kind == "f"), name
    for name, column in whole.timeline.items():
        assert np.array_equal(apart.timeline[name], column), name
    assert [r.index for r in apart.replicas] == list(range(5))
    for key, value in whole.summary.items():
        if key in SUMMED_ACROSS_REPLICAS:
            assert apart.summary[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert apart.summary[key] == value, key


def test_only_large_open_loop_runs_behind_a_router_that_fixes_each_replicas_requests_are_split():
    cfg = RunConfig(get_model("tiny-llama"), get_hardware("a100-sxm-80gb"), cluster=Colocated(4, "round_robin"))
    large = [None] * SHARD_MIN_REQUESTS
    assert worth_sharding(cfg, large, None)  # on any machine: the figures must not depend on its CPUs
    assert not worth_sharding(cfg, large[:-1], None)  # small
    assert not worth_sharding(cfg, large, lambda done, now_s: None)  # progress is reported as the run goes
    assert not worth_sharding(dataclasses.replace(cfg, concurrency=8), large, None)  # closed loop
    assert not worth_sharding(dataclasses.replace(cfg, cluster=Colocated(4, "least_outstanding")), large, None)
    assert not worth_sharding(dataclasses.replace(cfg, cluster=Colocated(1)), large, None)
