"""Fuzzing the input boundary: whatever a scenario key, a trace, a config.json, a hardware YAML file, a
profile or a command-line flag holds, the answer is one clean SpecError line naming the file (or a one-line
refusal with exit status 2), or a result whose numbers are finite and not negative. Never a traceback.

Each target mutates a valid input at one or two places with values users (and fuzzers) get wrong: numbers
out of range, NaN and inf, numbers spelt as text, text, booleans, null, lists and mappings.
"""
import contextlib
import copy
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infersim.cli import main
from infersim.report import json_safe, run_summary_table
from infersim.roofline import decode_batch, get_hardware, get_model, load_hf_config, step_cost
from infersim.roofline.errors import SpecError, errors_in
from infersim.roofline.profile import compare, model_from_profile, read_profile
from infersim.scenario import load_run
from infersim.sim.run import simulate
from infersim.sim.workload import read_trace

ABSENT = "<absent>"
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
NASTY = [-1, 0, 1, 2, 3, 7, 64, 513, 2**31, 2**63, 10**30, -1e-300, 1e-300, 1e-310, 0.5, 32.5, 1e30, 1e308,
         float("inf"), float("-inf"), float("nan"), "37.4e12", "1e5", "-5", "inf", "nan", "abc", "", "x" * 200, "ünï",
         True, False, None, [1, 2], {"a": 1}]
VALUES = st.one_of(st.sampled_from(NASTY), st.integers(), st.floats(), st.text(max_size=12), st.booleans())
CELLS = st.one_of(st.sampled_from(["", "0", "-1", "1", "10", "1.5", "inf", "nan", "-inf", "1e308", "9" * 400, "abc",
                                   "2023-11-16 18:15:46.68", "2023-13-45 99:00", "True", " 5 ", "0x10", "5e-324"]),
                  st.integers().map(str), st.floats().map(repr), st.text(max_size=8))


def assert_one_clean_line(err: SpecError, file: str) -> None:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    assert text.startswith(file), text


def assert_finite_and_not_negative(data, where="") -> None:
    """Every number in a (JSON-safe) structure is finite and >= 0; None stands for "no value"."""
    if isinstance(data, dict):
        for key, value in data.items():
            assert_finite_and_not_negative(value, f"{where}.{key}")
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        assert math.isfinite(data) and data >= 0, (where, data)


def loaded_or_refused(load, file: str):
    """What `load()` returns, or None when it refuses the input in one clean line naming `file`."""
    try:
        return load()
    except SpecError as err:
        assert_one_clean_line(err, file)
        return None


def write_changed(folder: str, name: str, base: dict, changes, dump=yaml.safe_dump) -> Path:
    """`base` with the (dotted key, value) `changes` applied, written to folder/name."""
    data = copy.deepcopy(base)
    for key, value in changes:
        set_path(data, key, value)
    path = Path(folder) / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(dump(data))
    return path


def set_path(data: dict, path: str, value) -> None:
    """Set (or, for "<absent>", remove) the key at a dotted path, making the mappings on the way."""
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(data.get(key), dict):
            data[key] = {}
        data = data[key]
    if value == ABSENT:
        data.pop(last, None)
    else:
        data[last] = value


SCENARIO = {"model": "tiny-llama", "hardware": "a100-sxm-80gb",
            "workload": {"num_requests": 6, "arrival": {"process": "poisson", "rate_per_s": 5},
                         "prompt_tokens": {"kind": "lognormal", "mean": 100, "std": 50}, "output_tokens": 20}}
