"""Capacity planning (infersim/plan.py): the rate search, the roofline ceiling, costs, ranking, executors and
the plan file's errors."""
import json
import math
import re

import numpy as np
import pytest
import yaml

from infersim.executors import LocalExecutor
from infersim.plan import (Ceiling, Pool, Prepared, Work, ceiling_rate, candidates, highest_rate, load_plan,
                           open_loop, pools_per_request, run_plan, SearchTask, _bound, _limit_text, _simulate)
from infersim.scenario import build_run
from infersim.plan_slo import over_bound_to_miss
from infersim.sim import compiled_replica
from infersim.sim.run import simulate
from infersim.roofline.errors import SpecError

TINY = {
    "name": "tiny",
    "models": "tiny-llama",
    "hardware": [{"name": "l4", "price_per_gpu_hour": 0.8, "power_w": 72}],
    "configurations": [{"parallelism": {"tensor_parallel": 2}, "scheduler": {"max_model_len": 512}}],
    "workload": {"prompt_tokens": {"kind": "uniform", "low": 32, "high": 128},
                 "output_tokens": {"kind": "uniform", "low": 16, "high": 64}},
    "slo": {"ttft_s": {"p99": 0.01}, "tpot_s": {"p99": 0.002}},
    "target_rate_per_s": 5000,
    "search": {"seeds": 2, "num_requests": 200, "rate_high_per_s": 40000, "relative_tolerance": 0.05,
               "concurrency": [1, 4]},
}


