"""Scenario files: the shipped ones run, and every mistake is one line naming the key path."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infersim.roofline.errors import SpecError
from infersim.scenario import build_run, load_run, load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
BASE = """
model: tiny-llama
hardware: a100-sxm-80gb
workload:
  num_requests: 20
  arrival: {process: poisson, rate_per_s: 5}
  prompt_tokens: 100
  output_tokens: 20
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str) -> str:
    """The error line of a scenario file, without the file's name it starts with."""
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix("s.yaml: ")


def test_the_issue_example_names_the_file_key_path_value_and_bound(tmp_path):
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, BASE.replace("rate_per_s: 5", "rate_per_s: -3")))
    assert str(info.value) == "s.yaml: workload.arrival.rate_per_s: must be > 0, got -3"


@pytest.mark.parametrize("change,expected", [
    (("model: tiny-llama", "model: llama-9b"), "model: unknown model"),
    (("hardware: a100-sxm-80gb", "hardware: h900"), "hardware: unknown hardware"),
    (("prompt_tokens: 100", "prompt_tokens: 0"), "workload.prompt_tokens: must be >= 1, got 0"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: uniform, low: 10}"), "workload.prompt_tokens: kind uniform needs low and high"),
    (("num_requests: 20", "num_requests: twenty"), "workload.num_requests: must be a whole number, got 'twenty'"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: fifo}"), "scheduler.name: must be one of static, orca, vllm, sarathi"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: disaggregated}"),
     "scheduler.name: disaggregation is a cluster topology: set cluster: {mode: disaggregated"),
    (("model: tiny-llama", "model: tiny-llama\ncluster: {replicas: 2, prefill_replicas: 1}"),
     "cluster: prefill_replicas does not apply to mode colocated"),
    (("model: tiny-llama", "model: tiny-llama\ncluster: {router: random}"),
     "cluster.router: must be one of round_robin, least_outstanding, least_kv, got 'random'"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: static}\nkv_cache: {allocator: paged}"),
     "kv_cache.allocator: the static scheduler runs on contiguous KV blocks, got 'paged'"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {blocksize: 16}"), "kv_cache.blocksize: is not a known key"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {num_blocks: 1000000000000}"),
     "kv_cache.num_blocks: is more than"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {memory_utilization: 1.5}"), "kv_cache.memory_utilization: must be <= 1, got 1.5"),
    (("model: tiny-llama", "model: tiny-llama\nquantization: w5a16"), "quantization.preset: unknown scheme"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {max_model_len: 99999999}"), "scheduler.max_model_len: must be <="),
    (("model: tiny-llama", "model: tiny-llama\nseed: -1"), "seed: must be >= 0, got -1"),
    (("model: tiny-llama", "model: tiny-llama\nengine: {overhead_fixed_s: .inf}"),
     "engine.overhead_fixed_s: must be a finite number, got inf"),
    (("model: tiny-llama", "model: tiny-llama\nslo: {ttft_s: .nan}"), "slo.ttft_s: must be a finite number, got nan"),
    (("model: tiny-llama", "model: tiny-llama\ncluster: {kv_transfer_gb_per_s: .inf}"),
     "cluster.kv_transfer_gb_per_s: must be a finite number, got inf"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {block_size: 9223372036854775808}"),
     "kv_cache.block_size: must be <= 1,024, got 9223372036854775808"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {swap_space_gib: 1.0e+300}"),
     "kv_cache.swap_space_gib: must be <= 1,048,576, got 1e+300"),
    (("model: tiny-llama", "model: tiny-llama\ncluster: {replicas: 1000000}"),
     "cluster.replicas: must be <= 10,000, got 1000000"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: lognormal, mean: 1.0e-300, std: 10}"),
     "workload.prompt_tokens: mean must be >= 1 token"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: uniform, low: 1, high: 1e30}"),
     "workload.prompt_tokens.high: is too large a whole number, got 1e+30"),
    (("rate_per_s: 5", "rate_per_s: true"), "workload.arrival.rate_per_s: must be a number, not true/false, got True"),
    (("rate_per_s: 5", "rate_per_s: 1.0e-300"), "workload.arrival.rate_per_s: 20 arrivals span"),
    (("model: tiny-llama", "model: tiny-llama\nengine: {flash_attention: 1}"),
     "engine.flash_attention: must be true or false, got 1"),
    (("num_requests: 20", "num_requests: 20\n  num_seqs: 0"), "workload.num_seqs: must be >= 1, got 0"),
    (("num_requests: 20", "num_requests: 20\n  lengths_file: x.csv"), "workload: a lengths_file fixes prompt and "
                                                                        "output lengths; remove prompt_tokens"),
    (("model: tiny-llama", "model: tiny-llama\nkv_cache: {memory_utilization: 0}"),
     "kv_cache.memory_utilization: must be >= 0.01, got 0"),
    (("model: tiny-llama", "model: nowhere/config.json"), "model: no such file (relative paths start at the "
                                                           "scenario file's folder), got '"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: fixed, value: 10, mean: 500}"),
     "workload.prompt_tokens: mean does not apply to kind fixed (it takes value)"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: normal, mean: 100, std: 10, low: 5}"),
     "workload.prompt_tokens: low does not apply to kind normal (it takes mean, std, max_tokens)"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: uniform, low: 100, high: 200, max_tokens: 10}"),
     "workload.prompt_tokens: max_tokens=10 is below high=200, so lengths would pile up at max_tokens; raise "
     "max_tokens or lower high"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: lognormal, mean: 500, std: 100, max_tokens: 400}"),
     "workload.prompt_tokens: max_tokens=400 is below mean=500"),
    (("prompt_tokens: 100", "prompt_tokens: {kind: zipf, value: 2000000}"),
     "workload.prompt_tokens: max_tokens=1,048,576 is below value=2,000,000"),
    # tiny-llama's KV block: 2 x 2 layers x 2 KV heads x 16 dims x 2 bytes x 16 tokens = 4 KiB = 3.81e-06 GiB
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: vllm, preemption: swap}\nkv_cache: {swap_space_gib: 0}"),
     "kv_cache.swap_space_gib: holds no KV block (3.81e-06 GiB each here) for scheduler.preemption swap; give swap "
     "space or use preemption: recompute, got 0.0"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: vllm, preemption: swap}\nkv_cache: {swap_space_gib: 1.0e-9}"),
     "kv_cache.swap_space_gib: holds no KV block"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {preemption: swap}"),
     "scheduler.preemption: the vllm-v1 scheduler preempts by recompute, got 'swap'"),
    (("model: tiny-llama", "model: tiny-llama\nengine: {preset: tgi}"), "engine.preset: must be one of vllm-v1, vllm-v1-0.8, vllm-v0"),
    (("arrival: {process: poisson, rate_per_s: 5}", "arrival: {process: concurrency}"),
     "workload.arrival: process concurrency needs concurrency"),
    (("arrival: {process: poisson, rate_per_s: 5}", "arrival: {process: burst, rate_per_s: 5}"),
     "workload.arrival: rate_per_s does not apply to process burst"),
    (("model: tiny-llama", "model: tiny-llama\nscheduler: {name: vllm, preemption: swap}\nkv_cache: {swap_space_gib: 1.0e-9}"),
     "kv_cache.swap_space_gib: holds no KV block"),
])
def test_bad_values_get_one_line_naming_the_field(tmp_path, change, expected):
    message = error_of(tmp_path, BASE.replace(*change))
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_sections_and_malformed_yaml(tmp_path):
    assert error_of(tmp_path, "model: tiny-llama\nhardware: l4\n").startswith("workload: is required")
    assert error_of(tmp_path, BASE + "  trace: {path: x.csv}\n").startswith("workload: a trace fixes")
    assert error_of(tmp_path, "model: [unclosed\n").startswith("s.yaml:2: is not valid YAML")
    assert "must be a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_a_missing_trace_file_is_named(tmp_path):
    text = BASE.replace("  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n  output_tokens: 20\n",
                        "  trace: {path: nowhere.csv}\n")
    assert error_of(tmp_path, text).startswith("workload.trace.path: no such file, got '")