SCENARIO_KEYS = [
    "seed", "name", "model", "hardware", "quantization", "quantization.preset", "quantization.kv_bits",
    "parallelism.tensor_parallel", "parallelism.pipeline_parallel", "engine.flash_attention", "engine.sampling",
    "engine.overhead_fixed_s", "engine.overhead_per_seq_s", "scheduler.name", "scheduler.max_num_seqs",
    "scheduler.max_num_batched_tokens", "scheduler.max_model_len", "scheduler.chunk_tokens", "scheduler.preemption",
    "kv_cache.block_size", "kv_cache.num_blocks", "kv_cache.allocator", "kv_cache.memory_utilization",
    "kv_cache.watermark", "kv_cache.prefix_caching", "kv_cache.swap_space_gib", "workload", "workload.num_requests",
    "workload.arrival", "workload.arrival.process", "workload.arrival.rate_per_s", "workload.arrival.cv",
    "workload.prompt_tokens", "workload.prompt_tokens.kind", "workload.prompt_tokens.mean",
    "workload.prompt_tokens.std", "workload.prompt_tokens.low", "workload.prompt_tokens.high",
    "workload.prompt_tokens.value", "workload.prompt_tokens.zipf_a", "workload.prompt_tokens.max_tokens",
    "workload.output_tokens", "workload.num_seqs", "workload.shared_prefix.tokens", "workload.shared_prefix.groups",
    "workload.shared_prefix.fraction", "workload.trace", "workload.trace.path", "workload.lengths_file", "slo.ttft_s",
    "slo.tpot_s", "cluster.mode", "cluster.replicas", "cluster.router", "cluster.prefill_replicas",
    "cluster.decode_replicas",
    "cluster.kv_transfer_gb_per_s", "unknown_section"]
# values that make a valid run, to combine with the nasty ones
FINE = [("scheduler.name", n) for n in ("static", "orca", "vllm", "sarathi")] + [("cluster.mode", "disaggregated"),
    ("scheduler.max_model_len", 60), ("kv_cache.num_blocks", 3), ("kv_cache.block_size", 1), ("workload.num_seqs", 4),
    ("workload.shared_prefix.tokens", 600), ("kv_cache.prefix_caching", True), ("scheduler.preemption", "swap"),
    ("cluster.replicas", 3), ("slo.ttft_s", 1e-9), ("workload.output_tokens", 1)]


@FUZZ
@given(st.lists(st.one_of(st.tuples(st.sampled_from(SCENARIO_KEYS), st.one_of(VALUES, st.just(ABSENT))),
                          st.sampled_from(FINE)),
                min_size=1, max_size=3))
def test_scenario_keys_give_one_line_or_a_finite_run(changes):
    with tempfile.TemporaryDirectory() as folder:
        path = write_changed(folder, "s.yaml", SCENARIO, changes)
        run = loaded_or_refused(lambda: load_run(path), "s.yaml")
        if run is None or len(run[2]) > 200:
            return  # refused; or valid, and too long to simulate here
        with errors_in("s.yaml"):
            result = loaded_or_refused(lambda: simulate(run[1], run[2]), "s.yaml")
    if result is not None:
        summary = json.loads(json.dumps(json_safe(result.summary), allow_nan=False))
        assert_finite_and_not_negative(summary)
        assert "nan" not in run_summary_table(result.summary).lower()


@FUZZ
@given(st.lists(st.lists(CELLS, min_size=2, max_size=4), min_size=1, max_size=4),
       st.sampled_from([".csv", ".jsonl"]), st.sampled_from([0.5, 1.0, 1e-9]))
def test_traces_give_one_line_or_finite_arrivals_and_lengths(rows, suffix, rate_scale):
    header = ["arrival_time_s", "prompt_tokens", "output_tokens"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"t{suffix}"
        if suffix == ".csv":
            text = io.StringIO()
            csv.writer(text).writerows([header] + rows)
            path.write_text(text.getvalue())
        else:
            path.write_text("".join(json.dumps(dict(zip(header, (_json_cell(c) for c in row)))) + "\n"
                                    for row in rows))
        workload = loaded_or_refused(lambda: read_trace(path, rate_scale), path.name)
    if workload is not None:
        assert np.all(np.isfinite(workload.arrival_s)) and np.all(workload.arrival_s >= 0)
        assert workload.prompt_tokens.dtype.kind == "i" and workload.prompt_tokens.min() >= 1
        assert workload.output_tokens.dtype.kind == "i" and workload.output_tokens.min() >= 1


def _json_cell(cell: str):
    """A JSONL cell as a number where the text is one (NaN and inf included), else as the text."""
    try:
        return json.loads(cell)
    except ValueError:
        return cell


LLAMA = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 512}
CONFIG_KEYS = list(LLAMA) + ["head_dim", "tie_word_embeddings", "attention_bias", "num_local_experts",
                             "num_experts_per_tok", "_name_or_path", "kv_channels", "no_bias", "n_embd"]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), st.one_of(VALUES, st.just(ABSENT))), min_size=1,
                max_size=2), st.sampled_from(["llama", "qwen", "qwen2", "mixtral", "gpt2", "opt"]))