def write_plan(tmp_path, plan: dict, name="plan.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    ctx = load_plan(write_plan(tmp_path_factory.mktemp("plan"), TINY))
    return ctx, run_plan(ctx, LocalExecutor(1))


def test_highest_rate_brackets_a_threshold_within_the_tolerance():
    # a system that meets its SLO up to 3.7 req/s: from 100, halving reaches 3.125 (meets), then bisection
    # narrows [3.125, 6.25] until the ratio is <= 1.05; the answer is a passing rate within 5% of 3.7
    tried = []

    def meets(rate):
        tried.append(rate)
        return rate <= 3.7
    found = highest_rate(meets, 100.0, 0.1, 0.05)
    assert 3.7 / 1.05 <= found <= 3.7
    assert tried[:6] == [100.0, 50.0, 25.0, 12.5, 6.25, 3.125]


def test_highest_rate_from_a_close_guess_takes_two_runs():
    tried = []

    def meets(rate):
        tried.append(rate)
        return rate <= 3.7
    # 3.6 meets, 3.6 x 1.05 = 3.78 does not: within 5% already
    assert highest_rate(meets, 100.0, 0.1, 0.05, guess_per_s=3.6) == 3.6 and tried == [3.6, 3.6 * 1.05]
    tried.clear()
    # from 3.0 up by 1.05, then 1.05^2, 1.05^4: 3.0, 3.15, 3.47 meet, 4.22 does not; bisection closes in
    found = highest_rate(meets, 100.0, 0.1, 0.05, guess_per_s=3.0)
    assert tried[:4] == pytest.approx([3.0, 3.15, 3.15 * 1.1025, 3.15 * 1.1025 * 1.21550625])
    assert 3.7 / 1.05 <= found <= 3.7


def test_highest_rate_is_zero_when_even_the_lowest_rate_fails():
    assert highest_rate(lambda rate: False, 8.0, 1.0, 0.05) == 0.0


def test_found_rate_meets_the_slo_and_ten_percent_more_does_not(tiny_result):
    ctx, result = tiny_result
    cand = candidates(ctx.plan)[0]
    found = SearchTask(ctx, cand, 40000.0, 40.0)()[0].max_rate_per_s
    assert found > 0
    at = _simulate(ctx, cand, open_loop(ctx, found), 0).check
    above = _simulate(ctx, cand, open_loop(ctx, 1.1 * found), 0).check
    assert at.meets and not above.meets
    assert result["candidates"][0]["max_rate_per_replica"]["per_seed"][0] == found


def test_costs_add_up(tiny_result):
    _, result = tiny_result
    row = result["candidates"][0]
    rate = row["max_rate_per_replica"]["value"]
    replicas = math.ceil(5000 / rate)  # target 5000 req/s over what one replica sustains
    assert row["replicas"] == replicas
    assert row["gpus_per_replica"] == 2 and row["gpus"] == 2 * replicas  # TP2
    assert row["cost_per_hour"] == pytest.approx(row["gpus"] * 0.8)
    # output tokens uniform in [16, 64]: their mean (over the 200 requests of seed 0) times the target rate
    tokens_per_s = 5000 * result["workload"]["mean_output_tokens"]
    assert 30 < result["workload"]["mean_output_tokens"] < 50
    assert row["cost_per_million_output_tokens"] == pytest.approx(row["cost_per_hour"] / (tokens_per_s * 3600) * 1e6)
    assert row["energy_j_per_output_token"] == pytest.approx(row["gpus"] * 72 / tokens_per_s)


def test_the_only_candidate_meeting_the_slo_is_chosen_and_ranked_first(tiny_result):
    _, result = tiny_result
    row = result["candidates"][0]
    assert result["feasible"] and result["chosen"] == row["name"] and row["rank"] == 1 and row["reason"] == ""
    assert 0 <= row["memory_headroom_fraction"] <= 1
    assert len(row["operating_point"]["timeline"]["time_s"]) <= 500
    assert [p["concurrency"] for p in row["frontier"]] == [1, 4]
    assert row["load_curve"] == sorted(row["load_curve"], key=lambda p: p["rate_per_s"])
    assert not row["max_rate_per_replica"]["search_capped"]  # 40,000 req/s misses the SLOs
    json.dumps(result, allow_nan=False)


def test_a_search_whose_highest_rate_meets_the_slo_says_it_was_capped(tmp_path):
    # TINY meets its SLOs up to ~1,500 req/s (its load curve): at 500, both seeds pass at the top at once
    plan = TINY | {"search": TINY["search"] | {"rate_high_per_s": 500, "concurrency": [1]}}
    row = run_plan(load_plan(write_plan(tmp_path, plan)), LocalExecutor(1))["candidates"][0]
    assert row["max_rate_per_replica"]["per_seed"] == [500, 500] and row["max_rate_per_replica"]["search_capped"]
    assert [p["rate_per_s"] for p in row["load_curve"]] == [500]


def test_candidates_run_in_parallel_give_the_same_numbers_as_serially(tiny_result):
    ctx, serial = tiny_result
    assert run_plan(ctx, LocalExecutor(2)) == serial


def test_ray_executor_gives_the_same_numbers_as_the_local_one(tiny_result):
    ray = pytest.importorskip("ray")
    from infersim.executors import RayExecutor
    ctx, local = tiny_result
    ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    try:
        assert run_plan(ctx, RayExecutor()) == local
    finally:
        ray.shutdown()


def test_an_impossible_plan_is_reported_infeasible_with_the_closest_candidate(tmp_path):
    plan = TINY | {"hardware": [{"name": "l4", "price_per_gpu_hour": 0.8}, {"name": "a10g", "price_per_gpu_hour": 1.0}],
                   "configurations": [{"scheduler": {"max_model_len": 512}}],
                   "slo": {"ttft_s": {"p99": 1e-6}},  # a microsecond: below one step's launch overhead
                   "search": TINY["search"] | {"seeds": 1, "rate_high_per_s": 100, "rate_low_per_s": 50,
                                               "concurrency": [1]}}
    result = run_plan(load_plan(write_plan(tmp_path, plan)), LocalExecutor(1))
    assert not result["feasible"] and result["chosen"] is None
    assert result["closest"] in [c["name"] for c in result["candidates"]]
    for row in result["candidates"]:
        assert not row["meets_slo"] and row["rank"] is None and row["cost_per_hour"] is None
        assert row["reason"].startswith("misses the SLOs even at 50 req/s") and "TTFT p99" in row["reason"]


def test_a_candidate_that_cannot_run_is_infeasible_with_the_reason(tmp_path):
    plan = TINY | {"hardware": [{"name": "a10g", "price_per_gpu_hour": 1.0}],
                   "configurations": [{"quantization": "fp8", "scheduler": {"max_model_len": 512}}]}
    row = run_plan(load_plan(write_plan(tmp_path, plan)), LocalExecutor(1))["candidates"][0]
    assert row["status"] == "infeasible" and not row["meets_slo"]
    assert "a10g has no fp8 tensor-core peak" in row["reason"]


def test_a_candidate_that_serves_no_request_is_infeasible_with_the_reason(tmp_path):
    # prompts of 32-128 tokens and outputs of 16-64 reach 48-192 tokens: none fits a context of 40, at any rate
    plan = TINY | {"configurations": [{"name": "short", "parallelism": {"tensor_parallel": 2},
                                       "scheduler": {"max_model_len": 40}},
                                      {"name": "ok", "parallelism": {"tensor_parallel": 2},
                                       "scheduler": {"max_model_len": 512}}],
                   "search": TINY["search"] | {"seeds": 1, "concurrency": [1]}}
    rows = {row["name"].split()[-1]: row for row in
            run_plan(load_plan(write_plan(tmp_path, plan)), LocalExecutor(1))["candidates"]}
    assert rows["short"]["status"] == "infeasible" and rows["short"]["load_curve"] in (None, [])
    assert rows["short"]["reason"].startswith("serves none of the workload's requests, e.g. prompt + output = ")
    assert "exceeds scheduler.max_model_len=40" in rows["short"]["reason"]
    assert rows["ok"]["status"] == "ok"


@pytest.mark.parametrize("change, expected", [
    ({"hardware": [{"name": "l4", "price_per_gpu_hour": -1}]},
     "plan.yaml: hardware.0.price_per_gpu_hour: must be > 0, got -1"),
    ({"slo": {"ttft_s": {"p101": 2.0}}}, "plan.yaml: slo.ttft_s: 'p101' is not a percentile"),
    ({"workload": TINY["workload"] | {"arrival": {"process": "poisson", "rate_per_s": 3}}},
     "plan.yaml: workload: arrival.rate_per_s is what the plan searches"),
    ({"configurations": [{"parallelism": {"tensor_paralel": 2}}]},
     "plan.yaml: configurations.0.parallelism.tensor_paralel: is not a known key"),
    ({"models": ["llama-9"]}, "plan.yaml: models.0:"),
    # candidates are told apart by their names: a repeated one would make two rows of one label
    ({"configurations": [{"name": "a", "quantization": "fp16"}, {"name": "a", "quantization": "fp8"}]},
     "plan.yaml: configurations.1.name: repeats configurations.0.name; give each configuration a distinct name, "
     "got 'a'"),
    ({"configurations": [{"scheduler": {"max_model_len": 512}}, {"scheduler": {"max_model_len": 256}}]},
     "plan.yaml: configurations.1.name: is not given, and the label made of its parallelism, quantization, engine "
     "and topology repeats configurations.0's; give each configuration a distinct name, got 'tp1-fp16-vllm-v1'"),
    ({"hardware": [{"name": "l4", "price_per_gpu_hour": 0.8}, {"name": "l4", "price_per_gpu_hour": 0.6}]},
     "plan.yaml: hardware.1.name: repeats hardware.0.name; list each GPU once, at one price, got 'l4'"),
    ({"models": ["tiny-llama", "tiny-llama"]},
     "plan.yaml: models.1: repeats models.0; list each model once, got 'tiny-llama'"),
    ({"search": TINY["search"] | {"concurrency": [1, 4, 1]}},
     "plan.yaml: search.concurrency: lists 1 twice; list each number of clients once, got [1, 4, 1]"),
    # bounds are in seconds: 500 (ms meant) is over the 300 s a TTFT bound may be
    ({"slo": {"ttft_s": {"p99": 500}}},
     "plan.yaml: slo.ttft_s.p99: 500 s is over 300 s: SLO bounds are in seconds (write 0.5 for 500 ms), got 500"),
    # watts: 0.7 is an H100's 700 W written in kilowatts
    ({"hardware": [{"name": "l4", "price_per_gpu_hour": 0.8, "power_w": 0.7}]},
     "plan.yaml: hardware.0.power_w: 0.7 W is below any accelerator's draw: power_w is in watts"),
    ({"configurations": [{"name": "a\nb"}]},
     "plan.yaml: configurations.0.name: must be printable text (no control characters or lone surrogates), "
     "got 'a\\nb'"),
    # a value a scenario would refuse, named where the plan sets it (tiny-llama has 4 heads, 2 layers and a
    # 512-token context)
    ({"configurations": [{"parallelism": {"tensor_parallel": 3}}]},
     "plan.yaml: configurations.0.parallelism.tensor_parallel: must divide num_heads=4, got 3"),
    ({"configurations": [{"name": "ok"}, {"name": "deep", "parallelism": {"pipeline_parallel": 4}}]},
     "plan.yaml: configurations.1.parallelism.pipeline_parallel: must be <= num_layers=2, got 4"),
    ({"configurations": [{"scheduler": {"max_model_len": 1024}}]},
     "plan.yaml: configurations.0.scheduler.max_model_len: must be <= tiny-llama's context of 512, got 1024"),
    # 200 requests a simulation (two seeds): the longer seed's Poisson arrivals span 225 s at 1 req/s, so at
    # least 225 s x 1.01 / 1e8 s = 2.27e-6 req/s keeps them within the simulated clock's 1e8 s
    ({"target_rate_per_s": 1e-9},
     "plan.yaml: target_rate_per_s: must be >= 2.27e-06 req/s: below it a simulation's 200 requests "
     "(search.num_requests) arrive over more than the 1e+08 s (3 years) the simulated clock resolves; raise it or "
     "lower search.num_requests, got 1e-09"),
    ({"search": TINY["search"] | {"rate_low_per_s": 1e-7}},
     "plan.yaml: search.rate_low_per_s: must be >= 2.27e-06 req/s: below it a simulation's 200 requests "
     "(search.num_requests) arrive over more than the 1e+08 s (3 years) the simulated clock resolves; raise it or "
     "lower search.num_requests, got 1e-07"),
])
def test_a_bad_plan_file_gives_one_clear_line(tmp_path, change, expected):
    with pytest.raises(SpecError) as err:
        load_plan(write_plan(tmp_path, TINY | change))
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_the_lowest_rate_a_plan_may_set_is_the_simulated_clocks_own(tmp_path):
    # at the bound every seed's arrivals are within the clock's span; 2% below it, the longer seed's are not
    ctx = load_plan(write_plan(tmp_path, TINY))
    cand = candidates(ctx.plan)[0]
    for seed in range(ctx.plan.search.seeds):
        build_run(cand.scenario(open_loop(ctx, ctx.lowest_rate_per_s), seed), ctx.base)
    with pytest.raises(SpecError, match=r"^workload.arrival.rate_per_s: 200 arrivals span \S+ s, beyond the 1e\+08 s"):
        for seed in range(ctx.plan.search.seeds):
            build_run(cand.scenario(open_loop(ctx, ctx.lowest_rate_per_s / 1.02), seed), ctx.base)


def test_ceiling_of_hand_worked_pools():
    # prefill step: 0.08 s compute, 0.02 s memory for 4 prompts -> 0.02 s / 0.005 s per request.
    # decode step at batch 10: 0.01 s compute, 0.03 s memory; 100 output tokens = 10 steps per request's share
    # -> 0.1 s compute, 0.3 s memory per request.
    prefill, decode = Work(0.08, 0.02), Work(0.01, 0.03)
    colocated = pools_per_request(prefill, 4, decode, 10, 100, 1, None)
    assert colocated == [Pool(1, Work(pytest.approx(0.12), pytest.approx(0.3)))]
    assert ceiling_rate(colocated, 1) == (pytest.approx(1 / 0.3), "memory")  # max(0.12, 0.3) s per request
    assert ceiling_rate(colocated, 2)[0] == pytest.approx(2 / 0.3)  # two pipeline stages at once
    # disaggregated, 1 prefill + 2 decode replicas: prefill pool 1 / 0.02 = 50 req/s, decode 2 / 0.3 = 6.67
    split = pools_per_request(prefill, 4, decode, 10, 100, 1, 2)
    assert ceiling_rate(split, 1) == (pytest.approx(2 / 0.3), "memory")
    # prefill-heavy: prompts of 1 per step at 0.5 s compute bind the prefill pool: 1 / 0.5 = 2 req/s
    assert ceiling_rate(pools_per_request(Work(0.5, 0.01), 1, decode, 10, 100, 1, 2), 1) == (pytest.approx(2.0),
                                                                                              "compute")


def test_ceiling_is_above_the_found_rate_on_a_real_model(tmp_path):
    plan = TINY | {"models": "llama-3.1-8b", "hardware": [{"name": "h100-sxm", "price_per_gpu_hour": 3.0}],
                   "configurations": [{"scheduler": {"max_model_len": 4096}}],
                   "workload": {"prompt_tokens": 512, "output_tokens": 64},
                   # a TPOT bound the batch reaches well below the roofline's throughput ceiling
                   "slo": {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.012}},
                   "search": {"seeds": 1, "num_requests": 200, "relative_tolerance": 0.1, "concurrency": [8]}}
    row = run_plan(load_plan(write_plan(tmp_path, plan)), LocalExecutor(1))["candidates"][0]
    assert 0 < row["max_rate_per_replica"]["value"] < row["ceiling_rate_per_replica"]
    assert not row["max_rate_per_replica"]["search_capped"]
    # 40.5 req/s of a 105 req/s ceiling: the verdict names the TPOT bound, not the ceiling's compute
    assert row["bound"] == "latency" and row["limited_by"] == "TPOT p99"
    assert re.fullmatch(r"[\d.]+ req/s per replica, limited by TPOT p99 at \d\d% of its throughput ceiling "
                        r"\(TPOT p99 [\d.]+ s > 0.012 s just above\)", row["limit"]), row["limit"]


