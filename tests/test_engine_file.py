"""An engine given as a YAML file (compare-serving and calibrate --from-serving `--engine FILE.yaml`): a preset
with a scenario's engine, scheduler and kv_cache keys over it."""
import subprocess
import sys

import pytest
import yaml

from infersim.roofline import SpecError
from infersim.scenario import EngineFile, EngineSection, load_engine_file
from infersim.serving import ServingRun, simulate_run


def lone_request(output_tokens=9):
    """One request of 64 prompt tokens on one H100: every step holds it alone."""
    return ServingRun("runs.csv:2", "llama-3.1-8b", "h100-sxm", tensor_parallel=1, input_tokens=64,
                      output_tokens=output_tokens, num_requests=1, request_rate_per_s=1.0, mean_ttft_ms=20.0,
                      mean_itl_ms=8.0, output_tokens_per_s=100.0)


def host_of(fixed_s):
    return EngineFile(engine=EngineSection(preset="trtllm-cpp", overhead_fixed_s=fixed_s, overhead_per_seq_s=0))


def test_an_engine_files_host_time_is_what_a_lone_request_waits_for_each_step():
    # trtllm-cpp's host work runs in series with the GPU: raising it from 1 ms to 5 ms a step (nothing per
    # sequence) adds 4 ms to the prefill step (TTFT) and to each decode step (ITL) of a request served alone
    quick, slow = simulate_run(lone_request(), host_of(0.001)), simulate_run(lone_request(), host_of(0.005))
    assert slow.ttft_ms - quick.ttft_ms == pytest.approx(4.0, abs=1e-6)
    assert slow.itl_ms - quick.itl_ms == pytest.approx(4.0, abs=1e-6)


