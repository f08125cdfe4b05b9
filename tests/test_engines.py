"""Engine presets: the defaults each engine picks on a GPU, as its code does (sources in sim/engines.py)."""
import dataclasses

import pytest

from infersim.roofline import SpecError, get_hardware
from infersim.roofline.kernel_set import Replay
from infersim.sim.engines import ENGINES
from infersim.sim.schedulers import SCHEDULERS


@pytest.mark.parametrize("gpu,tokens,seqs", [("h100-sxm", 8192, 1024), ("h200", 8192, 1024),
                                              ("a100-sxm-80gb", 2048, 256), ("l40s", 2048, 256)])
def test_vllm_v1_sizes_its_token_budget_by_the_gpu_as_get_batch_defaults_does(gpu, tokens, seqs):
    # >= 70 GiB and not an A100: 8192 tokens and 1024 sequences; the A100 and smaller GPUs: 2048 and 256
    d = ENGINES["vllm-v1"].defaults(get_hardware(gpu), 8192, 1)
    assert (d.max_num_batched_tokens, d.max_num_seqs) == (tokens, seqs)
    assert d.kernels.graph_max_batch == min(512, 2 * seqs) and d.overhead.overlaps_gpu


def test_sglang_chunks_and_reserves_memory_by_gpu_memory_as_its_memory_hook_does():
    # H100, 81559 MiB as nvidia-smi reports it (60-160 GiB tier): chunk 8192, graphs to 256 below TP4; reserve
    # 512 + 1.5 * 8192 + 1024 / 8 + 2 * 256 = 13440 MiB (over the 10 GiB floor): (81559 - 13440) / 81559 = 0.835
    h100 = ENGINES["sglang"].defaults(get_hardware("h100-sxm"), 8192, 1)
    assert (h100.chunk_tokens, h100.max_num_batched_tokens, h100.kernels.graph_max_batch) == (8192, 8192, 256)
    assert (h100.memory_utilization, h100.block_size_tokens) == (0.835, 1)
    # L4, 23034 MiB (20-35 GiB tier): chunk 4096, graphs to 48 below TP4 and 160 from it; TP1 reserve
    # 512 + 6144 + 128 + 96 = 6880 MiB: (23034 - 6880) / 23034 = 0.701
    l4 = ENGINES["sglang"].defaults(get_hardware("l4"), 8192, 1)
    assert (l4.chunk_tokens, l4.kernels.graph_max_batch, l4.memory_utilization) == (4096, 48, 0.701)
    assert ENGINES["sglang"].defaults(get_hardware("l4"), 8192, 4).kernels.graph_max_batch == 160



def test_sglangs_kv_pool_is_its_static_share_less_the_weights_no_activations_profiled():
    # SGLang's model_runner `profile_max_num_token`: the pool is the memory free once the weights are loaded less
    # (1 - mem_fraction_static) of the total, so 0.835 x 81,559 MiB (85,520,809,984 B) - 16,060,522,496 B of
    # Llama-3.1-8B's bf16 weights = 55,349,353,840.6 B; / 131,072 B a token = 422,282 tokens. Sized after a step
    # as vLLM is, the share would also lose 2048 sequences' logits at 38.9 B (9.5 GiB); SGLang's activations
    # live in the 13,440 MiB it leaves out.
    from infersim.roofline import Parallelism, StepOptions, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.run import replica_memory_plan
    cfg = preset_config("sglang", get_model("llama-3.1-8b"), get_hardware("h100-sxm"), StepOptions(parallel=Parallelism(1)),
                        8192)
    plan = replica_memory_plan(cfg)
    assert (cfg.kv_cache.memory_profile, plan.activation_bytes, plan.max_kv_tokens) == ("static", 0, 422_282)
    stepped = replica_memory_plan(dataclasses.replace(cfg, kv_cache=dataclasses.replace(cfg.kv_cache, memory_profile="step")))
    assert stepped.max_kv_tokens < 390_000