def test_shared_prefix_is_prepended_to_the_prompt(tmp_path):
    text = BASE + "  shared_prefix: {tokens: 64, groups: 2}\n"
    scn, base = load_scenario(write(tmp_path, text))
    _, requests = build_run(scn, base)
    assert all(r.prompt_tokens == 164 and r.prefix_tokens == 64 and r.prefix_id in (0, 1) for r in requests)


def test_same_seed_same_requests_and_another_seed_differs(tmp_path):
    text = BASE.replace("prompt_tokens: 100", "prompt_tokens: {kind: lognormal, mean: 200, std: 100}")
    a = build_run(*load_scenario(write(tmp_path, text)))[1]
    b = build_run(*load_scenario(write(tmp_path, text)))[1]
    c = build_run(*load_scenario(write(tmp_path, text + "seed: 9\n")))[1]
    assert [(r.arrival_s, r.prompt_tokens) for r in a] == [(r.arrival_s, r.prompt_tokens) for r in b]
    assert [r.prompt_tokens for r in a] != [r.prompt_tokens for r in c]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_validate(path):
    scn, base = load_scenario(path)
    cfg, requests = build_run(scn, base)
    assert requests and cfg.model.name == scn.model


def test_infersim_run_writes_the_summary_the_requests_and_the_timeline(tmp_path):
    scenario = write(tmp_path, BASE)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "infersim.cli", "run", str(scenario), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(summary[key]) >= {"mean", "p50", "p90", "p99"}
    for key in ("throughput_tokens_per_s", "throughput_requests_per_s", "requests_completed", "requests_rejected",
                "preemptions", "kv_utilization_mean", "simulated_time_s"):
        assert key in summary
    assert summary["requests_completed"] == 20
    rows = (out / "requests.csv").read_text().splitlines()
    assert len(rows) == 21 and rows[0].startswith("id,replica,arrival_s")
    timeline = (out / "timeline.csv").read_text().splitlines()
    assert timeline[0] == ("start_s,duration_s,replica,batch_seqs,prefill_tokens,decode_tokens,kv_blocks_used,"
                           "queue_len,kv_tokens")
    assert (out / "run.png").stat().st_size > 10_000
    assert "TTFT" in proc.stdout


