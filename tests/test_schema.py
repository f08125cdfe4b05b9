"""Unknown keys in scenario and plan files: a key close to one its section knows gets a suggestion
(infersim/schema.py)."""
import pytest
import yaml

from infersim.plan import Plan, load_plan
from infersim.roofline.errors import SpecError
from infersim.scenario import KVCacheSection, Scenario, load_scenario
from infersim.schema import known_keys

SCENARIO = """
model: tiny-llama
hardware: l4
workload: {num_requests: 20, arrival: {process: poisson, rate_per_s: 5}, prompt_tokens: 32, output_tokens: 8}
"""
PLAN = {"name": "p", "models": "tiny-llama", "hardware": [{"name": "l4", "price_per_gpu_hour": 0.8}],
        "workload": {"prompt_tokens": 32, "output_tokens": 8}, "slo": {"ttft_s": {"p99": 1.0}},
        "target_rate_per_s": 5}


def scenario_error(tmp_path, extra: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("workload: {num_requests: 20, arrival: {process: poisson, rate_per_s: 5}, "
                                     "prompt_tokens: 32", extra) if "workload" in extra else SCENARIO + extra)
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    return str(err.value)


@pytest.mark.parametrize("extra, expected", [
    ("kv_cache: {blocksize: 16}", "s.yaml: kv_cache.blocksize: is not a known key (did you mean block_size?), got 16"),
    ("schedular: {name: vllm}", "s.yaml: schedular: is not a known key (did you mean scheduler?)"),
    # prompt_tokens is a number or a LengthSection: the mapping's keys are LengthSection's
    ("workload: {num_requests: 20, arrival: {process: poisson, rate_per_s: 5}, prompt_tokens: {kind: fixed, "
     "vlaue: 32}", "s.yaml: workload.prompt_tokens.vlaue: is not a known key (did you mean value?), got 32"),
])
def test_a_misspelt_scenario_key_gets_the_key_it_is_close_to(tmp_path, extra, expected):
    assert scenario_error(tmp_path, extra) == expected


def test_a_key_close_to_none_keeps_the_plain_advice(tmp_path):
    assert scenario_error(tmp_path, "kv_cache: {zzz: 16}") == \
        "s.yaml: kv_cache.zzz: is not a known key (check its spelling and section), got 16"


@pytest.mark.parametrize("change, expected", [
    ({"configurations": [{"parallelism": {"tensor_paralel": 2}}]},
     "plan.yaml: configurations.0.parallelism.tensor_paralel: is not a known key (did you mean tensor_parallel?), "
     "got 2"),
    ({"hardware": [{"name": "l4", "price_per_gpu_hr": 0.8}]},
     "plan.yaml: hardware.0.price_per_gpu_hr: is not a known key (did you mean price_per_gpu_hour?), got 0.8"),
    ({"target_rate": 5}, "plan.yaml: target_rate: is not a known key (did you mean target_rate_per_s?), got 5"),
])
def test_a_misspelt_plan_key_gets_the_key_it_is_close_to(tmp_path, change, expected):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN | change))
    with pytest.raises(SpecError) as err:
        load_plan(path)
    assert str(err.value) == expected


def test_known_keys_follow_the_error_location_through_lists_and_union_branches():
    assert known_keys(Scenario, ("kv_cache",)) == sorted(KVCacheSection.model_fields)
    assert known_keys(Plan, ("configurations", 0, "parallelism")) == known_keys(Scenario, ("parallelism",))
    assert "value" in known_keys(Scenario, ("workload", "prompt_tokens", "function-after[_complete(), LengthSection]"))