def test_config_json_gives_one_line_or_a_model_with_finite_costs(changes, model_type):
    base = {**LLAMA, "model_type": model_type, "n_head": 4, "n_layer": 2, "n_positions": 512, "ffn_dim": 128}
    with tempfile.TemporaryDirectory() as folder:
        path = write_changed(folder, "tiny/config.json", base, changes, dump=json.dumps)
        model = loaded_or_refused(lambda: load_hf_config(path), "tiny/config.json")
    if model is not None:
        cost = step_cost(model, get_hardware("a100-sxm-80gb"), decode_batch([min(10, model.max_context_tokens - 1)]))
        assert 0 < cost.time_s < math.inf and 0 < model.num_params() < math.inf


HARDWARE = get_hardware("a100-sxm-80gb").to_dict()
HARDWARE_KEYS = list(HARDWARE) + ["peak_flops_per_s.fp16", "peak_flops_per_s.bf16", "peak_flops_per_s.fp64",
                                  "warp_size"]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(HARDWARE_KEYS), st.one_of(VALUES, st.just(ABSENT))), min_size=1,
                max_size=2))
def test_hardware_yaml_gives_one_line_or_finite_step_times(changes):
    with tempfile.TemporaryDirectory() as folder:
        path = write_changed(folder, "hw.yaml", HARDWARE, changes)
        hw = loaded_or_refused(lambda: get_hardware(str(path)), "hw.yaml")
    if hw is not None:
        for batch in (decode_batch([100] * 4), decode_batch([1])):
            assert 0 < step_cost(get_model("tiny-llama"), hw, batch).time_s < math.inf


PROFILE = (Path(__file__).resolve().parent.parent / "data" / "profiles" / "a100" /
           "Llama-2-7b-hf_linear_ops.csv").read_text().splitlines()[:4]
PROFILE_COLUMNS = PROFILE[0].split(",")


@FUZZ
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(PROFILE_COLUMNS), CELLS), min_size=1, max_size=2))
def test_profiles_give_one_line_or_finite_errors(changes):
    rows = [line.split(",") for line in PROFILE[1:]]
    for row, column, cell in changes:
        rows[row - 1][PROFILE_COLUMNS.index(column)] = cell
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.csv"
        text = io.StringIO()
        csv.writer(text).writerows([PROFILE_COLUMNS] + rows)
        path.write_text(text.getvalue())
        result = loaded_or_refused(lambda: compare(read_profile(path, model_from_profile(path)),
                                                   get_hardware("a100-sxm-80gb")), "p.csv")
    if result is not None:
        assert_finite_and_not_negative(result)


FLAGS = ["--batch", "--context", "--prompt", "--tp", "--pp", "--kv-bits", "--quant", "--phase", "--sampling",
         "--plot", "--model", "--hardware"]
FLAG_VALUES = st.one_of(st.sampled_from(["0", "-1", "1", "3", "1000000000", "1e3", "abc", "", "inf", "x.xyz",
                                         "x.png", "nowhere/x.png", "nowhere.json", "h900", "llama-2-7b", "fp8"]),
                        st.integers().map(str), st.text(max_size=8).filter(lambda t: not t.startswith("-")))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FLAGS), FLAG_VALUES), min_size=1, max_size=2))