def test_vllm_v0_budgets_a_whole_longest_prompt_and_chunks_long_contexts_by_itself():
    # SchedulerConfig: max(max_model_len, 2048) without chunked prefill; beyond 32768 tokens of context
    # chunked prefill comes on with a 2048-token budget
    v0 = ENGINES["vllm-v0"].defaults
    h100 = get_hardware("h100-sxm")
    assert [v0(h100, n, 1).max_num_batched_tokens for n in (1000, 4096, 32768)] == [2048, 4096, 32768]
    long = v0(h100, 65536, 1)
    assert (long.scheduler, long.max_num_batched_tokens, long.chunk_tokens) == ("sarathi", 2048, 2048)


def test_vllm_v1_sizes_its_graphs_in_tokens_and_replays_the_other_steps_in_pieces():
    # captures of up to min(2 x 1024, 512) = 512 tokens (config/compilation.py max_cudagraph_capture_size)
    kernels = ENGINES["vllm-v1"].defaults(get_hardware("h100-sxm"), 8192, 1).kernels
    assert kernels.replay(True, 512, 512) == Replay.GRAPH
    # EAGLE verifying 3 drafts: 200 sequences are 800 tokens, past every capture: eager, not a whole graph
    assert kernels.replay(True, 200, 800) == Replay.EAGER and kernels.replay(True, 100, 400) == Replay.GRAPH
    assert kernels.replay(False, 10, 500) == Replay.PIECES and kernels.replay(False, 10, 513) == Replay.EAGER


def test_vllm_v1_v0_and_sglang_pad_a_decode_batch_up_to_their_own_capture_sizes():
    h100 = get_hardware("h100-sxm")
    # vLLM V1 (config/vllm.py _set_cudagraph_sizes, max 512): 1, 2, 4, 8-248 by 8, 256-512 by 16: 3 + 31 + 17 sizes
    v1 = ENGINES["vllm-v1"].defaults(h100, 8192, 1).kernels
    assert len(v1.padded_sizes) == 51 and v1.padded_sizes[:5] == (1, 2, 4, 8, 16)
    assert v1.padded_sizes[-4:] == (464, 480, 496, 512) and 248 in v1.padded_sizes and 264 not in v1.padded_sizes
    # a batch of 3 replays the graph of 4, 9 that of 16, 250 that of 256, 257 that of 272; 512 none
    assert [v1.padding_rows(n) for n in (3, 9, 250, 257, 512)] == [1, 7, 6, 15, 0]
    # vLLM V0 0.6.6 (_BATCH_SIZES_TO_CAPTURE): 1, 2, 4, 8-256 by 8: 35 sizes; 33 pads to 40
    v0 = ENGINES["vllm-v0"].defaults(h100, 8192, 1).kernels
    assert (len(v0.padded_sizes), v0.padded_sizes[-1], v0.padding_rows(33)) == (35, 256, 7)
    # SGLang 0.5 (server_args _generate_cuda_graph_batch_sizes) on an H100: 1, 2, 4, 8, 12, 16-256 by 8 below
    # TP4 (36 sizes; 10 pads to 12, 13 to 16); from TP4 up to 512: 272-496 by 16, then 512 (52 sizes)
    sglang = ENGINES["sglang"].defaults(h100, 8192, 1).kernels
    assert (len(sglang.padded_sizes), sglang.padding_rows(10), sglang.padding_rows(13)) == (36, 2, 3)
    tp4 = ENGINES["sglang"].defaults(h100, 8192, 4).kernels
    assert (len(tp4.padded_sizes), tp4.padded_sizes[-3:], tp4.padding_rows(257)) == (52, (480, 496, 512), 15)
    # the L4 below TP4 captures up to 48: 1, 2, 4, 8, 12, 16, 24, 32, 40, 48
    assert ENGINES["sglang"].defaults(get_hardware("l4"), 8192, 1).kernels.padded_sizes == (
        1, 2, 4, 8, 12, 16, 24, 32, 40, 48)