def verdict_row(rate_per_s: float, limited_by: str | None) -> dict:
    """A candidate's row as _bound and _limit_text read it: a 20.7 req/s compute-bound ceiling (azure-mlperf's
    Llama-3.1-70B on four H100s), the KV cache half used, collectives at 10% of a decode step."""
    return {"operating": {"preemptions": 0, "kv_utilization_peak": 0.5, "model_flops_utilization": 0.31,
                          "model_bandwidth_utilization": 0.6},
            "max_rate_per_replica": {"value": rate_per_s}, "ceiling_rate_per_replica": 20.7, "network_share": 0.1,
            "limited_by": limited_by, "limiting_slo": limited_by and f"{limited_by} 0.2216 s > 0.2 s"}


@pytest.mark.parametrize("rate_per_s, limited_by, bound, text", [
    # 10.8 / 20.7 = 52%: an SLO binds at half the ceiling (the old 50% cut called this compute-bound)
    (10.8, "TPOT p99", "latency", "10.8 req/s per replica, limited by TPOT p99 at 52% of its throughput ceiling "
                                  "(TPOT p99 0.2216 s > 0.2 s just above)"),
    (16.0, "TTFT p99", "latency", "16 req/s per replica, limited by TTFT p99 at 77% of its throughput ceiling "
                                  "(TTFT p99 0.2216 s > 0.2 s just above)"),
    # 19.5 / 20.7 = 94%: essentially the ceiling, whichever SLO the next rate missed
    (19.5, "TPOT p99", "compute", "19.5 req/s per replica, compute-bound at its ceiling (MFU 31% at this rate)"),
    # every rate searched met the SLOs (search.rate_high_per_s = 8): nothing bound it but the search
    (8.0, None, "search_range", "8 req/s per replica, the highest rate searched, 39% of its throughput ceiling, "
                                "meets the SLOs (raise search.rate_high_per_s)"),
])
def test_the_verdict_names_what_limits_the_rate(rate_per_s, limited_by, bound, text):
    row = verdict_row(rate_per_s, limited_by)
    row["bound"] = _bound(row, Prepared(None, Ceiling(20.7, "compute", 64), 0.1))
    assert (row["bound"], _limit_text(row)) == (bound, text)


