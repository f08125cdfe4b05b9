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


def _local_zone(zone: str):
    """Run with the machine's time zone set to `zone` (restored afterwards)."""
    import contextlib
    import os
    import time

    @contextlib.contextmanager
    def zone_set():
        old = os.environ.get("TZ")
        os.environ["TZ"] = zone
        time.tzset()
        try:
            yield
        finally:
            os.environ.pop("TZ") if old is None else os.environ.__setitem__("TZ", old)
            time.tzset()
    return zone_set()


def test_timestamps_without_a_zone_are_utc_whatever_this_machine_s_zone(tmp_path):
    # New York turns its clocks back an hour at 2 am on 2023-11-05: read as local times, 0:30 to 3:30 would be 4 h
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-05 00:30:00,10,5\n2023-11-05 03:30:00,10,5\n")
    with _local_zone("America/New_York"):
        assert read_trace(path).arrival_s.tolist() == [0.0, 3 * 3600.0]


def test_timestamps_with_a_zone_and_a_fraction_of_a_second(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5+00:00,10,5\n"
                    "2023-11-16 19:15:47.25+01:00,10,5\n2023-11-16 18:15:48.2500000Z,10,5\n")
    assert read_trace(path).arrival_s.tolist() == [0.0, 0.75, 1.75]


def test_a_trace_mixing_timestamps_with_and_without_a_zone_is_refused(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,5\n"
                    "2023-11-16 18:15:47+01:00,10,5\n")
    with pytest.raises(SpecError) as info:
        read_trace(path)
    assert str(info.value) == ("azure.csv:3: TIMESTAMP: is a timestamp with a time zone but azure.csv:2 holds a "
                               "timestamp without a time zone; give every row the same kind, got "
                               "'2023-11-16 18:15:47+01:00'")


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
    with pytest.raises(SpecError, match=r"^bad.csv:3: prompt_tokens: must be a finite whole number from 1 to "
                                         r"16,777,216, got 'ten'$"):
        read_trace(path)


HEADER = "arrival_time_s,prompt_tokens,output_tokens\n"
TOKENS = "must be a finite whole number from 1 to 16,777,216"