def test_vllm_v1_pads_a_piecewise_steps_tokens_to_a_captured_size_and_costs_them_in_its_pieces_only():
    from infersim.roofline import StepOptions, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.replica import ReplicaCosts
    from infersim.sim.step_plan import PrefillChunk, StepPlan
    hw = get_hardware("h100-sxm")
    v1 = ENGINES["vllm-v1"].defaults(hw, 8192, 1).kernels
    # 300 tokens run as 304 (256-512 by 16), 250 as 256, 9 as 16; 512 is a size; past 512 no pieces to pad
    assert [v1.padding_tokens(t) for t in (300, 250, 9, 512, 513)] == [4, 6, 7, 0, 0]
    # a 300-token prompt step: its pieces run 304 tokens, its attention and sampling the 300 real ones, so it
    # costs 4 tokens more of the dense part: per token 2 x 6.98e9 FLOPs of Llama-3.1-8B's layer weights (32 x
    # (4096 x 4096 x 2 + 4096 x 1024 x 2 + 3 x 4096 x 14336) = 6,979,321,856), plus norms and activations
    model = get_model("llama-3.1-8b")
    cfg = preset_config("vllm-v1", model, hw, StepOptions(), 8192)
    from infersim.roofline.latency import StepTimer
    timer = StepTimer(model, cfg.kernels.in_graph(hw), cfg.options)
    padded, plain = timer.step([300], [0], 1, padding_tokens=4), timer.step([300], [0], 1)
    assert (padded.flops - plain.flops) / 4 == pytest.approx(2 * 6_979_321_856, rel=0.01)
    assert padded.latency_s > plain.latency_s
    # a replica costs a mixed or prompt step so (ReplicaCosts.timer_for), a decode-only one as padding rows
    costs = ReplicaCosts(timer, cfg.overhead, hw.host_link, 0.0, cfg.kernels, timer)
    prompt_plan = StepPlan(prefills=(PrefillChunk(None, 300, 0, True),))
    assert costs.timer_for(prompt_plan, 300).padding_tokens == 4


def test_a_padded_capture_replayed_up_to_another_max_keeps_its_sizes_below_and_takes_the_max_in():
    v1 = ENGINES["vllm-v1"].defaults(get_hardware("h100-sxm"), 8192, 1).kernels
    assert v1.padded_up_to(20).padded_sizes == (1, 2, 4, 8, 16, 20)
    assert v1.padded_up_to(20).graph_max_batch == 20 and v1.padded_up_to(20).padding_rows(17) == 3
    with pytest.raises(SpecError, match="padded capture stops at 512; to capture larger batches, list every size"):
        v1.padded_up_to(600)
    assert v1.padded_up_to(0).padded_sizes == () and v1.padded_up_to(0).replay(True, 1, 1) == Replay.PIECES


@pytest.mark.parametrize("gpu,tokens", [("h100-sxm", 8192), ("h200", 8192), ("gh200", 8192), ("a100-sxm-80gb", 2048),
                                        ("h20", 2048), ("b200", 2048)])
def test_vllm_0_8_sizes_its_token_budget_by_the_devices_name(gpu, tokens):
    # 0.8.3 engine/arg_utils.py `_set_default_args_v1`: 8192 where the device's name holds "h100" or "h200"
    # ("NVIDIA GH200 480GB" does, "NVIDIA H20" does not), 2048 elsewhere; 1024 sequences on every GPU
    d = ENGINES["vllm-v1-0.8"].defaults(get_hardware(gpu), 8192, 1)
    assert (d.max_num_batched_tokens, d.max_num_seqs, d.memory_utilization) == (tokens, 1024, 0.90)


