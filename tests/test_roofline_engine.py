"""`infersim roofline --engine PRESET`: one step as an engine preset runs it (its fusions, its kernels from a CUDA
graph or its eager path, its all-reduce) and its host time per step (sim/engines.py, roofline/kernel_set.py)."""
import json
import subprocess
import sys

import pytest

from infersim.cli import main

LLAMA_70B_TP4 = ("--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4", "--batch", "1", "--context", "600")


def roofline(capsys, *argv) -> str:
    assert main(["roofline", *argv]) == 0
    return capsys.readouterr().out


def roofline_json(capsys, *argv) -> dict:
    return json.loads(roofline(capsys, *argv, "--json"))


def op_time_s(data: dict, name: str) -> float:
    return next(op["time_s"] for op in data["ops"] if op["name"] == name)


def test_a_launch_bound_op_costs_the_cpp_executors_enqueue_instead_of_pythons_launch(capsys):
    # The embedding of one token moves 2 x 8192 x 2 B = 32 kB: ~0.02 us of DRAM time under the launch. Eager
    # PyTorch pays the H100's 4.6 us launch; TensorRT-LLM's C++ executor enqueues it ahead of the GPU, 1.4 us.
    eager = roofline_json(capsys, *LLAMA_70B_TP4)
    cpp = roofline_json(capsys, *LLAMA_70B_TP4, "--engine", "trtllm-cpp")
    assert op_time_s(cpp, "embedding") == pytest.approx(1.4e-6, abs=0.1e-6)
    assert op_time_s(eager, "embedding") - op_time_s(cpp, "embedding") == pytest.approx(4.6e-6 - 1.4e-6, rel=1e-9)
    assert cpp["engine"]["kernels"] == "enqueued from C++" and not cpp["engine"]["replays_graph"]
    assert (cpp["engine"]["kernel_launch_s"], cpp["engine"]["all_reduce"]) == (1.4e-6, "trtllm")
    # its attention preprocessing rotates K on the way into the cache: one kernel where eager PyTorch runs two
    names = [op["name"] for op in cpp["ops"]]
    assert "rope_kv_write" in names and "rope" not in names and "kv_cache_write" not in names


@pytest.mark.parametrize("phase, batch, replays", [
    (("--phase", "decode", "--context", "1000"), 8, True),  # decode-only, 8 <= 512 captured sequences
    (("--phase", "decode", "--context", "1000"), 600, False),  # beyond the largest graph (min(512, 2 x 1024))
    (("--phase", "prefill", "--prompt", "1000"), 8, False),  # 8,000 prompt tokens: past the piecewise graphs' 512
])
def test_vllm_v1_replays_a_graph_for_a_decode_batch_it_captured_and_runs_the_rest_from_python(capsys, phase, batch,
                                                                                               replays):
    data = roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", str(batch), *phase,
                         "--engine", "vllm-v1")
    engine = data["engine"]
    assert engine["replays_graph"] is replays
    assert engine["kernels"] == ("replayed from a CUDA graph" if replays else "launched from Python")
    # a graph's kernel floor is 1.0 us; outside it the H100's eager 4.6 us launch and 30 us NCCL-style call
    assert (engine["kernel_launch_s"], engine["collective_call_s"]) == ((1.0e-6, 1.0e-6) if replays else (4.6e-6, 30e-6))
    assert engine["fusions"] == ["add_norm"] and engine["all_reduce"] is None  # TP1: no all-reduce to run


def test_vllm_v1_replays_a_short_prompt_from_piecewise_graphs_with_attention_launched_between(capsys):
    data = roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "prefill",
                         "--prompt", "400", "--engine", "vllm-v1")
    engine = data["engine"]
    assert engine["replays_graph"] and engine["kernels"] == "replayed from piecewise CUDA graphs"
    assert engine["kernel_launch_s"] == 1.0e-6
    # 32 attention kernels, one a layer, launched from Python between the pieces: 32 x (4.6 - 1.0) us
    assert engine["eager_attention_s"] == pytest.approx(115.2e-6, rel=1e-9)
    host_s = engine["host_s"]  # overlapped: the step takes the longer of the GPU's and the host's
    assert engine["wall_s"] == pytest.approx(max(data["totals"]["time_s"] + 115.2e-6, host_s), rel=1e-9)


