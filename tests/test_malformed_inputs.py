"""Malformed inputs at the front door, as a user gives them: each is refused with one line naming the file,
the field, the value and what is allowed (never a traceback, NaN or a silent answer). One case per hole
found by the malformed-input sweep; the scenario file's own cases are in test_scenario.py."""
import json

import pytest
import yaml

from infersim.cli import main
from infersim.roofline import get_hardware
from infersim.serving import read_csv_runs

HEADER = ("engine,engine_version,model,hardware,tensor_parallel,precision,input_tokens,output_tokens,num_requests,"
          "request_rate_per_s,achieved_requests_per_s,mean_ttft_ms,mean_itl_ms,total_tokens_per_s,"
          "output_tokens_per_s\n")
ROW = "tensorrt-llm,0.14.0,llama-3.1-8b,h100-sxm,1,bf16,128,16,20,2,2.0,62.0,21.0,1406.0,498.0\n"
BENCH = {"completed": 20, "request_rate": 2, "total_input_tokens": 2560, "total_output_tokens": 320,
         "mean_ttft_ms": 30.0, "mean_tpot_ms": 8.0, "output_throughput": 200.0}
JSON_FLAGS = ("--model", "llama-3.1-8b", "--hardware", "h100-sxm")


def one_line_error(capsys, *argv) -> str:
    """The one line a refused command prints (exit status 2), without its 'infersim ...: error: ' prefix."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:  # argparse refuses a flag's value before running anything
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    return err.split("error: ", 1)[1].strip()


@pytest.mark.parametrize("name, text, flags, message", [
    ("r.json", json.dumps(BENCH)[:-10], JSON_FLAGS, "r.json: is not valid JSON (Unterminated string starting at: "
     "line 1, column "),
    ("r.json", "", JSON_FLAGS, "r.json: is not valid JSON (Expecting value: line 1, column 1)"),
    ("r.json", json.dumps(BENCH | {"request_rate": None}), JSON_FLAGS, "r.json: request_rate: is empty or missing"),
    # 5 output tokens over 20 requests: 0.25 a request, rounded to 0; one token a request has no gap to time
    ("r.json", json.dumps(BENCH | {"total_output_tokens": 5}), JSON_FLAGS,
     "r.json: total_output_tokens: averages 0.25 tokens over the 20 completed requests; a run of one output token "
     "a request has no inter-token latency to compare (mean_tpot_ms), got 5.0"),
    ("r.JSON", json.dumps(BENCH), (), "--model, --hardware: are needed with a vllm bench serve JSON"),
    ("r.csv", HEADER + ROW.replace(",128,16,", ",128,1,"), (),
     "r.csv:2: output_tokens: must be >= 2 (a run of one output token a request has no inter-token latency to "
     "compare, mean_itl_ms), got '1'"),
    ("r.csv", (HEADER + ROW).replace(",", ";"), (), "r.csv:2: names none of the columns of serving runs (model, "),
    ("r.csv", HEADER.replace("mean_itl_ms,", "mean_itl,") + ROW, (),
     "r.csv:2: mean_itl: is not a column infersim reads: did you mean mean_itl_ms?"),
    ("r.csv", HEADER + ROW.replace("tensorrt-llm", '"tensorrt-llm'), (),
     "r.csv:2: is not valid CSV (unexpected end of data)"),
    # Llama-3.1's context is 128K = 131,072 tokens; 200,000 + 16 = 200,016 exceed it
    ("r.csv", HEADER + ROW.replace(",128,16,", ",200000,16,"), (),
     "r.csv:2: input_tokens + output_tokens: reach 200,016 tokens, beyond llama-3.1-8b's context of 131,072, so "
     "no request could be served, got 200016"),
    ("r.csv", HEADER + ROW, ("--ttft-ms", "-5"), "argument --ttft-ms: must be a finite number > 0, got '-5'"),
    ("r.csv", HEADER + ROW, ("--ttft-ms", "nan"), "argument --ttft-ms: must be a finite number > 0, got 'nan'"),
    ("r.csv", HEADER + ROW, ("--ttft-ms", "0"), "argument --ttft-ms: must be a finite number > 0, got '0'"),
    ("r.csv", HEADER + ROW, ("--engine", "vllm-v9"), "--engine: unknown engine preset; use a YAML path or one of "
     "sglang, trtllm, trtllm-cpp, vllm-v0, vllm-v1, vllm-v1-0.8, got 'vllm-v9'"),
    ("r.csv", HEADER + ROW, ("--model", "llama-3.1-70b"), "--model: applies to a vllm bench serve JSON only (each "
     "row of a CSV names its model, hardware, tensor_parallel and precision), got 'llama-3.1-70b'"),
    ("r.csv", HEADER + ROW, ("--tp", "1"), "--tp: applies to a vllm bench serve JSON only"),
    # a JSON number too large for a float: json.loads would read it as Infinity, every request at once
    ("r.json", json.dumps(BENCH).replace('"request_rate": 2', '"request_rate": 1e400'), JSON_FLAGS,
     "r.json: holds a number beyond a float's range (1.8e308): write Infinity where a value is unbounded, got "
     "'1e400'"),
    # 20 requests of at most 2^24 tokens each hold at most 335,544,320
    ("r.json", json.dumps(BENCH | {"total_input_tokens": 1e25}), JSON_FLAGS,
     "r.json: total_input_tokens: must be a finite number from 1 to 335,544,320, got 1e+25"),
    ("r.json", json.dumps(BENCH | {"completed": "20"}), JSON_FLAGS,
     "r.json: completed: must be a finite whole number from 1 to 10,000,000 (a JSON number, not text), got '20'"),
    # --save-detailed lists of another run: 2 requests where the totals count 20
    ("r.json", json.dumps(BENCH | {"input_lens": [4000, 4000], "output_lens": [2000, 2000]}), JSON_FLAGS,
     "r.json: output_lens: lists 2 requests, 2 of them with output tokens, but completed is 20: are the lists "
     "from another run?"),
    # 20 requests of 128 tokens sum to 2,560 = total_input_tokens; of 200, to 4,000
    ("r.json", json.dumps(BENCH | {"input_lens": [200] * 20, "output_lens": [16] * 20}), JSON_FLAGS,
     "r.json: input_lens: sums to 4,000 tokens over all requests and 4,000 over those with output tokens, but "
     "total_input_tokens is 2,560"),
    ("nope.json", None, (), "serving runs: no such file, got '"),
    # other names of the columns infersim reads: read as the table's own they would be silently ignored
    ("r.csv", HEADER.replace("precision", "quantization") + ROW.replace("bf16", "fp8"), (),
     "r.csv:2: quantization: is not a column infersim reads: did you mean precision?"),
    ("r.csv", HEADER.replace("mean_itl_ms", "mean_tpot_ms") + ROW, (),
     "r.csv:2: mean_tpot_ms: is not a column infersim reads: did you mean mean_itl_ms?"),
    ("r.csv", HEADER.replace("mean_ttft_ms", "Mean_TTFT_ms") + ROW, (),
     "r.csv:2: Mean_TTFT_ms: is not a column infersim reads: did you mean mean_ttft_ms?"),
    ("r.csv", HEADER.replace("\n", ",p99_tpot_ms\n") + ROW.replace("\n", ",30\n"), (),
     "r.csv:2: p99_tpot_ms: is not a column infersim reads: did you mean p99_itl_ms?"),
    ("r.csv", HEADER.replace("\n", ",burstiness\n") + ROW.replace("\n", ",abc\n"), (),
     "r.csv:2: burstiness: must be a finite number from 0.001 to 1,000, got 'abc'"),
    # 16,777,216 / 128 = 131,072 times the mean
    ("r.csv", HEADER.replace("\n", ",input_tokens_stddev\n") + ROW.replace("\n", ",16777216\n"), (),
     "r.csv:2: input_tokens_stddev: is 131,072 times its mean of 128 tokens: beyond 10 times, nearly every drawn "
     "length would be 1 token"),
    ("r.csv", HEADER + ROW.replace(",2,2.0,", ",-1,2.0,"), (),
     "r.csv:2: request_rate_per_s: must be a finite number from 1e-06 to 1,000,000,000, or inf (every request at "
     "once), got '-1'"),
])
def test_bad_measured_runs_are_one_line_before_any_simulation(tmp_path, capsys, name, text, flags, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    assert one_line_error(capsys, "compare-serving", tmp_path / name, *flags).startswith(message)


@pytest.mark.parametrize("old, new, message, got", [
    # Llama-3.1-8B's 32 heads do not split over 3 GPUs
    (",h100-sxm,1,bf16,", ",h100-sxm,3,bf16,", "r.csv:2: tensor_parallel: must divide num_heads=32", "3"),
    (",h100-sxm,1,bf16,", ",a100-sxm-80gb,1,fp8,", "r.csv:2: precision: a100-sxm-80gb has no fp8 tensor-core peak",
     "'fp8'"),
    # 20 arrivals at 1e-6 a second span 1.9e7 s; 200 span 2e8, past the clock's 1e8
    (",20,2,2.0,", ",200,1e-6,2.0,", "r.csv:2: request_rate_per_s: 200 arrivals span ", "1e-06"),
])
def test_a_runs_simulation_names_the_column_it_came_from(tmp_path, capsys, old, new, message, got):
    (tmp_path / "r.csv").write_text(HEADER + ROW.replace(old, new))
    line = one_line_error(capsys, "compare-serving", tmp_path / "r.csv")
    assert line.startswith(message) and line.endswith(f", got {got}")


def test_spaces_around_csv_column_names_and_cells_are_not_part_of_them(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(HEADER.replace(",mean_ttft_ms,", ", mean_ttft_ms ,")
                    + ROW.replace(",llama-3.1-8b,h100-sxm,", ", llama-3.1-8b , h100-sxm,"))
    (run,) = read_csv_runs(path)
    assert (run.model, run.hardware, run.mean_ttft_ms) == ("llama-3.1-8b", "h100-sxm", 62.0)


@pytest.mark.parametrize("name, text, flags, message", [
    ("r.csv", HEADER + ROW, ("--engine", "nope"), "--engine: unknown engine preset; use a YAML path or one of "),
    ("r.json", json.dumps(BENCH), (), "--model, --hardware: are needed with a vllm bench serve JSON"),
    ("r.csv", HEADER + ROW, ("--tp", "2"), "--tp: applies to a vllm bench serve JSON only"),
])
def test_calibrate_from_serving_refuses_what_it_cannot_fit(tmp_path, capsys, name, text, flags, message):
    (tmp_path / name).write_text(text)
    assert one_line_error(capsys, "calibrate", "--from-serving", tmp_path / name, "--out", tmp_path / "o.yaml",
                          *flags).startswith(message)


@pytest.mark.parametrize("flags, message", [
    (("--max-model-len", "1"), "argument --max-model-len: must be >= 2, got 1"),
    (("--max-model-len", "100000000000"), "--max-model-len: must be <= 16,777,216 tokens, got 100000000000"),
    (("--max-model-len", "nan"), "argument --max-model-len: must be an integer, got 'nan'"),
    (("--tp", "x"), "argument --tp: must be an integer, got 'x'"),
    (("--tp", "16"), "--tp: spans more GPUs than one h100-sxm nvswitch fabric joins (8); tensor parallelism "
                     "across nodes is not modelled: put the nodes in pipeline_parallel stages, got 16"),
])
def test_engines_flags_are_bounded_as_a_scenarios_keys(capsys, flags, message):
    assert one_line_error(capsys, "engines", *flags).startswith(message)


def test_validate_on_the_cpu_refuses_a_gpus_spec(tmp_path, capsys):
    assert one_line_error(capsys, "validate", "--device", "cpu", "--hardware", "h100-sxm", "--out",
                          tmp_path / "v").startswith("--hardware: names a GPU, but --device cpu times this CPU's "
                                                     "kernels")


PLAN = ("name: p\nmodels: llama-3.1-8b\nhardware: [{name: h100-sxm, price_per_gpu_hour: 3}]\n"
        "configurations: [{quantization: fp16}]\nworkload: {prompt_tokens: 100, output_tokens: 10}\n"
        "slo: {ttft_s: {p99: 1.0}}\ntarget_rate_per_s: 1\n")


@pytest.mark.parametrize("old, new, message", [
    ("configurations: [{quantization: fp16}]", "configurations: []",
     "p.yaml: configurations: must hold at least 1 item, got []"),
    ("{p99: 1.0}", "{99: 1.0}", "p.yaml: slo.ttft_s: 99 is not a percentile: write mean, p50, p90, p99 or p99.9"),
])
def test_plan_lists_and_percentiles_say_what_to_write(tmp_path, capsys, old, new, message):
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN.replace(old, new))
    assert one_line_error(capsys, "plan", plan, "--out", tmp_path / "out") == message


@pytest.mark.parametrize("old, new, message", [
    # Llama-3.1-8B's 32 heads: refused before any simulation, not a table of one infeasible candidate
    ("configurations: [{quantization: fp16}]", "configurations: [{parallelism: {tensor_parallel: 3}}]",
     "p.yaml: configurations.0.parallelism.tensor_parallel: must divide num_heads=32, got 3"),
    ("configurations: [{quantization: fp16}]", "configurations: [{name: a, quantization: fp16}, {name: a}]",
     "p.yaml: configurations.1.name: repeats configurations.0.name; give each configuration a distinct name, got 'a'"),
    # 500 requests a simulation: the longer of two seeds' Poisson arrivals spans ~547 s at 1 req/s
    ("target_rate_per_s: 1", "target_rate_per_s: 1e-9",
     "p.yaml: target_rate_per_s: must be >= 5.53e-06 req/s: below it a simulation's 500 requests "
     "(search.num_requests) arrive over more than the 1e+08 s (3 years) the simulated clock resolves; raise it or "
     "lower search.num_requests, got 1e-09"),
])
def test_a_plan_no_simulation_could_answer_is_refused_up_front(tmp_path, capsys, old, new, message):
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN.replace(old, new))
    assert one_line_error(capsys, "plan", plan, "--out", tmp_path / "out") == message
    assert not (tmp_path / "out").exists()  # nothing written: the plan was refused before it ran


def test_a_config_json_without_model_type_says_it_is_required(tmp_path, capsys):
    (tmp_path / "tiny").mkdir()
    config = tmp_path / "tiny" / "config.json"
    config.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}))
    assert one_line_error(capsys, "roofline", "--model", config, "--hardware", "h100-sxm").startswith(
        "tiny/config.json: model_type: is required (one of llama, ")


def test_roofline_notes_a_batch_the_kv_cache_cannot_hold(capsys):
    # Llama-3.1-8B keeps 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes = 128 KiB a token: 65,536
    # sequences of 131,001 tokens need ~1.1 PB, far beyond an 80 GB H100; one of 1,025 tokens needs 134 MB
    assert main(["roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "65536",
                 "--context", "131000"]) == 0
    out = capsys.readouterr().out
    assert "note: the KV cache holds " in out and " sequences at context 131001, not 65536" in out
    assert main(["roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "1"]) == 0
    assert "the KV cache holds" not in capsys.readouterr().out


@pytest.mark.parametrize("command", [("run",), ("plan",), ("roofline", "--model", "llama-3.1-8b", "--hardware")])
def test_an_empty_yaml_file_is_said_to_be_empty(tmp_path, capsys, command):
    empty = tmp_path / "e.yaml"
    empty.write_text("# nothing here yet\n\n")
    flags = ("--out", tmp_path / "out") if command[0] in ("run", "plan") else ()
    assert one_line_error(capsys, *command, empty, *flags) == \
        "e.yaml: is empty (it holds no YAML data, only blank lines or comments)"


@pytest.mark.parametrize("flags, message", [
    (("--phase", "prefill", "--context", "100"), "--context: applies to --phase decode only; this is a prefill "
                                                 "step, got 100"),
    (("--prompt", "100",), "--prompt: applies to --phase prefill only; this is a decode step, got 100"),
])
def test_roofline_refuses_the_other_phases_flag(capsys, flags, message):
    assert one_line_error(capsys, "roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                          *flags) == message


@pytest.mark.parametrize("flags, message", [
    (("--tp", "3"), "--tp: must divide num_heads=32, got 3"),
    (("--quant", "fp8x"), "--quant: unknown scheme; allowed: fp16, bf16, "),
    (("--quant", "nvfp4"), "--quant: h100-sxm has no fp4 tensor-core peak, which this scheme's GEMMs run at; it "
                           "has fp16, fp32, fp8, int8, tf32 (infersim hardware lists the peaks of each GPU), got "
                           "'nvfp4'"),
])
def test_compare_serving_names_the_flag_a_json_run_took_its_setting_from(tmp_path, capsys, flags, message):
    (tmp_path / "r.json").write_text(json.dumps(BENCH))
    assert one_line_error(capsys, "compare-serving", tmp_path / "r.json", *JSON_FLAGS, *flags).startswith(message)


def test_calibrate_refuses_to_fit_a_profile_of_two_rows(profile_dir, tmp_path, capsys):
    rows = (profile_dir / "Llama-2-7b-hf_linear_ops.csv").read_text().splitlines()[:3]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    assert one_line_error(capsys, "calibrate", "--from-profile", tmp_path / "p.csv", "--hardware", "a100-sxm-80gb",
                          "--out", tmp_path / "o.yaml").endswith(
        "p.csv has 2 rows: fitting 5 factors needs a sweep of token counts (at least 8 rows); infersim "
        "compare-profile checks a few rows against the spec as it is")


def test_calibrate_from_a_profile_refuses_the_engine_flag(capsys):
    # --engine picks the preset --from-serving fits; a per-op profile fits the hardware's factors, whatever
    # the engine
    line = one_line_error(capsys, "calibrate", "--from-profile", "data/profiles/a100", "--engine", "sglang")
    assert line == "--engine: applies with --from-serving only, got 'sglang'"


def test_an_output_name_the_system_refuses_is_one_line(tmp_path, capsys):
    # Linux allows names of at most 255 bytes
    line = one_line_error(capsys, "run", "scenarios/default.yaml", "--no-plot", "--out", tmp_path / ("a" * 300))
    assert line.startswith("argument --out: cannot be used (File name too long): ")


def test_a_plan_lists_one_hardware_file_once_whatever_the_path(tmp_path, capsys):
    # hw.yaml and ./hw.yaml are one file: two candidates of one GPU, one "costing the same" as the other
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(get_hardware("l4").to_dict()))
    plan = {"name": "p", "models": "tiny-llama", "target_rate_per_s": 1, "slo": {"ttft_s": {"p99": 1}},
            "hardware": [{"name": "hw.yaml", "price_per_gpu_hour": 1}, {"name": "./hw.yaml", "price_per_gpu_hour": 1}],
            "workload": {"prompt_tokens": 32, "output_tokens": 8}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    assert one_line_error(capsys, "plan", tmp_path / "p.yaml", "--out", tmp_path / "o") == (
        "p.yaml: hardware.1.name: repeats hardware.0.name; list each GPU once, at one price, got './hw.yaml'")


@pytest.mark.parametrize("section, message", [
    ("slo: {ttft_s: 0.5, tpot_s: 50}", "s.yaml: slo.tpot_s: 50 s is over 10 s: SLO bounds are in seconds (write 0.05 "
     "for 50 ms), got 50"),
    ("workload: {trace: {path: t.csv, rate_scale: 1e300}}", "s.yaml: workload.trace.rate_scale: must be <= "),
])
def test_scenario_values_in_the_wrong_unit_are_refused(tmp_path, capsys, section, message):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n")
    text = "model: tiny-llama\nhardware: l4\n" + section + "\n"
    if "workload" not in section:
        text += "workload: {num_requests: 5, arrival: {rate_per_s: 1}, prompt_tokens: 10, output_tokens: 5}\n"
    (tmp_path / "s.yaml").write_text(text)
    assert one_line_error(capsys, "run", tmp_path / "s.yaml", "--no-plot", "--out", tmp_path / "o").startswith(message)


def test_a_drafter_that_does_not_fit_is_named_not_the_target(tmp_path, capsys):
    # Llama-3.1-8B's 16.1 GB fit an L4's 24 GB; Llama-3.2-3B's 6.4 GB as its drafter (same tokenizer) cannot
    (tmp_path / "s.yaml").write_text(
        "model: llama-3.1-8b\nhardware: l4\nscheduler: {max_model_len: 4096}\nworkload: {num_requests: 5, arrival: "
        "{rate_per_s: 1}, prompt_tokens: 10, output_tokens: 5}\nspeculative: {method: model, draft_model: "
        "llama-3.2-3b, num_speculative_tokens: 4, acceptance_rate: 0.7}\n")
    line = one_line_error(capsys, "run", tmp_path / "s.yaml", "--no-plot", "--out", tmp_path / "o")
    assert line.startswith("s.yaml: speculative.draft_model: does not fit beside llama-3.1-8b on l4: ")
    assert line.endswith(", got 'llama-3.2-3b'")


def test_a_plan_over_a_short_trace_names_search_num_requests(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("arrival_time_s,prompt_tokens,output_tokens\n" +
                                    "".join(f"{i},10,5\n" for i in range(5)))
    plan = {"name": "p", "models": "tiny-llama", "target_rate_per_s": 1, "slo": {"ttft_s": {"p99": 1}},
            "hardware": [{"name": "l4", "price_per_gpu_hour": 1}], "workload": {"trace": {"path": "t.csv"}},
            "search": {"num_requests": 20}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    assert one_line_error(capsys, "plan", tmp_path / "p.yaml", "--out", tmp_path / "o") == (
        "p.yaml: search.num_requests: is more than the trace's 5 rows: lower it to at most 5, got 20")


def test_a_contrastive_amateur_that_does_not_fit_is_named(tmp_path, capsys):
    # the amateur runs beside the expert as a drafter does: Llama-3.2-3B's 6.4 GB cannot join Llama-3.1-8B on an L4
    (tmp_path / "s.yaml").write_text(
        "model: llama-3.1-8b\nhardware: l4\nscheduler: {max_model_len: 4096}\nworkload: {num_requests: 5, arrival: "
        "{rate_per_s: 1}, prompt_tokens: 10, output_tokens: 5}\ncontrastive: {amateur_model: llama-3.2-3b}\n")
    line = one_line_error(capsys, "run", tmp_path / "s.yaml", "--no-plot", "--out", tmp_path / "o")
    assert line.startswith("s.yaml: contrastive.amateur_model: does not fit beside llama-3.1-8b on l4: ")
    assert line.endswith("; pick a smaller model, got 'llama-3.2-3b'")


TINY = ("model: tiny-llama\nhardware: a100-sxm-80gb\nworkload: {num_requests: 5, arrival: {rate_per_s: 1}, "
        "prompt_tokens: 10, output_tokens: 5}\n")


@pytest.mark.parametrize("section, message", [
    # prefix caching is the engine preset's default, not the scenario's ask: a contiguous cache runs without it
    ("scheduler: {name: static, max_num_batched_tokens: 512}\nkv_cache: {prefix_caching: true}\n",
     "kv_cache.prefix_caching: needs paged KV blocks, and the static scheduler here runs on contiguous ones; set "
     "prefix_caching: false, got True"),
    ("scheduler: orca\nkv_cache: {prefix_caching: true}\n", "kv_cache.prefix_caching: needs paged KV blocks, and the "
     "orca scheduler here runs on contiguous ones; set prefix_caching: false or kv_cache.allocator: paged, got True"),
    # one bound, not >= 1 for 0 and then >= 2 for 1
    ("scheduler: {max_model_len: 0}\n", "scheduler.max_model_len: must be >= 2, got 0"),
    ("contrastive: {amateur_model: tiny-llama}\nearly_exit: {exit_fractions: [1.0], probabilities: [1.0]}\n",
     "contrastive: is modelled on its own, not together with early_exit; keep one of them, got 'both set'"),
    # a list of rates is told of its own items, not that it is not a number
    ("speculative: {method: ngram, num_speculative_tokens: 2, acceptance_rate: [0.9, 1.5]}\n",
     "speculative.acceptance_rate.1: must be <= 1, got 1.5"),
    ("speculative: {method: ngram, num_speculative_tokens: 2, acceptance_rate: []}\n",
     "speculative.acceptance_rate: must hold at least 1 item, got []"),
    # lengths are clipped to >= 1 token: a zipf of scale 0 was scale 1, a normal of mean 0.5 most lengths 1
    ("workload: {num_requests: 5, arrival: {rate_per_s: 1}, prompt_tokens: {kind: zipf, value: 0}, output_tokens: 5}\n",
     "workload.prompt_tokens: value must be >= 1, got 0"),
    ("workload: {num_requests: 5, arrival: {rate_per_s: 1}, prompt_tokens: {kind: normal, mean: 0.5, std: 3}, "
     "output_tokens: 5}\n", "workload.prompt_tokens: mean must be >= 1 token, got 0.5"),
    # a drafter or an amateur as large as the served model saves nothing
    ("speculative: {method: model, draft_model: tiny-moe, num_speculative_tokens: 2, acceptance_rate: 0.5}\n",
     "speculative.draft_model: runs 131,904 parameters per token, no fewer than tiny-llama's 106,816; a drafter must "
     "be a smaller model than the one it serves, got 'tiny-moe'"),
    ("contrastive: {amateur_model: tiny-llama}\n", "contrastive.amateur_model: runs 106,816 parameters per token, no "
     "fewer than tiny-llama's 106,816; the amateur must be a smaller model than the one it serves, got 'tiny-llama'"),
])
def test_scenario_sections_that_cannot_go_together_say_which_key_to_change(tmp_path, capsys, section, message):
    text = TINY.split("workload")[0] if section.startswith("workload") else TINY
    (tmp_path / "s.yaml").write_text(text + section)
    assert one_line_error(capsys, "run", tmp_path / "s.yaml", "--no-plot", "--out", tmp_path / "o") == (
        "s.yaml: " + message)


@pytest.mark.parametrize("scheduler", ["static", "orca"])
def test_a_contiguous_cache_scheduler_runs_on_the_default_engine(tmp_path, capsys, scheduler):
    (tmp_path / "s.yaml").write_text(TINY + f"scheduler: {{name: {scheduler}, max_num_batched_tokens: 512}}\n")
    assert main(["run", str(tmp_path / "s.yaml"), "--no-plot", "--quiet", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["requests_completed"] == 5


def test_roofline_names_the_hardware_flag_a_model_does_not_fit(capsys):
    assert one_line_error(capsys, "roofline", "--model", "llama-3.1-405b", "--hardware", "h100-sxm") == (
        "--hardware: llama-3.1-405b does not fit: weights 811.7 GB + activations 3.2 GB exceed 77.0 GB usable on "
        "h100-sxm; raise tensor or pipeline parallelism, or quantize, got 'h100-sxm'")