def test_vllm_0_8_replays_piecewise_graphs_only_and_runs_its_host_in_series():
    # CompilationLevel.PIECEWISE captured up to 512 tokens for every kind of step; no whole decode graph
    d = ENGINES["vllm-v1-0.8"].defaults(get_hardware("a100-sxm-40gb"), 8192, 8)
    assert [d.kernels.replay(True, n, n) for n in (1, 512, 513)] == [Replay.PIECES, Replay.PIECES, Replay.EAGER]
    assert d.kernels.replay(False, 3, 300) == Replay.PIECES
    assert not d.overhead.overlaps_gpu and d.prefix_caching and d.kernels.all_reduce == "vllm-custom"


def test_trtllm_replays_only_the_batch_sizes_it_captured_and_its_cpp_executor_none():
    # CudaGraphConfig without padding: 1-32, 64 and 128; a batch of 33 or 100 runs eagerly
    graphs = ENGINES["trtllm"].defaults(get_hardware("h100-sxm"), 8192, 1).kernels
    assert [n for n in (1, 32, 33, 64, 100, 128, 129) if graphs.replay(True, n, n) == Replay.GRAPH] == [1, 32, 64, 128]
    assert graphs.replay(False, 32, 32) == Replay.EAGER  # a step with a prompt in it: no graph, no pieces
    cpp = ENGINES["trtllm-cpp"].defaults(get_hardware("h100-sxm"), 8192, 1)
    assert cpp.kernels.replay(True, 1, 1) == Replay.EAGER and not cpp.prefix_caching and not cpp.overhead.overlaps_gpu
    assert cpp.kernels.eager_floor_s == 1.4e-6  # its kernels are enqueued from C++ (roofline/kernel_set.py)
    assert cpp.memory_profile == "engine"  # its engine holds activations and logits from load


def test_every_preset_names_a_registered_scheduler_and_only_the_pre_overlap_engines_run_the_host_in_series():
    for name, preset in ENGINES.items():
        d = preset.defaults(get_hardware("h100-sxm"), 8192, 1)
        assert d.scheduler in SCHEDULERS
        assert d.overhead.overlaps_gpu == (name not in ("vllm-v1-0.8", "vllm-v0", "trtllm-cpp"))


def test_infersim_engines_lists_each_preset_with_its_defaults_on_the_gpu():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "engines", "--hardware", "a100-sxm-80gb"],
                         capture_output=True, text=True, check=True).stdout
    v1 = next(line for line in out.splitlines() if line.startswith("vllm-v1"))
    assert "2048" in v1 and "256" in v1 and "overlapped" in v1  # V1 on an A100: 2048 tokens, 256 sequences
    assert "up to 512 tokens, padded (51 sizes)" in v1  # its capture: min(2 x 256, 512), padded
    trtllm = next(line for line in out.splitlines() if line.startswith("trtllm "))
    assert "0.90 of free - 3.3 GiB" in trtllm  # its share of what is free once its runtime holds 3.30 GiB
    assert all(name in out for name in ENGINES)


def test_a_front_end_adds_its_time_to_each_requests_ttft_and_e2e_and_nothing_else(tmp_path):
    """engine.frontend_s: a constant before each request reaches the engine is, in an open loop, only
    latency: TTFT and E2E grow by exactly it, the engine's figures stay as they were."""
    import yaml

    from infersim.scenario import load_run
    from infersim.sim.run import simulate
    scenario = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"max_model_len": 4096},
                "workload": {"num_requests": 60, "arrival": {"process": "poisson", "rate_per_s": 4},
                             "prompt_tokens": 300, "output_tokens": 40}}
    summaries = []
    for frontend_s in (0.0, 0.005):
        path = tmp_path / f"s{frontend_s}.yaml"
        path.write_text(yaml.safe_dump({**scenario, "engine": {"frontend_s": frontend_s}}))
        _, cfg, requests = load_run(path)
        summaries.append(simulate(cfg, requests).summary)
    plain, fronted = summaries
    for key in ("ttft_s", "e2e_s"):
        assert fronted[key]["mean"] == pytest.approx(plain[key]["mean"] + 0.005, rel=1e-9)
        assert fronted[key]["p99"] == pytest.approx(plain[key]["p99"] + 0.005, rel=1e-9)
    for key in ("tpot_s", "itl_s", "queueing_s"):
        assert fronted[key] == plain[key]
    assert fronted["throughput_tokens_per_s"] == plain["throughput_tokens_per_s"]


