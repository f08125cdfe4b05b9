"""Arrival processes, length distributions and trace readers."""
import json
from pathlib import Path

import numpy as np
import pytest

from infersim.roofline.errors import SpecError
from infersim.sim.workload import arrival_times, read_lengths, read_trace, sample_lengths

TRACES = Path(__file__).resolve().parent.parent / "data" / "traces"


def test_poisson_arrivals_have_the_requested_rate_and_unit_cv():
    t = arrival_times("poisson", 4.0, 200_000, np.random.default_rng(0))
    gaps = np.diff(t)
    assert t[0] == 0.0
    assert gaps.mean() == pytest.approx(0.25, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_arrivals_keep_the_rate_and_take_the_requested_burstiness(cv):
    gaps = np.diff(arrival_times("gamma", 10.0, 400_000, np.random.default_rng(1), cv=cv))
    assert gaps.mean() == pytest.approx(0.1, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.03)


def test_constant_arrivals_are_evenly_spaced():
    assert arrival_times("constant", 2.0, 4, np.random.default_rng(0)).tolist() == [0.0, 0.5, 1.0, 1.5]


def test_lognormal_lengths_have_the_requested_mean_and_std():
    x = sample_lengths("lognormal", 400_000, np.random.default_rng(2), mean=512, std=256)
    assert x.mean() == pytest.approx(512, rel=0.01)
    assert x.std() == pytest.approx(256, rel=0.03)


def test_lengths_are_clipped_to_one_and_max_tokens():
    rng = np.random.default_rng(3)
    x = sample_lengths("normal", 10_000, rng, mean=10, std=50, max_tokens=40)
    assert x.min() == 1 and x.max() == 40
    u = sample_lengths("uniform", 10_000, rng, low=5, high=7)
    assert set(u.tolist()) == {5, 6, 7}
    z = sample_lengths("zipf", 10_000, rng, value=10, zipf_a=2.0, max_tokens=1000)
    assert (z % 10 == 0).mean() > 0.99 and np.median(z) == 10  # P(k=1) = 1/zeta(2) = 0.61


def test_splitwise_conversation_trace_loads_whole_and_rescales():
    wl = read_trace(TRACES / "splitwise_conv.csv")
    assert len(wl) == 19_366  # as the trace README says
    assert wl.arrival_s[0] == 0.0 and np.all(np.diff(wl.arrival_s) >= 0)
    # the first two rows of the file: 0.0,374,44 and 4.314579,396,109
    assert wl.prompt_tokens[:2].tolist() == [374, 396] and wl.output_tokens[:2].tolist() == [44, 109]
    fast = read_trace(TRACES / "splitwise_conv.csv", rate_scale=2.0, max_requests=100)
    assert len(fast) == 100
    assert fast.arrival_s[1] == pytest.approx(4.314579 / 2)


def test_azure_trace_format_with_timestamps(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
                    "2023-11-16 18:15:47.0000000,10,0\n")
    wl = read_trace(path)
    assert wl.arrival_s.tolist() == pytest.approx([0.0, 0.31941, 4.314579])
    assert wl.prompt_tokens.tolist() == [374, 10, 396]
    assert wl.output_tokens.tolist() == [44, 1, 109]  # zero generated tokens becomes one


def test_jsonl_trace(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"arrival_time_s": t, "prompt_tokens": p, "output_tokens": o})
                              for t, p, o in [(1.0, 5, 6), (3.0, 7, 8)]) + "\n")
    wl = read_trace(path)
    assert wl.arrival_s.tolist() == [0.0, 2.0] and wl.prompt_tokens.tolist() == [5, 7]


def test_lengths_file_without_arrivals():
    prompts, outputs = read_lengths(TRACES / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")
    assert prompts[0] == 3772 and outputs[0] == 54  # the file's first row
    with pytest.raises(SpecError, match="needs columns"):
        read_trace(TRACES / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")


def test_bad_trace_rows_are_named_by_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("arrival_time_s,prompt_tokens,output_tokens\n0,10,5\n1,ten,5\n")
    with pytest.raises(SpecError, match=r"^bad.csv:3: needs numbers"):
        read_trace(path)
