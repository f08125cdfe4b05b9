"""A run that cannot fit in this machine's memory is refused before anything is allocated."""
import json
from pathlib import Path

import numpy as np
import pytest

from infersim import budget
from infersim.budget import RunSize
from infersim.cli import main
from infersim.roofline.errors import SpecError
from infersim.scenario import build_run, load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


def test_ten_million_requests_do_not_fit_in_24_gb():
    # 250 MB to start + 10,000,000 x 8 KB + 1 replica x 8 KB = 80.25 GB
    with pytest.raises(SpecError) as info:
        budget.check_memory(RunSize(10_000_000, 1), available_bytes=24e9)
    assert str(info.value) == ("workload.num_requests: 10,000,000 requests x 1 replica need ~80 GB, more than this "
                               "machine's 24 GB available; simulate fewer requests")


def test_a_thousand_requests_fit():
    budget.check_memory(RunSize(1000, 1), available_bytes=1e9)  # 258 MB


def test_when_replicas_dominate_the_estimate_the_replicas_are_named():
    # 250 MB + 10 x 8 KB + 10,000 x 8 KB = 330.08 MB
    with pytest.raises(SpecError, match=r"^cluster.replicas: 10 requests x 10,000 replicas need ~0.33 GB, more than "
                                        r"this machine's 0.3 GB"):
        budget.check_memory(RunSize(10, 10_000), available_bytes=0.3e9)


def test_steps_are_bounded_by_the_output_tokens_and_the_prefill_chunks():
    # outputs 5 + 1; prompts of 100 and 1 token in chunks of 64: 2 + 1 chunks; and a step to finish each prompt;
    # the third request, longer than max_model_len, is rejected on arrival
    assert budget.max_steps(np.array([100, 1, 200]), np.array([5, 1, 1]), 64, 200) == 6 + 3 + 2


def test_long_outputs_are_refused_for_their_timeline():
    # 50 requests of 100 prompt and 4,000,000 output tokens in 512-token chunks: 50 x (4,000,000 + 1 + 1) steps;
    # 250 MB + 50 x 8 KB + 8 KB + 200,000,100 x 450 B + 800 x 300 B = 90.25 GB
    steps = budget.max_steps(np.full(50, 100), np.full(50, 4_000_000), 512, 1 << 24)
    with pytest.raises(SpecError) as info:
        budget.check_memory(RunSize(50, 1, steps, 50 * 16), available_bytes=24e9)
    assert str(info.value) == ("workload.output_tokens: 50 requests taking up to 200,000,100 steps (one per output "
                               "token when each runs alone) need ~90 GB, more than this machine's 24 GB available; "
                               "simulate fewer or shorter requests")


def test_many_parallel_sequences_are_refused_for_their_sequences():
    # 250 MB + 200 x 8 KB + 8 KB + 200 x (400 + 1 + 1) x 450 B + 200 x 65,536 x 300 B = 4.22 GB
    with pytest.raises(SpecError) as info:
        budget.check_memory(RunSize(200, 1, 200 * 402, 200 * 65_536), available_bytes=2e9)
    assert str(info.value) == ("workload.num_seqs: 200 requests of 65,536 sequences each need ~4.2 GB, more than "
                               "this machine's 2 GB available; simulate fewer sequences")


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda path: path.stem)
def test_the_shipped_scenarios_fit_a_24_gb_machine(monkeypatch, path):
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 24e9)
    build_run(*load_scenario(path))


def test_the_machine_has_some_memory_available():
    assert budget.available_memory_bytes() > 0


def test_infersim_run_refuses_a_run_too_large_for_the_machine_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 1e9)
    scenario = tmp_path / "big.yaml"
    scenario.write_text("model: tiny-llama\nhardware: a100-sxm-80gb\nworkload:\n  num_requests: 1e6\n"
                        "  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n  output_tokens: 20\n")
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    # 250 MB + 1,000,000 x 8 KB + 1 replica x 8 KB = 8.250008 GB
    assert capsys.readouterr().err == ("infersim: error: big.yaml: workload.num_requests: 1,000,000 requests x 1 "
                                       "replica need ~8.3 GB, more than this machine's 1 GB available; simulate "
                                       "fewer requests\n")
    assert not (tmp_path / "out").exists()


def test_infersim_run_refuses_long_outputs_before_simulating(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 24e9)
    scenario = tmp_path / "long.yaml"
    (tmp_path / "config.json").write_text(json.dumps(  # tiny-llama with a context of 16,777,216 tokens
        {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 1 << 24}))
    scenario.write_text("model: config.json\nhardware: a100-sxm-80gb\nworkload:\n  num_requests: 50\n  num_seqs: 16\n"
                        "  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n"
                        "  output_tokens: 4000000\n")
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("infersim: error: long.yaml: workload.output_tokens: 50 requests "
                                              "taking up to 200,000,100 steps")


def test_requests_too_long_for_the_model_take_no_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 24e9)
    scenario = tmp_path / "rejected.yaml"
    scenario.write_text("model: tiny-llama\nhardware: a100-sxm-80gb\nworkload:\n  num_requests: 50\n"
                        "  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n"
                        "  output_tokens: 4000000\n")  # beyond tiny-llama's 512 tokens: all rejected on arrival
    assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--quiet", "--no-plot"]) == 0
