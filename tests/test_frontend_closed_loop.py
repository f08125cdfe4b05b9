"""The front end's time per request (EngineOverhead.frontend_s) in a closed loop: a client has its answer the
front end's after-part later than the engine, and its next request reaches the engine the before-part after
that, so `frontend_s` apart in all; in an open loop it moves no arrival."""
import json
from dataclasses import replace

import numpy as np
import pytest

from infersim.roofline import SpecError, get_hardware, get_model
from infersim.serving import ServingRun, read_csv_runs, read_vllm_bench_json, simulate_run
from infersim.sim.replica import EngineOverhead
from infersim.sim.request import DONE, REJECTED
from infersim.sim.run import RunConfig, requests_from, simulate
from infersim.sim.schedulers import SchedulerLimits
from infersim.sim.workload import Workload, arrival_times

TINY, A100 = get_model("tiny-llama"), get_hardware("a100-sxm-80gb")


def closed_loop(clients: int, frontend_s: float, workload: Workload, **kw):
    cfg = RunConfig(TINY, A100, overhead=EngineOverhead(1e-3, 0.0, frontend_s=frontend_s), concurrency=clients, **kw)
    return simulate(cfg, requests_from(workload))


def fixed(n: int, prompt_tokens=64, output_tokens=8) -> Workload:
    return Workload(np.zeros(n), np.full(n, prompt_tokens), np.full(n, output_tokens))


def test_one_clients_next_request_reaches_the_engine_frontend_s_after_the_last_completed():
    res = closed_loop(1, 0.004, fixed(5))
    reqs = res.requests
    engine_s = reqs[0].completion_s  # the first arrives at 0 and runs alone, as every later one does
    assert reqs[0].arrival_s == 0.0 and all(r.state == DONE for r in reqs)
    for before, after in zip(reqs, reqs[1:]):
        assert after.arrival_s == before.completion_s + 0.004
    # so request k arrives at k (E + f) and takes E in the engine: with E the first's engine time
    assert [r.arrival_s for r in reqs] == pytest.approx([k * (engine_s + 0.004) for k in range(5)], rel=1e-12)
    assert [r.completion_s - r.arrival_s for r in reqs] == pytest.approx([engine_s] * 5, rel=1e-9)


@pytest.mark.parametrize("frontend_s", [0.0, 0.002, 0.01])
def test_one_clients_throughput_is_n_over_n_engine_times_plus_n_minus_1_front_ends(frontend_s):
    # the run's span is the first engine arrival to the last engine completion: n engine times E and the
    # n - 1 front-end gaps between them, so n / (n E + (n - 1) f), towards 1 / (E + f) for long runs;
    # E = 9.035 ms on the tiny model (1 prefill + 7 decode steps of 1 ms host time plus kernel floors):
    # 110.7 requests/s at f = 0, 5 / (45.18 ms + 8 ms) = 94.0 at 2 ms, 5 / (45.18 ms + 40 ms) = 58.7 at 10 ms
    n = 5
    res = closed_loop(1, frontend_s, fixed(n))
    engine_s = res.requests[0].completion_s
    expected = n / (n * engine_s + (n - 1) * frontend_s)
    assert res.summary["throughput_requests_per_s"] == pytest.approx(expected, rel=1e-12)
    assert res.summary["throughput_requests_per_s"] == pytest.approx(
        {0.0: 110.68, 0.002: 94.03, 0.01: 58.70}[frontend_s], rel=1e-3)
    # each client still sees every request's engine time plus the front end's as its latency
    assert res.summary["e2e_s"]["mean"] == pytest.approx(engine_s + frontend_s, rel=1e-9)


def test_two_clients_in_step_wait_the_front_end_between_their_batches():
    # both clients' identical requests run as one batch of 2, finishing together at E2; both next ones
    # arrive E2 + f later: 6 requests in 3 rounds span 3 E2 + 2 f
    res = closed_loop(2, 0.005, fixed(6))
    reqs = res.requests
    round_s = reqs[0].completion_s
    assert [r.arrival_s for r in reqs] == pytest.approx(
        [0.0, 0.0, round_s + 0.005, round_s + 0.005, 2 * (round_s + 0.005), 2 * (round_s + 0.005)], rel=1e-12)
    assert res.summary["throughput_requests_per_s"] == pytest.approx(6 / (3 * round_s + 2 * 0.005), rel=1e-9)