def test_a_percentile_is_over_its_bound_once_enough_values_are():
    # p99 of 2,000 (np.percentile, linear): h = 1999 x 0.99 = 1979.01, p99 = v[1979] + 0.01 (v[1980] - v[1979]);
    # it exceeds a bound of 1 once v[1979] does, i.e. once the top 2000 - 1979 = 21 values do
    assert over_bound_to_miss(2000, 99) == 21
    assert np.percentile([0.0] * 1979 + [2.0] * 21, 99) > 1.0  # 21 over: 2.0
    assert np.percentile([0.0] * 1980 + [2.0] * 20, 99) <= 1.0  # 20 over: 0 + 0.01 x 2 = 0.02
    # p50 of 5: h = 2, the median is v[2]: the top 3 values must exceed it; p90 of 11: h = 9, the top 2
    assert over_bound_to_miss(5, 50) == 3 and over_bound_to_miss(11, 90) == 2


@pytest.mark.parametrize("slo", [
    {"ttft_s": {"p99": 0.01}, "tpot_s": {"p99": 0.002}},  # TINY's: TPOT p99 binds near 1,550 req/s
    {"ttft_s": {"mean": 0.005}},  # the full runs' mean TTFT: 4.2 ms at 1,000 req/s, 5.0 s at 20,000
    {"ttft_s": {"p99": 0.01}, "tpot_s": {"p99": 0.002}, "goodput_fraction": 0.995},
])
def test_a_run_stopped_early_gets_the_verdict_of_the_full_run(tmp_path, slo, monkeypatch):
    ctx = load_plan(write_plan(tmp_path, TINY | {"slo": slo}))
    cand = candidates(ctx.plan)[0]
    monkeypatch.setattr(compiled_replica, "applies", lambda cfg, requests: False)  # SimPy replicas, which stop
    verdicts, unfinished = [], 0
    for rate in (1000, 20000):
        full = _simulate(ctx, cand, open_loop(ctx, rate), 0)
        early = _simulate(ctx, cand, open_loop(ctx, rate), 0, stop_early=True)
        assert early.check.meets == full.check.meets
        assert not full.stopped_early and early.stopped_early == (not full.check.meets)
        if early.stopped_early:  # the watch's ratio bounds the full run's from below, and is past 1
            assert 1 < early.check.worst_ratio <= full.check.worst_ratio
            unfinished += sum(r.state != "done" for r in early.result.requests)
        verdicts.append(full.check.meets)
    assert verdicts[0] and not verdicts[-1]  # both verdicts were tried
    assert unfinished > 0  # and stopping saved work: requests were still in flight