def test_roofline_flags_give_a_one_line_refusal_or_finite_figures(tmp_path, monkeypatch, flags):
    monkeypatch.chdir(tmp_path)  # where --plot x.png lands
    argv = ["roofline", "--model", "tiny-llama", "--hardware", "l4", "--context", "100", "--prompt", "100"]
    argv += [part for flag in flags for part in flag]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv + ["--json"])
        except SystemExit as exit_info:
            code = exit_info.code
    if code == 2:
        assert len(err.getvalue().splitlines()) == 1 and err.getvalue().startswith("infersim"), err.getvalue()
        return
    assert code == 0, err.getvalue()
    assert_finite_and_not_negative(json.loads(out.getvalue(), parse_constant=pytest.fail)["totals"])


def test_an_alias_bomb_in_a_field_of_the_wrong_type_is_quoted_by_its_size_not_expanded(tmp_path):
    # nine levels of anchors, each aliasing the previous one ten times: 10^9 strings once expanded
    levels = ['&a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]'] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write_changed(str(tmp_path), "s.yaml", SCENARIO, [])
    path.write_text(path.read_text() + f"description: [{', '.join(levels)}]\n")
    with pytest.raises(SpecError) as info:
        load_run(path)
    assert str(info.value) == "s.yaml: description: must be text, got a list of 9 items"


@pytest.mark.parametrize("value, quoted", [
    (10 ** 5000, "a 5001-digit number"), (-(10 ** 100), "a 101-digit number"), (12345, "12345"),
    ([[64]], "[[64]]"), ({"a": 1}, "{'a': 1}"), (list(range(100)), "a list of 100 items"),
    ({"a": "x" * 100}, "a mapping of 1 key"), ("x" * 100, "'" + "x" * 76 + "..."), ("\ud800", "'\\ud800'")],
    ids=lambda value: type(value).__name__)
def test_a_bad_value_is_quoted_within_one_line(value, quoted):
    from infersim.roofline.errors import excerpt
    assert excerpt(value) == quoted


def refusal(folder: Path, name: str, text: str, load) -> str:
    """The line `load` refuses the file `name` holding `text` with."""
    path = folder / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load(path)
    return str(info.value)


HUGE = "1" + "0" * 5000  # more digits than Python converts to an int (4,300)


@pytest.mark.parametrize("name, text, load, message", [
    ("s.yaml", yaml.safe_dump(SCENARIO) + f"seed: {HUGE}\n", load_run,
     "s.yaml: seed: must be < 18,446,744,073,709,551,616, got a 5001-digit number"),
    ("s.yaml", yaml.safe_dump(SCENARIO) + f"seed: '{HUGE}'\n", load_run,
     "s.yaml: seed: must be < 18,446,744,073,709,551,616, got a 5001-digit number"),
    ("s.yaml", yaml.safe_dump(SCENARIO).replace("rate_per_s: 5", f"rate_per_s: -{HUGE}"), load_run,
     "s.yaml: workload.arrival.rate_per_s: must be a finite number, got a 5001-digit negative number"),
    ("hw.yaml", yaml.safe_dump({**HARDWARE, "sm_count": 1}).replace("sm_count: 1", f"sm_count: {HUGE}"),
     lambda path: get_hardware(str(path)),
     "hw.yaml: sm_count: must be a finite whole number from 1 to 1,048,576, got a 5001-digit number"),
    ("tiny/config.json", json.dumps({**LLAMA, "vocab_size": 1}).replace('"vocab_size": 1', f'"vocab_size": {HUGE}'),
     load_hf_config, "tiny/config.json: vocab_size: must be a finite whole number from 1 to 16,777,216, got a 5001-digit number"),
    ("t.jsonl", f'{{"arrival_time_s": 0, "prompt_tokens": {HUGE}, "output_tokens": 5}}\n', read_trace,
     "t.jsonl:1: prompt_tokens: must be a finite whole number from 1 to 16,777,216, got a 5001-digit number"),
], ids=["yaml-int", "yaml-text", "yaml-float-field", "hardware", "config.json", "jsonl"])
def test_a_number_of_5001_digits_is_refused_by_its_length(tmp_path, name, text, load, message):
    assert refusal(tmp_path, name, text, load) == message


