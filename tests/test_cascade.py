"""Cascade serving (sim/cascade.py): a tier that never escalates is a plain run of its pool, escalated requests
are served again with the prompt the policy says, the judge's draws follow the tier's probability, the cost
adds up over the tiers, and a cascade section's mistakes are one line naming the key.

The workloads are tiny and hand-countable: requests of 100 prompt tokens and 20 output tokens, tier 0 Llama-3.1-8B
on one H100, tier 1 Llama-3.1-70B with tensor parallelism 4 (4 GPUs a replica).
"""
import dataclasses

import numpy as np
import pytest

from infersim.cli import main
from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
from infersim.roofline.errors import SpecError
from infersim.scenario import load_run
from infersim.sim.cascade import CascadeConfig, Tier, escalation_draws, simulate_cascade
from infersim.sim.cluster import Colocated
from infersim.sim.engines import preset_config
from infersim.sim.run import requests_from, simulate
from infersim.sim.workload import Workload

H100 = get_hardware("h100-sxm")
SMALL = preset_config("vllm-v1", get_model("llama-3.1-8b"), H100, StepOptions(), 4096)
LARGE = preset_config("vllm-v1", get_model("llama-3.1-70b"), H100, StepOptions(parallel=Parallelism(4, 1)), 4096)
PROMPT, OUTPUT = 100, 20


def requests(count: int, gap_s: float = 0.05):
    return requests_from(Workload(np.arange(count) * gap_s, np.full(count, PROMPT), np.full(count, OUTPUT)))


def cascade(escalate: float, policy: str = "restart", seed: int = 0, large_replicas: int = 1) -> CascadeConfig:
    large = dataclasses.replace(LARGE, cluster=Colocated(large_replicas))
    return CascadeConfig((Tier(SMALL, escalate), Tier(large)), policy, seed)


def test_a_first_tier_that_never_escalates_is_a_plain_run_of_its_pool():
    plain = simulate(SMALL, requests(30)).summary
    result = simulate_cascade(cascade(0.0), requests(30))
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queueing_s", "throughput_tokens_per_s",
                "requests_completed", "steps", "simulated_time_s"):
        assert result.summary[key] == plain[key], key
    assert [t["requests_served"] for t in result.summary["tiers"]] == [30, 0]
    assert (result.table["tier"] == 0).all()


def test_escalating_every_answer_with_restart_serves_each_request_twice_on_its_original_prompt():
    result = simulate_cascade(cascade(1.0, "restart"), requests(10))
    small, large = result.summary["tiers"]
    assert (small["requests_served"], small["requests_escalated"], small["requests_final"]) == (10, 10, 0)
    assert (large["requests_served"], large["requests_escalated"], large["requests_final"]) == (10, 0, 10)
    # each tier reads 10 prompts of 100 tokens and writes 10 answers of 20 tokens
    assert (small["prompt_tokens"], small["output_tokens"]) == (1000, 200)
    assert (large["prompt_tokens"], large["output_tokens"]) == (1000, 200)
    assert [r.prompt_tokens for r in result.tiers[1].requests] == [PROMPT] * 10
    assert (result.table["tier"] == 1).all() and (result.table["prompt_tokens"] == PROMPT).all()


def test_keep_gives_the_next_tier_the_first_answer_as_context():
    result = simulate_cascade(cascade(1.0, "keep"), requests(10))
    # 100 prompt tokens + the 8B's 20-token answer = 120 tokens each, 1,200 in all
    assert [r.prompt_tokens for r in result.tiers[1].requests] == [PROMPT + OUTPUT] * 10
    assert result.summary["tiers"][1]["prompt_tokens"] == 1200
    assert (result.table["prompt_tokens"] == PROMPT).all()  # the user's request is still the original prompt


def test_an_escalated_answer_counts_its_latency_from_the_original_arrival():
    result = simulate_cascade(cascade(1.0), requests(1))
    first, final = result.tiers[0].table, result.tiers[1].table
    # escalated when the 8B's answer completed: the 70B's attempt arrives then
    assert result.tiers[1].requests[0].arrival_s == result.tiers[0].requests[0].completion_s
    assert result.table["ttft_s"][0] == pytest.approx(first["e2e_s"][0] + final["ttft_s"][0])
    assert result.table["e2e_s"][0] == pytest.approx(first["e2e_s"][0] + final["e2e_s"][0])
    assert result.table["tpot_s"][0] == final["tpot_s"][0]