def test_simulate_stops_when_told(tiny_result, monkeypatch):
    from infersim.scenario import build_run
    ctx, _ = tiny_result
    monkeypatch.setattr(compiled_replica, "applies", lambda cfg, requests: False)  # SimPy replicas, which stop
    seen = []

    def stop_at_the_fifth(req):
        seen.append(req.id)
        return len(seen) == 5
    cfg, requests = build_run(candidates(ctx.plan)[0].scenario(open_loop(ctx, 1000.0), 0), ctx.base)
    simulate(cfg, requests, stop_when=stop_at_the_fifth)
    # 1000 requests/s over search.min_duration_s (300 s) would be 300,000: search.max_requests caps it
    assert len(seen) == 5 and sum(r.state == "done" for r in requests) < len(requests) == 20_000


@pytest.mark.parametrize("rate_per_s, requests", [(0.5, 200), (10.0, 3000), (1000.0, 20_000)])
def test_a_simulation_spans_minutes_of_arrivals_within_its_request_bounds(tiny_result, rate_per_s, requests):
    # search.num_requests (200 here) at least, 300 s of arrivals where that is more, search.max_requests at most
    ctx, _ = tiny_result
    assert open_loop(ctx, rate_per_s)["num_requests"] == requests
    # a search sizes its runs at its top rate: the same requests at every rate below it
    assert open_loop(ctx, rate_per_s / 4, sized_at_per_s=rate_per_s)["num_requests"] == requests