def test_trtllm_replays_only_the_batch_sizes_it_captured(capsys):
    # CudaGraphConfig without padding: batch 32 has a graph, 33 runs eagerly
    def replays(batch: int) -> bool:
        return roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", str(batch),
                             "--engine", "trtllm")["engine"]["replays_graph"]
    assert replays(32) and not replays(33)


def test_the_cpp_executors_host_time_adds_to_the_gpus(capsys):
    # sim/engines.py: 1.0 ms a step + 10 us a sequence, in series before the overlap scheduler:
    # batch 4 -> 1.04 ms on top of the GPU's step
    argv = ("--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch", "4", "--engine", "trtllm-cpp")
    data = roofline_json(capsys, *argv)
    engine = data["engine"]
    assert engine["host_s"] == pytest.approx(1.04e-3, rel=1e-12) and not engine["host_overlaps_gpu"]
    assert engine["wall_s"] == pytest.approx(data["totals"]["time_s"] + 1.04e-3, rel=1e-12)
    line = next(line for line in roofline(capsys, *argv).splitlines() if line.startswith("trtllm-cpp: "))
    assert line.startswith("trtllm-cpp: kernels enqueued from C++ (1.4 us each), no all-reduce (TP1); host 1.040 ms "
                           "in series -> step ")
    wall_ms = engine["wall_s"] * 1e3
    assert line.endswith(f"-> step {wall_ms:.3f} ms ({4 / engine['wall_s']:,.0f} tokens/s)")


def test_an_overlapped_host_hides_the_gpu_of_a_step_shorter_than_itself(capsys):
    # tiny-llama's decode step is microseconds of GPU work: vLLM V1's step takes its host's 1.0 ms + 10 us
    data = roofline_json(capsys, "--model", "tiny-llama", "--hardware", "h100-sxm", "--engine", "vllm-v1")
    assert data["totals"]["time_s"] < 0.2e-3
    assert data["engine"]["host_overlaps_gpu"] and data["engine"]["wall_s"] == pytest.approx(1.01e-3, rel=1e-12)


@pytest.mark.parametrize("preset, phase, timer", [
    ("vllm-v1", ("--phase", "decode", "--batch", "8", "--context", "1000"), "graph"),
    ("trtllm-cpp", ("--phase", "decode", "--batch", "8", "--context", "1000"), "eager"),
    ("sglang", ("--phase", "prefill", "--batch", "2", "--prompt", "700"), "eager"),
])
def test_the_step_costs_what_a_simulated_replica_of_the_preset_costs_it(capsys, preset, phase, timer):
    from infersim.roofline import StepOptions, get_hardware, get_model
    from infersim.roofline.latency import StepTimer
    from infersim.sim.engines import preset_config
    data = roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", *phase, "--engine", preset)
    model, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    cfg = preset_config(preset, model, hw, StepOptions(), model.max_context_tokens)
    kernels_hw = cfg.kernels.in_graph(hw) if timer == "graph" else cfg.kernels.eager(hw)
    step = ([1] * 8, [1000] * 8, 8) if phase[1] == "decode" else ([700] * 2, [0] * 2, 2)
    assert data["totals"]["time_s"] == pytest.approx(StepTimer(model, kernels_hw, cfg.options).step(*step).latency_s,
                                                     rel=1e-9)


def test_a_padded_graph_replay_costs_its_padding_rows_as_a_simulated_replica_does(capsys):
    # vLLM V1 captures 8, 16, 24, ...: a decode batch of 9 replays the graph of 16, 7 one-token rows with no
    # context beside its own (sim/replica.py costs them so); tokens/s counts the 9 real tokens
    from infersim.roofline import StepOptions, get_hardware, get_model
    from infersim.roofline.latency import StepTimer
    from infersim.sim.engines import preset_config
    args = ("--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "decode", "--batch", "9", "--context",
            "1000", "--engine", "vllm-v1")
    data = roofline_json(capsys, *args)
    model, hw = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
    cfg = preset_config("vllm-v1", model, hw, StepOptions(), model.max_context_tokens)
    padded = StepTimer(model, cfg.kernels.in_graph(hw), cfg.options).step([1] * 16, [1000] * 9 + [0] * 7, 16)
    assert data["engine"]["padding_rows"] == 7
    assert data["totals"]["time_s"] == pytest.approx(padded.latency_s, rel=1e-9)
    line = next(x for x in roofline(capsys, *args).splitlines() if x.startswith("vllm-v1:"))
    assert "padded by 7 one-token rows" in line
    assert f"({9 / data['engine']['wall_s']:,.0f} tokens/s)" in line