@pytest.mark.parametrize("name, text, load, message", [
    ("t.csv", "arrival_time_s,prompt_tokens,output_tokens,prompt_tokens\n0,10,5,99999\n", read_trace,
     "t.csv:1: prompt_tokens: appears twice in the header; keep one"),
    ("t.jsonl", '{"arrival_time_s": 0, "prompt_tokens": 10, "output_tokens": 5}\n'
                '{"arrival_time_s": 1, "prompt_tokens": 10, "output_tokens": 5, "prompt_tokens": 99999}\n', read_trace,
     "t.jsonl:2: prompt_tokens: appears twice in one object; keep one"),
    ("tiny/config.json", json.dumps(LLAMA)[:-1] + ', "hidden_size": 128}', load_hf_config,
     "tiny/config.json: hidden_size: appears twice in one object; keep one"),
    ("p.csv", "\n".join([PROFILE[0] + ",n_embd", *(line + ",1" for line in PROFILE[1:])]),
     lambda path: read_profile(path, get_model("llama-2-7b")), "p.csv:1: n_embd: appears twice in the header; keep one"),
    ("hw.yaml", yaml.safe_dump({**HARDWARE, "peak_flops_per_s": {"fp16": 312e12, "bf16": 100e12}}),
     lambda path: get_hardware(str(path)),
     "hw.yaml: peak_flops_per_s.bf16: is the fp16 peak under another name; give fp16 or bf16, not both"),
], ids=["csv-trace", "jsonl-trace", "config.json", "profile", "hardware-bf16"])
def test_a_column_or_key_given_twice_is_refused_not_the_last_one_kept(tmp_path, name, text, load, message):
    assert refusal(tmp_path, name, text, load) == message


def test_a_yaml_merge_key_merges_and_a_key_beside_it_overrides(tmp_path):
    from infersim.scenario import load_scenario
    lengths = ("  prompt_tokens: &lengths {kind: uniform, low: 10, high: 20}\n"
               "  output_tokens: {<<: *lengths, high: 30}\n")
    text = yaml.safe_dump({**SCENARIO, "workload": {"num_requests": 6, "arrival": {"rate_per_s": 5}}}) + lengths
    path = tmp_path / "s.yaml"
    path.write_text(text)
    workload = load_scenario(path)[0].workload
    assert (workload.prompt_tokens.low, workload.prompt_tokens.high) == (10, 20)
    assert (workload.output_tokens.low, workload.output_tokens.high) == (10, 30)
    path.write_text(text.replace("high: 30}", "high: 30, high: 40}"))
    with pytest.raises(SpecError, match=r"^s.yaml:\d+: workload.output_tokens.high: appears twice in one mapping; keep one$"):
        load_scenario(path)


@pytest.mark.parametrize("name, text, load, message", [
    ("s.yaml", yaml.safe_dump({**SCENARIO, "name": "a\x1b[31mred\nline"}), load_run,
     "s.yaml: name: must be printable text (no control characters or lone surrogates), got 'a\\x1b[31mred\\nline'"),
    ("s.yaml", yaml.safe_dump(SCENARIO) + 'name: "\\ud800"\n', load_run,
     "s.yaml: name: must be printable text (no control characters or lone surrogates), got '\\ud800'"),
    ("s.yaml", yaml.safe_dump({**SCENARIO, "description": "two\nlines, then \x1b[2J"}), load_run,
     "s.yaml: description: must be printable text (no control characters or lone surrogates), got "
     "'two\\nlines, then \\x1b[2J'"),
    ("tiny/config.json", json.dumps({**LLAMA, "_name_or_path": "\ud800"}), load_hf_config,
     "tiny/config.json: _name_or_path: must be printable text (no control characters or lone surrogates), got '\\ud800'"),
    ("hw.yaml", yaml.safe_dump({**HARDWARE, "name": "gpu\x1b[31m"}), lambda path: get_hardware(str(path)),
     "hw.yaml: name: must be printable text (no control characters or lone surrogates), got 'gpu\\x1b[31m'"),
    ("s.yaml", yaml.safe_dump({**SCENARIO, "workload": {**SCENARIO["workload"], "prompt_tokens": None,
                                                        "output_tokens": None, "lengths_file": ""}}), load_run,
     "s.yaml: workload.lengths_file: must name a file (it is empty), got ''"),
], ids=["control-name", "surrogate-name", "control-description", "config-name", "hardware-name", "empty-path"])
def test_a_name_that_would_not_print_as_itself_or_an_empty_path_is_refused(tmp_path, name, text, load, message):
    assert refusal(tmp_path, name, text, load) == message