def test_stopping_runs_early_changes_no_answer_only_the_latencies_it_skips(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled_replica, "applies", lambda cfg, requests: False)  # SimPy replicas, which stop
    stopped = run_plan(load_plan(write_plan(tmp_path, TINY)), LocalExecutor(1))
    whole = run_plan(load_plan(write_plan(tmp_path, TINY | {"search": TINY["search"] | {"stop_early": False}})),
                     LocalExecutor(1))
    a, b = stopped["candidates"][0], whole["candidates"][0]
    assert a["max_rate_per_replica"] == b["max_rate_per_replica"] and a["operating_point"] == b["operating_point"]
    assert [(p["rate_per_s"], p["meets_slo"]) for p in a["load_curve"]] == [(p["rate_per_s"], p["meets_slo"])
                                                                            for p in b["load_curve"]]
    # every rate above the answer (1,552 req/s, seed 0) was stopped early: no p99 TTFT there, only in the whole runs
    above = [p for p in a["load_curve"] if not p["meets_slo"]]
    assert above and all(p["stopped_early"] and p["ttft_p99_s"] is None for p in above)
    assert not any(p["stopped_early"] for p in b["load_curve"]) and all(p["ttft_p99_s"] for p in b["load_curve"])


def test_a_run_the_compiled_loop_tells_is_told_whole(tmp_path):
    """Compiled replica loops tell a whole run faster than SimPy replicas tell the part before a stop, so a
    search run they apply to is not stopped: it keeps its latencies, with the stopped run's verdict."""
    ctx = load_plan(write_plan(tmp_path, TINY | {"slo": {"ttft_s": {"p99": 0.01}, "tpot_s": {"p99": 0.002}}}))
    cand = candidates(ctx.plan)[0]
    run = _simulate(ctx, cand, open_loop(ctx, 20000), 0, stop_early=True)
    assert all(isinstance(r, compiled_replica.CompiledReplica) for r in run.result.replicas)
    assert not run.stopped_early and not run.check.meets
    assert all(r.state == "done" for r in run.result.requests)