def test_without_engine_the_step_is_eager_pytorch_and_json_has_no_engine(capsys):
    data = roofline_json(capsys, *LLAMA_70B_TP4)
    assert "engine" not in data
    assert op_time_s(data, "embedding") == pytest.approx(4.6e-6, abs=0.1e-6)


def test_an_unknown_preset_is_refused_in_one_line_naming_the_flag(capsys):
    code = main(["roofline", *LLAMA_70B_TP4, "--engine", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("infersim: error: --engine: unknown engine preset; use a YAML path or one of sglang, trtllm, trtllm-cpp, vllm-v0, vllm-v1, vllm-v1-0.8")


def test_tp_beyond_the_fabric_names_the_gpu_as_it_is_with_an_engine(capsys):
    assert main(["roofline", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tp", "16",
                 "--engine", "trtllm-cpp"]) == 2
    assert capsys.readouterr().err.startswith("infersim: error: --tp: spans more GPUs than one h100-sxm nvswitch "
                                              "fabric joins (8)")


def test_roofline_without_engine_runs_without_the_simulator():
    # a machine without simpy still runs `infersim roofline`; only --engine loads the simulator's presets
    code = """
import sys
for name in ("simpy", "infersim.sim"):
    sys.modules[name] = None  # importing it now raises ImportError
from infersim.cli import main
assert main(["roofline", "--model", "tiny-llama", "--hardware", "h100-sxm"]) == 0
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("preset", ["vllm-v1", "sglang", "trtllm"])
def test_the_memory_plan_is_the_presets_as_the_simulator_sizes_it(capsys, preset):
    # each preset's share of memory, workspace and page size: the KV tokens its replicas hold in a simulation
    from infersim.roofline import StepOptions, get_hardware, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.run import total_kv_blocks
    data = roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", preset)
    model = get_model("llama-3.1-8b")
    cfg = preset_config(preset, model, get_hardware("h100-sxm"), StepOptions(), model.max_context_tokens)
    blocks = total_kv_blocks(cfg)
    assert data["memory"]["max_kv_tokens"] // cfg.kv_cache.block_size_tokens == blocks


def test_a_batch_beyond_the_presets_sequences_is_noted(capsys):
    # SGLang's max_running_requests is taken as 2048 (sim/engines.py)
    out = roofline(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "sglang", "--batch", "3000")
    assert "note: sglang runs at most 2048 sequences a step, not 3000" in out


def test_vllm_v1_sizes_the_kv_cache_from_092_of_the_whole_memory(capsys):
    # Llama-3.1-8B on an H100 (81,559 MiB as the driver reports it) under vLLM V1: 0.92 of the memory, less
    # 16,060,522,496 B of fp16 weights and the workspace of an 8,192-token, 1,024-sequence step (the larger of
    # its forward, 8192 x (2 x 14336 + 14336 + 2 x 4096) x 2 B = 838,860,800 B, and its sampler, 1024 x 128256 x
    # 38.9 B = 5,108,898,201.6 B), over 131,072 B per token (2 x 32 layers x 8 KV heads x 128 x 2 B)
    usable = 0.92 * 81_559 * 2 ** 20
    expected = int((usable - 16_060_522_496 - 5_108_898_201.6) // 131_072)
    data = roofline_json(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "vllm-v1")
    assert data["memory"]["max_kv_tokens"] == expected == 438_764
    assert data["memory"]["runtime_bytes"] == 0  # vLLM's runtime sits in its share's margin (roofline.memory)


def test_the_trtllm_runtime_is_named_in_the_memory_line(capsys):
    # 3.30 GiB = 3,543,348,019 B held back by the trtllm preset (sim/engines.py), printed as 3.54 GB
    out = roofline(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "trtllm")
    assert "weights 16.1 GB, the engine's runtime 3.54 GB, KV cache" in out


def test_a_padded_piecewise_prompt_step_says_what_its_pieces_run(capsys):
    # three 100-token prompts are 300 tokens: vLLM V1 runs its pieces at 304 (256-512 by 16)
    out = roofline(capsys, "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--phase", "prefill", "--batch", "3",
                   "--prompt", "100", "--engine", "vllm-v1")
    assert "note: vllm-v1 runs this step's graph pieces at 304 tokens, 4 of them padding" in out