def test_a_refused_request_costs_its_client_the_front_end_too():
    # prompts of 300 tokens are refused under max_model_len 256 the moment they reach the engine; the client
    # learns of it through the front end and sends its next one: arrivals 0, E + f, E + 2f, E + 3f
    wl = Workload(np.zeros(4), np.array([64, 300, 300, 64]), np.full(4, 8))
    res = closed_loop(1, 0.003, wl, limits=SchedulerLimits(max_model_len=256))
    reqs = res.requests
    engine_s = reqs[0].completion_s
    assert [r.state for r in reqs] == [DONE, REJECTED, REJECTED, DONE]
    assert [r.arrival_s for r in reqs] == pytest.approx([0.0, engine_s + 0.003, engine_s + 0.006,
                                                         engine_s + 0.009], rel=1e-12)
    assert reqs[3].completion_s == pytest.approx(2 * engine_s + 0.009, rel=1e-9)
    assert res.summary["requests_rejected"] == 2


def test_an_open_loop_keeps_its_arrivals_and_engine_times_whatever_the_front_end():
    rng = np.random.default_rng(7)
    wl = Workload(arrival_times("poisson", 80.0, 30, rng), rng.integers(16, 200, 30), rng.integers(2, 20, 30))
    runs = [simulate(RunConfig(TINY, A100, overhead=EngineOverhead(frontend_s=f)), requests_from(wl))
            for f in (0.0, 0.02)]
    plain, fronted = (run.table for run in runs)
    for column in ("arrival_s", "first_scheduled_s", "first_token_s", "completion_s"):
        assert np.array_equal(plain[column], fronted[column])
    assert np.allclose(fronted["e2e_s"], plain["e2e_s"] + 0.02, rtol=0, atol=1e-12)


def test_a_closed_loop_with_a_front_end_is_deterministic():
    rng = np.random.default_rng(3)
    wl = Workload(np.zeros(40), rng.integers(16, 300, 40), rng.integers(1, 30, 40))
    first, second = (closed_loop(3, 0.0025, wl) for _ in range(2))
    for column in ("arrival_s", "first_token_s", "completion_s", "replica"):
        assert np.array_equal(first.table[column], second.table[column])
    assert first.summary == second.summary


def serving_run(max_concurrency, n=4) -> ServingRun:
    return ServingRun("f.csv:2", "tiny-llama", "a100-sxm-80gb", 1, 64, 8, n, float("inf"), 10.0, 1.0, 100.0,
                      max_concurrency)


def test_compare_serving_drives_a_max_concurrency_run_as_a_closed_loop_with_the_front_end():
    # one client, 4 requests of 8 output tokens, each alone in the engine for E: with no front end 32 tokens
    # in 4 E, so E = 8 / tokens_per_s; with f = 6 ms the span grows by the 3 gaps: 32 / (4 E + 18 ms), and
    # each request's TTFT by f (it still runs alone)
    overhead = EngineOverhead(1e-3, 0.0)
    bare = simulate_run(serving_run(1), "vllm-v1", overhead=overhead)
    fronted = simulate_run(serving_run(1), "vllm-v1", overhead=replace(overhead, frontend_s=0.006))
    engine_s = 8 / bare.output_tokens_per_s
    assert fronted.output_tokens_per_s == pytest.approx(32 / (4 * engine_s + 3 * 0.006), rel=1e-9)
    assert fronted.ttft_ms == pytest.approx(bare.ttft_ms + 6.0, rel=1e-9)
    # the same requests all at once (no max_concurrency) are not held back by the front end
    burst = simulate_run(serving_run(None), "vllm-v1", overhead=replace(overhead, frontend_s=0.006))
    assert burst.output_tokens_per_s > fronted.output_tokens_per_s


def test_measurement_files_say_which_runs_were_closed_loops(tmp_path):
    bench = {"completed": 100, "total_input_tokens": 6400, "total_output_tokens": 800, "request_rate": "inf",
             "max_concurrency": 8, "mean_ttft_ms": 30.0, "mean_tpot_ms": 9.5, "output_throughput": 480.0}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    assert read_vllm_bench_json(path, "tiny-llama", "a100-sxm-80gb", 1)[0].max_concurrency == 8
    path.write_text(json.dumps(bench | {"max_concurrency": None}))
    assert read_vllm_bench_json(path, "tiny-llama", "a100-sxm-80gb", 1)[0].max_concurrency is None
    path.write_text(json.dumps(bench | {"request_rate": 4}))
    with pytest.raises(SpecError, match=r"^bench.json: max_concurrency: is simulated as a closed loop, at "
                                        r"request_rate inf only \(this run's is 4: .*, got 8$"):
        read_vllm_bench_json(path, "tiny-llama", "a100-sxm-80gb", 1)
    csv = tmp_path / "runs.csv"
    csv.write_text("model,hardware,tensor_parallel,input_tokens,output_tokens,num_requests,request_rate_per_s,"
                   "mean_ttft_ms,mean_itl_ms,output_tokens_per_s,max_concurrency\n"
                   "tiny-llama,a100-sxm-80gb,1,64,8,50,inf,20,2,300,4\n"
                   "tiny-llama,a100-sxm-80gb,1,64,8,50,2,20,2,300,\n")
    assert [run.max_concurrency for run in read_csv_runs(csv)] == [4, None]