def test_a_search_whose_longest_runs_would_not_fit_is_refused_up_front(tmp_path, monkeypatch):
    # at its top rate (40,000 req/s) a TINY search would run 20,000 requests: with 0.5 GB free that does not
    # fit, and the plan says so before any simulation, naming the key that sizes those runs
    from infersim import budget
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 0.5e9)
    with pytest.raises(SpecError) as err:
        load_plan(write_plan(tmp_path, TINY))
    assert str(err.value).startswith("plan.yaml: search.max_requests: 20,000 requests") and str(err.value).endswith(
        "(runs at 5e+03 req/s hold search.min_duration_s of arrivals, up to this many requests): lower it, got 20000")


def test_a_trace_too_short_for_sustained_load_at_the_chosen_rate_is_noted(tiny_result):
    from dataclasses import replace

    from infersim.plan import short_trace_note
    ctx, _ = tiny_result
    assert short_trace_note(ctx, 1.0) is None  # generated arrivals are extended, not noted
    trace = replace(ctx, trace_rate_per_s=2.0)  # 200 rows at 10 req/s arrive over 199 / 10 = 19.9 s
    assert short_trace_note(trace, 10.0) == (
        "note: at 10 req/s per replica the trace's 200 rows arrive over 19.9 s, less than search.min_duration_s "
        "(300 s): set search.num_requests to 3,001 (if the trace has that many rows) for an answer under sustained "
        "load")
    assert short_trace_note(trace, 0.5) is None  # 199 / 0.5 = 398 s