def test_a_description_may_hold_lines(tmp_path):
    path = write_changed(str(tmp_path), "s.yaml", SCENARIO, [("description", "two\nlines\twith a tab")])
    assert load_run(path)[0].description == "two\nlines\twith a tab"


def test_a_scenario_file_name_that_is_not_utf8_and_a_name_with_dollars_are_printed_and_plotted(tmp_path, capsys):
    folder = str(tmp_path).encode()
    path = Path(os.fsdecode(folder + b"/r\xe9sultat.yaml"))  # Latin-1 bytes: not UTF-8
    path.write_text(yaml.safe_dump({**SCENARIO, "workload": {**SCENARIO["workload"], "num_requests": 2}}))
    assert main(["run", str(path), "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.startswith("r\\udce9sultat: tiny-llama on a100-sxm-80gb")
    path.write_text(yaml.safe_dump({**SCENARIO, "name": "cost $^$ of $\\frac$"}))
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 0  # no TeX parsed in the title
    assert (tmp_path / "b" / "run.png").stat().st_size > 0


def test_a_profile_whose_rows_profile_different_shapes_is_refused(tmp_path):
    rows = [line.split(",") for line in PROFILE[1:]]
    rows[1][PROFILE_COLUMNS.index("n_embd")] = "8192"
    path = tmp_path / "p.csv"
    path.write_text("\n".join(",".join(row) for row in [PROFILE_COLUMNS] + rows) + "\n")
    first = PROFILE[1].split(",")[PROFILE_COLUMNS.index("n_embd")]
    with pytest.raises(SpecError) as info:
        read_profile(path, model_from_profile(path))
    assert str(info.value) == (f"p.csv:3: n_embd: must be the first row's {first} (p.csv:2): a profile measures one "
                               "model's layers, got '8192'")


def test_a_profile_still_far_off_after_fitting_is_written_with_a_warning(tmp_path, capsys):
    medians = [i for i, c in enumerate(PROFILE_COLUMNS) if c.startswith("time_stats.") and c.endswith(".median")]
    profile = (Path(__file__).resolve().parent.parent / "data" / "profiles" / "a100" /
               "Llama-2-7b-hf_linear_ops.csv").read_text().splitlines()
    rows = [line.split(",") for line in profile[1:11]]  # ten rows: enough to fit on
    for row in rows:  # a thousand times slower than any A100 runs these ops
        for i in medians:
            row[i] = str(float(row[i]) * 1000)
    path = tmp_path / "slow.csv"
    path.write_text("\n".join(",".join(row) for row in [PROFILE_COLUMNS] + rows) + "\n")
    out = tmp_path / "fitted.yaml"
    assert main(["calibrate", "--from-profile", str(path), "--hardware", "a100-sxm-80gb", "--out", str(out)]) == 0
    warning = capsys.readouterr().err
    assert warning.startswith("warning: fitted, the GEMMs are still off by a median 98%: ") and warning.endswith(
        "slow.csv does not look measured on a100-sxm-80gb (check --hardware and --model); the spec is written all "
        "the same\n")
    assert get_hardware(str(out)).name == "a100-sxm-80gb-fitted"