def test_the_judge_escalates_within_sampling_error_of_the_tiers_probability():
    draws = escalation_draws(cascade(0.3), 10_000)
    # binomial: standard error sqrt(0.3 x 0.7 / 10,000) = 0.0046; 4 of them is 0.018
    assert abs(draws[:, 0].mean() - 0.3) < 0.018
    assert not draws[:, 1].any()  # the last tier never escalates


def test_the_requests_a_tier_passes_on_are_those_the_judge_drew():
    result = simulate_cascade(cascade(0.3), requests(60))
    drawn = np.flatnonzero(escalation_draws(cascade(0.3), 60)[:, 0])
    assert sorted(r.id for r in result.tiers[1].requests) == drawn.tolist()
    assert result.summary["tiers"][0]["requests_escalated"] == len(drawn)
    assert np.flatnonzero(result.table["tier"] == 1).tolist() == drawn.tolist()


def test_gpu_seconds_add_up_over_the_tiers():
    result = simulate_cascade(cascade(0.5, large_replicas=2), requests(20))
    s = result.summary
    run_s = s["simulated_time_s"]
    # tier 0: one GPU; tier 1: two replicas of TP4, 8 GPUs; each held for the whole run
    assert [t["gpus"] for t in s["tiers"]] == [1, 8] and s["gpus"] == 9
    assert [t["gpu_seconds"] for t in s["tiers"]] == pytest.approx([run_s, 8 * run_s])
    assert s["gpu_seconds"] == pytest.approx(9 * run_s)
    assert 0 < s["tiers"][1]["busy_s"] <= 2 * run_s


def test_a_cascade_is_deterministic_under_its_seed():
    first = simulate_cascade(cascade(0.5, seed=7), requests(40))
    again = simulate_cascade(cascade(0.5, seed=7), requests(40))
    other = simulate_cascade(cascade(0.5, seed=8), requests(40))
    assert first.summary == again.summary
    assert first.table["tier"].tolist() == again.table["tier"].tolist()
    assert first.table["tier"].tolist() != other.table["tier"].tolist()


SCENARIO = """
model: tiny-llama
hardware: a100-sxm-80gb
workload:
  num_requests: 12
  arrival: {process: poisson, rate_per_s: 5}
  prompt_tokens: 100
  output_tokens: 20
cascade:
  policy: restart
  tiers:
    - {model: tiny-moe, replicas: 2, escalate: 0.5}
    - {}
"""