@pytest.mark.parametrize("row,message", [
    ("1,inf,5", f"trace.csv:3: prompt_tokens: {TOKENS}, got 'inf'"),
    ("1,nan,5", f"trace.csv:3: prompt_tokens: {TOKENS}, got 'nan'"),
    ("1,10,-5", "trace.csv:3: output_tokens: must be a finite whole number from 0 to 16,777,216, got '-5'"),
    ("1,10.5,5", f"trace.csv:3: prompt_tokens: {TOKENS}, got '10.5'"),
    ("1,0,5", f"trace.csv:3: prompt_tokens: {TOKENS}, got '0'"),
    ("inf,10,5", "trace.csv:3: arrival_time_s: must be a finite number >= 0, got 'inf'"),
    ("nan,10,5", "trace.csv:3: arrival_time_s: must be a finite number >= 0, got 'nan'"),
    ("-1,10,5", "trace.csv:3: arrival_time_s: must be a finite number >= 0, got '-1'"),
    ("9" * 400 + ",10,5", "trace.csv:3: arrival_time_s: must be a finite number >= 0, got '99999"),
    ("yesterday,10,5", "trace.csv:3: arrival_time_s: must be seconds (a finite number >= 0) or a timestamp such as "
                       "2023-11-16 18:15:46.68, got 'yesterday'"),
    ("1,10", "trace.csv:3: output_tokens: is empty or missing"),
    ("1,10,5,7", "trace.csv:3: has 4 cells but the header has 3"),
])
def test_bad_trace_cells_name_the_file_line_column_and_value(tmp_path, row, message):
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "0,10,5\n" + row + "\n")
    with pytest.raises(SpecError) as info:
        read_trace(path)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("line,message", [
    ("[1, 2, 3]", "t.jsonl:2: must be a JSON object of columns"),
    ("7", "t.jsonl:2: must be a JSON object of columns"),
    ('{"arrival_time_s": 1, "prompt_tokens": "ten", "output_tokens": 2}', f"t.jsonl:2: prompt_tokens: {TOKENS}"),
    ('{"arrival_time_s": 1, "prompt_tokens": true, "output_tokens": 2}', f"t.jsonl:2: prompt_tokens: {TOKENS}"),
    ('{"arrival_time_s": Infinity, "prompt_tokens": 1, "output_tokens": 2}', "t.jsonl:2: arrival_time_s: must be "
                                                                             "a finite number >= 0, got inf"),
    ('{"arrival_time_s": 1, "output_tokens": 2}', "t.jsonl:2: prompt_tokens: is empty or missing"),
])
def test_bad_jsonl_lines_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival_time_s": 0, "prompt_tokens": 1, "output_tokens": 2}\n' + line + "\n")
    with pytest.raises(SpecError) as info:
        read_trace(path)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("name,data,message", [
    ("empty.csv", b"", "empty.csv: holds no rows"),
    ("header.csv", HEADER.encode(), "header.csv: holds no rows"),
    ("empty.jsonl", b"\n\n", "empty.jsonl: holds no rows"),
    ("cols.csv", b"a,b,c\n1,2,3\n", "cols.csv: needs columns arrival_time_s, prompt_tokens, output_tokens or"),
    ("slips.csv", b"arrival_s,prompt_tokens,output_token\n0,10,5\n",
     "slips.csv: needs columns arrival_time_s, prompt_tokens, output_tokens or TIMESTAMP, ContextTokens, "
     "GeneratedTokens or arrived_at, num_prefill_tokens, num_decode_tokens in its header (line 1), which holds "
     "arrival_s, prompt_tokens, output_token (did you mean arrival_time_s for arrival_s, output_tokens for "
     "output_token?)"),
    # a header near Vidur's format in every column still gets its suggestions
    ("vidur.csv", b"arrived_att,num_prefill_token,num_decode_token\n0,10,5\n",
     "vidur.csv: needs columns arrival_time_s, prompt_tokens, output_tokens or TIMESTAMP, ContextTokens, "
     "GeneratedTokens or arrived_at, num_prefill_tokens, num_decode_tokens in its header (line 1), which holds "
     "arrived_att, num_prefill_token, num_decode_token (did you mean arrived_at for arrived_att, num_prefill_tokens "
     "for num_prefill_token, num_decode_tokens for num_decode_token?)"),
    # a column of another format's (num_decode_tokens) is no fix for a header of this one's
    ("mixed.csv", b"arrival_time_s,prompt_tokens,decode_tokens\n0,10,5\n",
     "mixed.csv: needs columns arrival_time_s, prompt_tokens, output_tokens or TIMESTAMP, ContextTokens, "
     "GeneratedTokens or arrived_at, num_prefill_tokens, num_decode_tokens in its header (line 1), which holds "
     "arrival_time_s, prompt_tokens, decode_tokens"),
    ("latin1.csv", HEADER.encode() + b"0,10,5 \xe9\n", "latin1.csv: is not UTF-8 text (byte 0xe9 at offset 50)"),
])
def test_unreadable_traces_are_one_line_naming_the_file(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SpecError) as info:
        read_trace(path)
    assert str(info.value).startswith(message)


def test_a_trace_path_that_is_a_folder_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"^workload.trace.path: is a folder, not a file, got '"):
        read_trace(tmp_path)
    with pytest.raises(SpecError, match=r"^workload.lengths_file: no such file, got '"):
        read_lengths(tmp_path / "nowhere.csv")


def test_arrivals_beyond_what_the_clock_resolves_are_refused(tmp_path):
    # 1e-300 requests/s: two arrivals 1e300 s apart, where adding a millisecond step changes nothing
    with pytest.raises(SpecError, match=r"^workload.arrival.rate_per_s: 2 arrivals span 1e\+300 s, beyond the "
                                        r"1e\+08 s"):
        arrival_times("constant", 1e-300, 2, np.random.default_rng(0))
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "0,10,5\n1,10,5\n")
    with pytest.raises(SpecError, match=r"^t.csv: 2 arrivals span 1e\+10 s"):
        read_trace(path, rate_scale=1e-10)