def test_infersim_run_reports_a_bad_file_in_one_line(tmp_path):
    scenario = write(tmp_path, BASE.replace("rate_per_s: 5", "rate_per_s: -3"))
    proc = subprocess.run([sys.executable, "-m", "infersim.cli", "run", str(scenario)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "infersim: error: s.yaml: workload.arrival.rate_per_s: must be > 0, got -3\n"


def test_infersim_run_warns_about_rejected_requests(tmp_path):
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\nkv_cache: {num_blocks: 4, block_size: 16}")
    proc = subprocess.run([sys.executable, "-m", "infersim.cli", "run", str(write(tmp_path, text)), "--no-plot",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # 100 + 20 tokens need 8 blocks of 16; the cache holds 4
    assert "warning: 20 of 20 requests rejected, e.g. request 0: needs 8 KV blocks at its longest but the " \
           "cache holds 4" in proc.stderr
    quiet = subprocess.run([sys.executable, "-m", "infersim.cli", "run", str(write(tmp_path, text)), "--no-plot",
                            "--quiet", "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert quiet.stdout == "" and quiet.stderr.startswith("warning: 20 of 20 requests rejected")


def test_numbers_yaml_reads_as_text_are_taken_as_numbers(tmp_path):
    # YAML 1.1 reads 1e3 and 5e0 (no dot, no signed exponent) as strings
    scn, cfg, requests = load_run(write(tmp_path, BASE.replace("num_requests: 20", "num_requests: 1e1").replace(
        "rate_per_s: 5", "rate_per_s: 5e0")))
    assert (scn.workload.num_requests, scn.workload.arrival.rate_per_s, len(requests)) == (10, 5.0, 10)


@pytest.mark.parametrize("text,message", [
    (BASE + "seed: 1\nseed: 2\n", "s.yaml:10: seed: appears twice in one mapping; keep one"),
    (BASE.replace("  num_requests: 20\n", "  num_requests: 20\n  num_requests: 30\n"),
     "s.yaml:6: workload.num_requests: appears twice in one mapping; keep one"),
    ("- model\n- hardware\n", "s.yaml: must be a mapping of sections (model, hardware, workload, ...), got 'list'"),
    ("[" * 5000, "s.yaml: is nested too deeply to be a spec"),
    # YAML 1.1 reads a leading zero as octal (0512 = 5 x 64 + 1 x 8 + 2 = 330) and colons as base 60
    # (1:20 = 60 + 20 = 80; 1:00.5 = 60.5): the numbers as written are not the ones YAML gives
    (BASE.replace("num_requests: 20", "num_requests: 0512"),
     "s.yaml:5: workload.num_requests: 0512 has a leading zero, so YAML reads it as the octal number 330; write 512 "
     "(or quote it, for text)"),
    (BASE.replace("num_requests: 20", "num_requests: 1:20"),
     "s.yaml:5: workload.num_requests: 1:20 has colons, so YAML reads it in base 60, as 80; write the number you "
     "mean (or quote it, for text)"),
    (BASE + "engine: {frontend_s: 1:00.5}\n",
     "s.yaml:9: engine.frontend_s: 1:00.5 has colons, so YAML reads it in base 60, as 60.5; write the number you "
     "mean (or quote it, for text)"),
    (BASE + "cascade:\n  tiers:\n  - {model: llama-3.2-1b, escalate: 0.3}\n  - {replicas: 010}\n",
     "s.yaml:12: cascade.tiers.1.replicas: 010 has a leading zero, so YAML reads it as the octal number 8; write 10 "
     "(or quote it, for text)"),
    ("a: &a [*a]\n", "s.yaml: a: is not a known key (check its spelling and section), got a list of 1 item"),
    # an unknown key in capitals is still named (pydantic's union branches are the names in capitals it drops)
    (BASE + "Engine: vllm-v1\n", "s.yaml: Engine: is not a known key (did you mean engine?), got 'vllm-v1'"),
    (BASE.replace("{process: poisson, rate_per_s: 5}", "{concurrency: 4}"),
     "s.yaml: workload.arrival: concurrency needs process: concurrency (the process is poisson, at rate_per_s, "
     "unless it says)"),
])
def test_malformed_scenario_files_are_one_line_naming_the_file(tmp_path, text, message):
    with pytest.raises(SpecError) as info:
        load_run(write(tmp_path, text))
    assert str(info.value) == message


def test_a_scenario_that_is_not_utf8_or_not_a_file_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(BASE.encode().replace(b"tiny-llama", b"tiny-llama # caf\xe9"))
    with pytest.raises(SpecError, match=r"^s.yaml: is not UTF-8 text \(byte 0xe9 at offset 24\); save it as UTF-8$"):
        load_run(path)
    with pytest.raises(SpecError, match=r"^scenario: is a folder, not a file, got '"):
        load_run(tmp_path)


def test_a_trace_that_is_a_folder_is_named(tmp_path):
    (tmp_path / "traces").mkdir()
    text = BASE.replace("  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n  output_tokens: 20\n",
                        "  trace: {path: traces}\n")
    assert error_of(tmp_path, text).startswith("workload.trace.path: is a folder, not a file, got '")


def test_the_engine_preset_fills_every_key_the_scenario_leaves_out(tmp_path):
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\nengine: {preset: trtllm, cuda_graph_max_batch: 64}\n"
                                             "kv_cache: {block_size: 8}")
    cfg, _ = build_run(*load_scenario(write(tmp_path, text)))
    # TensorRT-LLM's defaults (max_num_tokens 8192, 2048 sequences, overlap scheduler) but the two keys set
    assert (cfg.scheduler, cfg.limits.max_num_batched_tokens, cfg.limits.max_num_seqs) == ("trtllm", 8192, 2048)
    assert cfg.kernels.graph_max_batch == 64 and cfg.kv_cache.block_size_tokens == 8 and cfg.overhead.overlaps_gpu
    default, _ = build_run(*load_scenario(write(tmp_path, BASE)))
    # vLLM V1 on an A100: 2048 batched tokens and 256 sequences (get_batch_defaults), prefix caching on
    assert (default.scheduler, default.limits.max_num_batched_tokens, default.limits.max_num_seqs) == ("vllm-v1", 2048, 256)
    assert default.kv_cache.prefix_caching


@pytest.mark.parametrize("engine, graphs, pieces", [
    ("{preset: vllm-v1}", 512, 512),  # V1 on an A100 (256 sequences): captures of min(2 x 256, 512) tokens
    ("{preset: vllm-v1, cuda_graph_max_batch: 0}", 0, 0),  # no graphs, as enforce_eager: pieces off too
    ("{preset: vllm-v1, cuda_graph_max_batch: 0, piecewise_graph_max_tokens: 256}", 0, 256),
    ("{preset: vllm-v1, piecewise_graph_max_tokens: 0}", 512, 0),
    ("{preset: sglang}", 256, 0),  # SGLang prefills eagerly
])
def test_a_scenario_sets_or_turns_off_whole_and_piecewise_graphs(tmp_path, engine, graphs, pieces):
    text = BASE.replace("model: tiny-llama", f"model: tiny-llama\nengine: {engine}")
    cfg, _ = build_run(*load_scenario(write(tmp_path, text)))
    assert (cfg.kernels.graph_max_batch, cfg.kernels.piecewise_max_tokens) == (graphs, pieces)


def test_a_bad_piecewise_graph_size_is_one_line(tmp_path):
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\nengine: {piecewise_graph_max_tokens: -1}")
    assert error_of(tmp_path, text) == "engine.piecewise_graph_max_tokens: must be >= 0, got -1"


@pytest.mark.parametrize("old, new, message", [
    ("model: tiny-llama", "model:", "model: must be text, got nothing (the key is left empty)"),
    ("hardware: a100-sxm-80gb", "hardware: a100-sxm-80gb\nslo: {ttft_s: {p99: 0.5}}",
     "slo.ttft_s: must be a number, not a mapping (got the keys p99)"),
    ("prompt_tokens: 100", "prompt_tokens: {kind: uniform, low: 500, high: 100}",
     "workload.prompt_tokens: high must be >= low=500, got 100"),
])
def test_an_empty_key_a_mapping_for_a_number_and_a_reversed_range_are_named_with_what_was_given(
        tmp_path, old, new, message):
    assert error_of(tmp_path, BASE.replace(old, new)) == message


def test_an_engine_or_scheduler_named_alone_is_its_preset_or_name(tmp_path):
    assert load_run(write(tmp_path, BASE + "engine: sglang\n"))[1].scheduler == "sglang"
    assert load_run(write(tmp_path, BASE + "scheduler: sarathi\n"))[1].scheduler == "sarathi"


def test_more_requests_than_the_trace_holds_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                    "2023-11-16 18:15:46.6805900,10,2\n2023-11-16 18:15:47.6805900,10,2\n")
    text = ("model: tiny-llama\nhardware: a100-sxm-80gb\nworkload:\n  num_requests: {n}\n"
            "  trace: {{path: t.csv}}\n")
    assert len(load_run(write(tmp_path, text.format(n=2)))[2]) == 2
    assert error_of(tmp_path, text.format(n=1000)) == (
        "workload.num_requests: asks for more requests than the trace's 2 rows; leave it out to run the whole "
        "trace, got 1000")


def test_a_gamma_process_without_its_cv_is_refused(tmp_path):
    assert error_of(tmp_path, BASE.replace("process: poisson", "process: gamma")) == (
        "workload.arrival: process gamma needs cv, the gaps' coefficient of variation (1 is poisson; 2 is burstier)")


def test_a_scenario_lists_its_engines_padded_capture_sizes(tmp_path):
    # vLLM V1's default capture sizes start 1, 2, 4, 8, 16, ...; given up to 16, decode batches up to 16 replay
    # the smallest size at least their own (5 runs 8 rows), and the preset's 512 gives way to the largest, 16
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\nengine: {cuda_graph_padded_sizes: [1, 2, 4, 8, 16]}")
    cfg, _ = build_run(*load_scenario(write(tmp_path, text)))
    kernels = cfg.kernels
    assert (kernels.padded_sizes, kernels.graph_max_batch, kernels.padding_rows(5)) == ((1, 2, 4, 8, 16), 16, 3)
    # TensorRT-LLM's unpadded capture (1-32, 64, 128) gives way to the padded one; a max batch set stays
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\n"
                        "engine: {preset: trtllm, cuda_graph_padded_sizes: [64, 128, 256], cuda_graph_max_batch: 128}")
    cfg, _ = build_run(*load_scenario(write(tmp_path, text)))
    kernels = cfg.kernels
    assert (kernels.captured_sizes, kernels.graph_max_batch, kernels.padding_rows(100)) == (frozenset(), 128, 28)
    # a max batch alone keeps the preset's padded sizes below it and takes the max in: vLLM V1's up to 100 are
    # 1, 2, 4, 8, ..., 96, then 100 (97 pads to 100)
    text = BASE.replace("model: tiny-llama", "model: tiny-llama\nengine: {cuda_graph_max_batch: 100}")
    kernels = build_run(*load_scenario(write(tmp_path, text)))[0].kernels
    assert (kernels.padded_sizes[-3:], kernels.graph_max_batch, kernels.padding_rows(97)) == ((88, 96, 100), 100, 3)


@pytest.mark.parametrize("sizes, message", [
    ("[8, 4]", "engine.cuda_graph_padded_sizes: must be batch sizes >= 1 in ascending order, got [8, 4]"),
    ("[0, 4]", "engine.cuda_graph_padded_sizes.0: must be >= 1, got 0"),
    ("[]", "engine.cuda_graph_padded_sizes: must hold at least 1 item, got []"),
])
def test_bad_padded_capture_sizes_are_one_line(tmp_path, sizes, message):
    text = BASE.replace("model: tiny-llama", f"model: tiny-llama\nengine: {{cuda_graph_padded_sizes: {sizes}}}")
    assert error_of(tmp_path, text).startswith(message)


def test_a_scenario_sets_the_engines_runtime_memory_and_memory_profile(tmp_path):
    # tiny-llama under trtllm: the preset holds back 3.30 GiB and sizes after a pass of prompts; a scenario says
    # otherwise, and 1 GiB more runtime under vLLM's share of all memory is 1 GiB less KV cache
    trtllm = build_run(*load_scenario(write(tmp_path, BASE.replace(
        "model: tiny-llama", "model: tiny-llama\nengine: {preset: trtllm}"))))[0].kv_cache
    assert (trtllm.runtime_gib, trtllm.memory_profile) == (3.30, "context")
    from infersim.sim.run import replica_memory_plan
    plans = []
    for extra in ("", "\nkv_cache: {runtime_gib: 1, memory_profile: step}"):
        cfg = build_run(*load_scenario(write(tmp_path, BASE.replace("model: tiny-llama", "model: tiny-llama" + extra))))[0]
        plans.append(replica_memory_plan(cfg))
    assert plans[0].kv_cache_bytes - plans[1].kv_cache_bytes == pytest.approx(2 ** 30, rel=1e-12)


@pytest.mark.parametrize("kv, message", [
    ("{runtime_gib: -1}", "kv_cache.runtime_gib: must be >= 0, got -1"),
    ("{runtime_gib: .inf}", "kv_cache.runtime_gib: must be a finite number, got inf"),
    ("{memory_profile: prompts}", "kv_cache.memory_profile: must be one of step, context, static or engine, got 'prompts'"),
])
def test_bad_runtime_memory_keys_are_one_line(tmp_path, kv, message):
    assert error_of(tmp_path, BASE.replace("model: tiny-llama", f"model: tiny-llama\nkv_cache: {kv}")) == message