def write(tmp_path, text, name="e.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def runs_file(tmp_path, row="llama-3.1-8b,h100-sxm,1,64,9,1,1,20,8,100"):
    """A CSV of one measured run (by default the lone request's) in compare-serving's columns."""
    return write(tmp_path, "model,hardware,tensor_parallel,input_tokens,output_tokens,num_requests,"
                 f"request_rate_per_s,mean_ttft_ms,mean_itl_ms,output_tokens_per_s\n{row}\n", "runs.csv")


def infersim(*args, cwd=None, check=False):
    return subprocess.run([sys.executable, "-m", "infersim.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, check=check)


def test_compare_serving_simulates_with_the_files_engine(tmp_path):
    runs = runs_file(tmp_path)
    engine = write(tmp_path, "engine: {preset: trtllm-cpp, overhead_fixed_s: 0.005, overhead_per_seq_s: 0}\n")

    def itl_ms(*flags):
        return yaml.safe_load(infersim("compare-serving", runs, *flags, "--json", check=True).stdout)["runs"][0][
            "predicted_itl_ms"]
    # the preset's host time is 1 ms + 10 us a sequence, in series: 1.01 ms a step for the lone request; the
    # file's 5 ms makes each decode step 3.99 ms longer
    assert itl_ms("--engine", str(engine)) - itl_ms("--engine", "trtllm-cpp") == pytest.approx(3.99, abs=1e-6)
    table = infersim("compare-serving", runs, "--engine", engine, check=True).stdout
    assert table.startswith(f"{runs}: simulated with the engine of {engine} (the trtllm-cpp preset with its "
                            "keys) vs measured")


@pytest.mark.parametrize("text, message", [
    ("model: llama-3.1-8b\nengine: trtllm\n",
     "e.yaml: model: is a scenario's section, not an engine file's: it holds only engine, scheduler and kv_cache "
     "(the runs or the flags give the model, GPU, parallelism, quantization and workload)"),
    ("engine: trtllm\nslo: {ttft_s: {p99: 1}}\n", "e.yaml: slo: is a scenario's section, not an engine file's"),
    ("engine: {preset: trtllm, overhead_fixed: 0.002}\n",
     "e.yaml: engine.overhead_fixed: is not a known key (did you mean overhead_fixed_s?)"),
    ("scheduler: {max_model_len: 4096}\n",
     "e.yaml: scheduler.max_model_len: is each run's own (its longest request): leave it out, got 4096"),
    ("- trtllm\n", "e.yaml: must be a mapping with an engine section (and scheduler, kv_cache if you set them), "
                   "got 'list'"),
    ("engine: {preset: trtlm}\n",
     "e.yaml: engine.preset: must be one of vllm-v1, vllm-v1-0.8, vllm-v0, sglang, trtllm, trtllm-cpp, got 'trtlm'"),
])
def test_a_malformed_engine_file_is_one_line(tmp_path, text, message):
    with pytest.raises(SpecError) as info:
        load_engine_file(write(tmp_path, text))
    assert str(info.value).startswith(message)


def test_an_engine_that_is_neither_a_preset_nor_a_file_is_one_line(tmp_path):
    result = infersim("compare-serving", "runs.csv", "--engine", "trtlm", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("infersim: error: --engine: unknown engine preset; use a YAML path or one of "
                                     "sglang, trtllm, trtllm-cpp, vllm-v0, vllm-v1, vllm-v1-0.8, got 'trtlm'")


def test_calibrate_keeps_the_engine_files_keys_beside_the_fitted_ones(tmp_path):
    runs = runs_file(tmp_path, "llama-3.1-8b,h100-sxm,1,128,16,4,1,25,9.0,30.0")
    engine = write(tmp_path, "engine: {preset: vllm-v1, host_overlaps_gpu: false}\nkv_cache: {block_size: 32}\n")
    out = tmp_path / "fitted.yaml"
    infersim("calibrate", "--from-serving", runs, "--engine", engine, "--out", out, check=True)
    fitted = yaml.safe_load(out.read_text())
    assert fitted["kv_cache"] == {"block_size": 32}
    assert (fitted["engine"]["preset"], fitted["engine"]["host_overlaps_gpu"]) == ("vllm-v1", False)
    assert {"overhead_fixed_s", "overhead_per_seq_s", "frontend_s"} <= set(fitted["engine"])
    load_engine_file(out)  # what it writes reads back
    # a file that sets no engine section runs the default preset, which the fit names
    only_kv = write(tmp_path, "kv_cache: {block_size: 32}\n", "kv.yaml")
    infersim("calibrate", "--from-serving", runs, "--engine", only_kv, "--out", out, check=True)
    fitted = yaml.safe_load(out.read_text())
    assert (fitted["engine"]["preset"], fitted["kv_cache"]) == ("vllm-v1", {"block_size": 32})


def test_a_mistake_in_an_engine_files_keys_names_the_engine_file_not_the_runs(tmp_path):
    runs = runs_file(tmp_path)
    engine = write(tmp_path, "engine: vllm-v1\nscheduler: {preemption: swap}\n", "swap.yaml")
    for command in (["compare-serving", runs], ["calibrate", "--from-serving", runs, "--out", "fit.yaml"]):
        result = infersim(*command, "--engine", engine, cwd=tmp_path)
        assert result.stderr.strip() == ("infersim: error: swap.yaml: scheduler.preemption: the vllm-v1 scheduler "
                                         "preempts by recompute, got 'swap'")


def test_calibrate_will_not_overwrite_its_engine_file_by_default(tmp_path):
    runs = runs_file(tmp_path)
    engine = write(tmp_path, "# my notes\nengine: {preset: vllm-v1, overhead_fixed_s: 0.002}\n", "vllm-v1-engine.yaml")
    result = infersim("calibrate", "--from-serving", runs, "--engine", "vllm-v1-engine.yaml", cwd=tmp_path)
    assert result.stderr.strip() == ("infersim: error: --out: is by default vllm-v1-engine.yaml, the --engine file: "
                                     "give --out to write the fit elsewhere (or --out vllm-v1-engine.yaml to replace "
                                     "it)")
    assert engine.read_text().startswith("# my notes")


def test_roofline_costs_a_step_as_an_engine_file_sets_it_up(tmp_path):
    # vllm-v1 with CUDA graphs off and its host in series: the decode step's kernels launch from Python and
    # the host's 1 ms + 10 us for the one sequence adds to the GPU's time instead of hiding behind it
    engine = write(tmp_path, "engine: {preset: vllm-v1, host_overlaps_gpu: false, cuda_graph_max_batch: 0}\n")

    def step(*flags):
        return yaml.safe_load(infersim("roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--json",
                                       *flags, check=True).stdout)
    eager, graphed = step("--engine", str(engine)), step("--engine", "vllm-v1")
    assert (eager["engine"]["kernels"], eager["engine"]["host_overlaps_gpu"], graphed["engine"]["kernels"]) == (
        "launched from Python", False, "replayed from a CUDA graph")
    assert eager["engine"]["host_s"] == pytest.approx(1.01e-3)
    assert eager["engine"]["wall_s"] == pytest.approx(eager["totals"]["time_s"] + 1.01e-3)
    result = infersim("roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", engine,
                      "--sampling", "greedy")
    assert result.stderr.strip() == ("infersim: error: --sampling: does not apply with an engine file: set "
                                     "engine.flash_attention and engine.sampling in e.yaml")


def test_the_shipped_engine_files_read():
    from pathlib import Path
    folder = Path(__file__).resolve().parent.parent / "scenarios" / "engines"
    files = sorted(folder.glob("*.yaml"))
    assert files and all(load_engine_file(path).engine.preset == "trtllm-cpp" for path in files)


def test_roofline_reads_attention_and_context_from_the_engine_file(tmp_path):
    # the file turns FlashAttention off: the step materialises the scores (attn_scores, not one attention
    # row), and says so; a file may give the scheduler its max_model_len, which roofline has no flag for
    engine = write(tmp_path, "engine: {preset: vllm-v1-0.8, flash_attention: false}\n"
                   "scheduler: {name: vllm, max_model_len: 8192}\n")
    out = yaml.safe_load(infersim("roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase",
                                  "prefill", "--prompt", "2048", "--engine", engine, "--json", check=True).stdout)
    assert out["flash_attention"] is False and "attn_scores" in {op["name"] for op in out["ops"]}
    assert (out["engine"]["preset"], out["engine"]["file"]) == ("vllm-v1-0.8", "e.yaml")


def test_a_gpu_the_engine_files_memory_share_cannot_hold_names_the_run_and_the_file(tmp_path):
    engine = write(tmp_path, "engine: vllm-v1\nkv_cache: {memory_utilization: 0.05}\n", "lowmem.yaml")
    result = infersim("compare-serving", runs_file(tmp_path), "--engine", engine, cwd=tmp_path)
    assert result.stderr.startswith("infersim: error: runs.csv:2 under lowmem.yaml: hardware: llama-3.1-8b does "
                                    "not fit")
