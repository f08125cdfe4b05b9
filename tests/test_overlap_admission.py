"""An overlapping engine forms step n + 1 when step n starts, so a request that arrives while step n runs first
runs in step n + 2 (sim.replica.Replica; SGLang's event_loop_overlap, TensorRT-LLM's _executor_loop_overlap,
vLLM PR #19970's async scheduler). The SimPy replicas and the compiled loop tell it alike.

The runs are host-bound on purpose: the tiny model's steps take far less than 1 ms of GPU time on an A100, so
with 1 ms of overlapped host time every step takes exactly 1 ms and the times below are worked out by hand."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import StepOptions, get_hardware, get_model
from infersim.sim import compiled_replica
from infersim.sim.engines import preset_config
from infersim.sim.replica import EngineOverhead
from infersim.sim.run import requests_from, simulate
from infersim.sim.workload import Workload

TINY, A100 = get_model("tiny-llama"), get_hardware("a100-sxm-80gb")
STEP_S = 1e-3


def _run(workload: Workload, overlaps: bool, compiled: bool, monkeypatch, concurrency=None):
    overhead = EngineOverhead(STEP_S, 0.0, overlaps_gpu=overlaps)
    cfg = dataclasses.replace(preset_config("vllm-v1", TINY, A100, StepOptions(), 2048), overhead=overhead,
                              concurrency=concurrency)
    requests = requests_from(workload)
    assert not compiled or compiled_replica.applies(cfg, requests)
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(compiled_replica, "applies", lambda cfg, requests: False)
        return simulate(cfg, requests)


def _steps_s(result) -> np.ndarray:
    return np.sort(np.asarray(result.timeline["duration_s"]))


@pytest.mark.parametrize("compiled", [True, False])
def test_a_request_arriving_mid_step_is_first_scheduled_a_step_later_than_without_overlap(compiled, monkeypatch):
    # A (64-token prompt, 20 tokens) runs from 0: its prompt in [0, 1) ms, then one decode step a millisecond.
    # B arrives at 2.5 ms, in step [2, 3). In series the plan made at 3 ms sees it: prefilled in [3, 4), first
    # token at 4 ms. Overlapped, step [3, 4) was formed at 2 ms without it: prefilled in [4, 5), token at 5 ms.
    wl = Workload(np.array([0.0, 2.5e-3]), np.array([64, 64]), np.array([20, 4]))
    overlapped = _run(wl, True, compiled, monkeypatch)
    a, b = overlapped.requests
    assert a.first_token_s == pytest.approx(1e-3, abs=1e-12)
    assert b.first_scheduled_s == pytest.approx(4e-3, abs=1e-12)
    assert b.first_token_s == pytest.approx(5e-3, abs=1e-12)
    assert b.first_token_s - b.arrival_s == pytest.approx(2.5e-3, abs=1e-12)  # its TTFT
    assert b.completion_s == pytest.approx(8e-3, abs=1e-12)  # 3 more tokens, a step each
    # A's 20 tokens come a step apart all the same: 1 ms each, done at 20 ms
    assert a.completion_s == pytest.approx(20e-3, abs=1e-12)
    in_series = _run(wl, False, compiled, monkeypatch)
    b_series = in_series.requests[1]
    # in series every step is 1 ms of host plus its GPU time: B is seen at the end of the step it landed in
    ends_s = np.sort(np.asarray(in_series.timeline["start_s"]) + np.asarray(in_series.timeline["duration_s"]))
    landed_in_ends_s = ends_s[np.searchsorted(ends_s, 2.5e-3)]
    assert b_series.first_scheduled_s == pytest.approx(landed_in_ends_s, abs=1e-12)
    assert 3e-3 < b_series.first_scheduled_s < b.first_scheduled_s


@pytest.mark.parametrize("compiled", [True, False])
def test_an_idle_replica_or_an_empty_next_step_takes_the_arrival_at_once(compiled, monkeypatch):
    # A is only a prompt (1 token, sampled as its prefill ends at 1 ms): the step after it would be empty, so B,
    # arriving at 0.5 ms during A's step, runs in [1, 2). C arrives at 10 ms to an idle replica: runs at once.
    wl = Workload(np.array([0.0, 0.5e-3, 10e-3]), np.array([64, 64, 64]), np.array([1, 1, 1]))
    a, b, c = _run(wl, True, compiled, monkeypatch).requests
    assert a.first_scheduled_s == 0.0 and a.completion_s == pytest.approx(1e-3, abs=1e-12)
    assert b.first_scheduled_s == pytest.approx(1e-3, abs=1e-12)
    assert b.completion_s == pytest.approx(2e-3, abs=1e-12)
    assert c.first_scheduled_s == pytest.approx(10e-3, abs=1e-12)
    assert c.completion_s == pytest.approx(11e-3, abs=1e-12)


def test_a_closed_loop_clients_next_request_waits_a_step_while_another_client_decodes(monkeypatch):
    # two clients: X's requests have 2 tokens, Y's one request 30. X1 and Y1 start together at 0 (prompts in
    # [0, 1) ms), X1's second token at 2 ms; X2 reaches the engine then, while Y decodes: step [2, 3) was formed
    # at 1 ms without it, so X2 is prefilled in [3, 4) and its first token comes at 4 ms (TTFT 2 ms, where an
    # engine in series would have 1 step of it)
    wl = Workload(np.zeros(3), np.array([64, 64, 64]), np.array([2, 30, 2]))
    x1, y1, x2 = _run(wl, True, False, monkeypatch, concurrency=2).requests
    assert x1.completion_s == pytest.approx(2e-3, abs=1e-12)
    assert x2.arrival_s == pytest.approx(2e-3, abs=1e-12)
    assert x2.first_scheduled_s == pytest.approx(3e-3, abs=1e-12)
    assert x2.first_token_s == pytest.approx(4e-3, abs=1e-12)
    assert y1.completion_s == pytest.approx(30e-3, abs=1e-12)


def test_the_compiled_loop_and_simpy_agree_under_load_with_overlap(monkeypatch):
    rng = np.random.default_rng(3)
    n = 300
    wl = Workload(np.cumsum(rng.exponential(1 / 400.0, n)), rng.integers(16, 400, n), rng.integers(1, 60, n))
    compiled = _run(wl, True, True, monkeypatch)
    simpy_run = _run(wl, True, False, monkeypatch)
    for column, values in simpy_run.table.items():
        np.testing.assert_array_equal(compiled.table[column], values, err_msg=column)
    np.testing.assert_array_equal(_steps_s(compiled), _steps_s(simpy_run))