def test_tensorrt_llm_sizes_its_kv_cache_from_free_memory_and_a_scenario_can_say_otherwise(tmp_path):
    """TensorRT-LLM's 0.9 is of the memory weights and workspace leave, vLLM's of all of it: under the trtllm
    preset an 8B on an H100 gets 0.1 x (weights + workspace) more KV bytes, and memory_utilization_of: total
    gives it vLLM's plan back."""
    import yaml

    from infersim.scenario import load_run
    from infersim.sim.run import total_kv_blocks
    blocks = {}
    for name, kv_cache in (("free", {}), ("total", {"memory_utilization_of": "total"})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "hardware": "h100-sxm",
                                        "engine": {"preset": "trtllm"}, "scheduler": {"max_model_len": 4096},
                                        "kv_cache": kv_cache, "workload": {"num_requests": 1, "arrival": {"process": "burst"},
                                                     "prompt_tokens": 100, "output_tokens": 10}}))
        blocks[name] = total_kv_blocks(load_run(path)[1])
    # the difference: 0.1 x (16,060,522,496 B of weights + the profiling pass's workspace, its forward's 8192
    # tokens x (2 x 14336 + 14336 + 2 x 4096) x 2 B = 838,860,800 B (2 requests' (8192 / 4096) 128,256 logits x
    # 38.9 B, sampled after it, take less), + the runtime's 3.30 GiB = 3,543,348,019 B) = 2,044,273,132 B:
    # 15,596 tokens of 131,072 B, 487.4 blocks of 32
    assert blocks["free"] - blocks["total"] == pytest.approx(487.4, abs=1)


def test_tensorrt_llm_holds_back_its_runtime_as_trtllm_bench_logged_it_on_an_h100():
    """NVIDIA/TensorRT-LLM issue #6294: trtllm-bench 0.20, Llama-3.1-8B-Instruct-FP8 on one H100, max_num_tokens
    23552, 4096 requests at most, max_seq_len 157, free_gpu_memory_fraction 0.8: "Allocated 52.51 GiB for max
    tokens in paged KV cache (860320)", from an estimate of 860,308 tokens of 64 KiB (FP8 K and V of 32 layers x 8
    heads x 128). The preset's 3.30 GiB of runtime is set from this log (a fit to it, sim/engines.py): this
    checks that the plan is the one that figure was read with."""
    from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
    from infersim.roofline.quant import get_quant
    from infersim.sim.engines import preset_config
    from infersim.sim.run import replica_memory_plan
    cfg = preset_config("trtllm", get_model("llama-3.1-8b"), get_hardware("h100-sxm"),
                        StepOptions(quant=get_quant("fp8"), parallel=Parallelism(1)), 157)
    cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, max_num_seqs=4096,
                                                               max_num_batched_tokens=23552, chunk_tokens=23552),
                              kv_cache=dataclasses.replace(cfg.kv_cache, memory_utilization=0.8))
    plan = replica_memory_plan(cfg)
    assert plan.kv_bytes_per_token == 65536 and plan.weight_bytes / 2 ** 30 == pytest.approx(8.46, abs=0.005)
    assert plan.max_kv_tokens == pytest.approx(860_308, rel=2e-4)
    # without the runtime, or sized after the largest step (4096 sequences' logits: 19.0 GiB), it would differ
    no_runtime = replica_memory_plan(dataclasses.replace(cfg, kv_cache=dataclasses.replace(cfg.kv_cache, runtime_gib=0)))
    step = replica_memory_plan(dataclasses.replace(cfg, kv_cache=dataclasses.replace(cfg.kv_cache, memory_profile="step")))
    assert no_runtime.max_kv_tokens > 900_000 and step.max_kv_tokens < 780_000