def write(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def test_a_cascade_scenario_builds_its_tiers_over_the_top_level_deployment(tmp_path):
    _, built, reqs = load_run(write(tmp_path, SCENARIO))
    small, large = built.tiers
    assert (small.run.model.name, small.run.cluster.replicas, small.escalate) == ("tiny-moe", 2, 0.5)
    assert (large.run.model.name, large.run.cluster.replicas, large.escalate) == ("tiny-llama", 1, 0.0)
    assert small.run.hardware.name == large.run.hardware.name and built.policy == "restart" and len(reqs) == 12


def test_infersim_run_prints_a_line_per_tier(tmp_path, capsys):
    code = main(["run", str(write(tmp_path, SCENARIO)), "--out", str(tmp_path / "out"), "--no-plot"])
    out = capsys.readouterr().out
    assert code == 0
    assert "tier 0: tiny-moe" in out and "tier 1: tiny-llama" in out
    assert "cascade of 2 tiers (restart on escalation), 3 GPUs" in out  # 2 replicas of tiny-moe, 1 of tiny-llama
    assert (tmp_path / "out" / "summary.json").is_file()


@pytest.mark.parametrize("change,expected", [
    (("    - {}", "    - {escalate: 0.2}"), "cascade.tiers: tier 1, the last, gives final answers: remove its "
                                          "escalate (0.2)"),
    (("escalate: 0.5", "escalate: 1.5"), "cascade.tiers.0.escalate: must be <= 1, got 1.5"),
    (("escalate: 0.5", "escalate: -0.1"), "cascade.tiers.0.escalate: must be >= 0, got -0.1"),
    ((", escalate: 0.5", ""), "cascade.tiers: tier 0 needs escalate (the probability that its answer goes on to "
                              "tier 1): every tier but the last has one"),
    (("    - {}\n", ""), "cascade.tiers: a cascade needs at least 2 tiers, smallest model first, got [{'model': "
                         "'tiny-moe', 'replicas': 2, 'escalate': 0.5}]"),
    # a tier's deployment that cannot run is named by the tier, before any simulation
    (("model: tiny-moe", "model: llama-3.1-405b"), "cascade.tiers.0.hardware: llama-3.1-405b does not fit: weights "
                                               "811.7 GB + activations 1.3 GB exceed 79.0 GB usable on "
                                               "a100-sxm-80gb; raise tensor or pipeline parallelism, or quantize, "
                                               "got 'a100-sxm-80gb'"),
    # the top level's own deployment, which the last tier ({}) runs, is named as the top level's
    (("model: tiny-llama\n", "model: llama-3.1-405b\n"), "hardware: llama-3.1-405b does not fit"),
    (("model: tiny-moe", "parallelism: {tensor_parallel: 3}"),
     "cascade.tiers.0.parallelism.tensor_parallel: must divide num_heads=4, got 3"),
    (("policy: restart", "policy: retry"), "cascade.policy: must be one of restart, keep, got 'retry'"),
    (("model: tiny-moe", "model: tiny-gpt"), "cascade.tiers.0.model: unknown model"),
    (("cascade:", "cluster: {mode: disaggregated}\ncascade:"),
     "cluster.mode: a cascade's tiers are colocated pools; remove the cascade or set mode colocated, "
     "got 'disaggregated'"),
    (("{process: poisson, rate_per_s: 5}", "{process: concurrency, concurrency: 4}"),
     "workload.arrival.process: a cascade is driven open loop"),
])
def test_a_cascade_mistake_is_one_line_naming_the_key(tmp_path, change, expected):
    old, new = change
    assert old in SCENARIO
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, SCENARIO.replace(old, new)))
    message = str(info.value)
    assert "\n" not in message
    assert message.removeprefix("s.yaml: ").startswith(expected)


def test_a_cascade_summary_prints_no_pooled_figures_it_does_not_have():
    # batch, KV use, MFU and MBU are each pool's own (the tier lines): no row of dashes for the whole
    import json
    from pathlib import Path

    from infersim.report import run_summary_table
    summary = json.loads((Path(__file__).resolve().parent / "golden" / "default.json").read_text())
    for key in ("batch_size_mean", "kv_utilization_mean", "kv_utilization_peak", "model_flops_utilization",
                "model_bandwidth_utilization"):
        summary[key] = None
    text = run_summary_table(summary)
    assert "sequences on average" not in text and " -%" not in text
    assert "sequences on average" in run_summary_table(json.loads(
        (Path(__file__).resolve().parent / "golden" / "default.json").read_text()))


def test_a_tier_setting_only_its_engine_does_not_take_the_blame_for_the_top_levels_deployment(tmp_path):
    # the last tier runs the top level's model on its own engine: the 405B not fitting one A100 is the top
    # level's mistake, not cascade.tiers.1's
    text = SCENARIO.replace("model: tiny-llama\n", "model: llama-3.1-405b\n").replace("    - {}", "    - {engine: sglang}")
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, text))
    assert str(info.value).startswith("s.yaml: hardware: llama-3.1-405b does not fit")


def test_a_tier_that_sets_its_own_model_is_named_for_it_even_where_the_top_level_would_not_fit(tmp_path):
    # no tier runs the top level's 405B (each sets its model): the 70B of tier 0 not fitting one A100 is tier 0's
    text = (SCENARIO.replace("model: tiny-llama\n", "model: llama-3.1-405b\n")
            .replace("model: tiny-moe", "model: llama-3.1-70b").replace("    - {}", "    - {model: tiny-llama}"))
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, text))
    assert str(info.value).startswith("s.yaml: cascade.tiers.0.hardware: llama-3.1-70b does not fit")
