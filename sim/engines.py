"""Serving engines as deployed: each preset is a scheduler, its limits, a KV cache layout, a kernel set (which
decode steps replay a CUDA graph) and a host model (whether the host's per-step work overlaps the GPU's), with
the defaults the engine itself picks on the GPU at hand. Values are read from each engine's code at the
version named (file and field cited beside them); every one can be overridden in a scenario.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from infersim.roofline.errors import require_choice
from infersim.roofline.hardware import HardwareSpec
from infersim.roofline.kernel_set import KernelSet
from infersim.roofline.models import ModelSpec
from infersim.roofline.step import StepOptions

from .replica import EngineOverhead
from .run import KVCacheSpec, RunConfig
from .schedulers import SchedulerLimits

GiB = 2 ** 30


@dataclass(frozen=True)
class EngineDefaults:
    """What an engine sets up on one GPU of a given kind."""

    scheduler: str
    max_num_seqs: int
    max_num_batched_tokens: int  # the step's token budget (a prefill batch's, for prefill-first engines)
    chunk_tokens: int  # a chunked prompt's largest chunk
    block_size_tokens: int
    memory_utilization: float  # share of the GPU's memory for weights, activations and KV cache
    watermark_fraction: float
    prefix_caching: bool
    overhead: EngineOverhead
    kernels: KernelSet
    fusions: frozenset = frozenset()  # ops it runs as one kernel (roofline.step.FUSIONS)
    # what memory_utilization is a share of: "total" memory, or (TensorRT-LLM) what weights and activations leave "free"
    memory_utilization_of: str = "total"
    runtime_gib: float = 0.0  # its process's memory beyond weights, activations and KV (run.KVCacheSpec)
    memory_profile: str = "step"  # the startup pass its KV cache is sized after (run.KVCacheSpec)

    def step_options(self, options: StepOptions) -> StepOptions:
        """`options` with the ops this engine runs as one kernel."""
        return replace(options, fusions=self.fusions)


# vLLM (vllm/model_executor/layers/layernorm.py `RMSNorm.forward_cuda`: `fused_add_rms_norm` when given the
# residual) and SGLang (sgl-kernel `fused_add_rmsnorm`) add the residual inside the next norm; RoPE
# (`rotary_embedding`) and the cache write (`reshape_and_cache_flash`, SGLang's `set_kv_buffer`) stay apart.
_ADD_NORM = frozenset({"add_norm"})
# TensorRT-LLM's attention rotates Q and K and appends K and V to the cache in one preprocessing kernel
# (cpp/tensorrt_llm/plugins/gptAttentionCommon/gptAttentionCommon.cpp calls
# `invokeApplyBiasRopeUpdateKVCache` before its context FMHA and XQA kernels); the PyTorch backend also
# adds the residual in the norm (tensorrt_llm/_torch/modules/rms_norm.py: flashinfer `fused_add_rmsnorm`).
_TRTLLM_ATTENTION = frozenset({"rope_kv_write"})


@dataclass(frozen=True)
class EnginePreset:
    name: str
    stands_for: str  # the engine and version its defaults are read from
    defaults: Callable[[HardwareSpec, int, int], EngineDefaults]  # (GPU, max_model_len, tensor-parallel size)


# Host time per step: the order of magnitude vLLM's own profiles show (v0.6.0 blog: scheduling and the API
# server took most of an 8B decode step on an H100 before async output processing); engines that overlap it
# with the GPU hide it behind steps longer than it. Not yet fitted to serving measurements.
_HOST_S, _HOST_PER_SEQ_S = 1.0e-3, 10e-6


def _vllm_v1_capture_sizes(max_size: int) -> tuple[int, ...]:
    """vLLM V1's decode CUDA-graph sizes up to `max_size` (vllm/config/vllm.py `_set_cudagraph_sizes`, 0.11+;
    the CLI docs of --max-cudagraph-capture-size give the same pattern): 1, 2, 4, then every 8 below 256,
    then every 16 up to `max_size`."""
    return (tuple(b for b in (1, 2, 4) if b <= max_size) + tuple(range(8, min(max_size + 1, 256), 8))
            + tuple(range(256, max_size + 1, 16)))


# vLLM 0.6.6 worker/model_runner.py _BATCH_SIZES_TO_CAPTURE: 1, 2, 4, then every _BATCH_SIZE_ALIGNMENT (8) to 256
_VLLM_V0_CAPTURE_SIZES = (1, 2, 4) + tuple(range(8, 257, 8))


def _sglang_capture_sizes(max_bs: int) -> tuple[int, ...]:
    """SGLang 0.5's decode CUDA-graph batch sizes up to its cuda_graph_max_bs (python/sglang/srt/server_args.py
    `_generate_cuda_graph_batch_sizes`, padding on, no speculation): 1, 2, 4, 8, 12, every 8 from 16 to 256,
    every 16 from 272 below 512, every 32 from 512."""
    sizes = ((1, 2, 4, 8, 12) + tuple(range(16, 257, 8)) + tuple(range(272, 512, 16))
             + tuple(range(512, max_bs + 1, 32)))
    return tuple(b for b in sizes if b <= max_bs)


def _vllm_v0(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """vLLM 0.6.6 (the V0 engine, default until 0.8): vllm/core/scheduler.py; vllm/config.py SchedulerConfig
    (max_num_seqs 256, max_num_batched_tokens max(max_model_len, 2048) without chunked prefill, which
    `_verify_args` requires to be at least max_model_len), CacheConfig (block_size 16,
    gpu_memory_utilization 0.90); decode CUDA graphs up to batch 256, a batch padded up to the next captured
    size (_BATCH_SIZES_TO_CAPTURE);
    host work serial with the GPU but for async output processing. Beyond 32768 tokens of context V0 turns
    chunked prefill on by itself (engine/arg_utils.py `use_long_context`) with a 2048-token budget:
    decode-first mixed steps, which the `sarathi` scheduler models. All-reduces: the custom kernel
    (ParallelConfig disable_custom_all_reduce False; roofline/custom_all_reduce.py)."""
    long_context = max_model_len > 32768
    return EngineDefaults("sarathi" if long_context else "vllm", 256,
                          2048 if long_context else max(max_model_len, 2048), 2048 if long_context else 512,
                          16, 0.90, 0.01, False, EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=False),
                          KernelSet(graph_max_batch=256, padded_sizes=_VLLM_V0_CAPTURE_SIZES, all_reduce="vllm-custom"),
                          _ADD_NORM)


def _vllm_v1(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """vLLM's V1 engine (default from 0.8; values of 0.14-0.33): vllm/engine/arg_utils.py `get_batch_defaults`
    for online serving: GPUs of >= 160 GiB take 16384 batched tokens and 1024 sequences, >= 70 GiB but for
    the A100 (a device-name check there; the 80 GB A100 is the only Ampere GPU that large, so it is read
    from the architecture here) 8192 and 1024, others 2048 and 256; vllm/config/cache.py block_size 16,
    gpu_memory_utilization 0.92 (0.20+), prefix caching on; no watermark (config/scheduler.py); async
    scheduling on (0.14+); full CUDA graphs for decode steps up to 512 sequences, padded up to a captured
    size in tokens (`_vllm_v1_capture_sizes`; config/compilation.py max_cudagraph_capture_size,
    min(2 max_num_seqs, 512)), and piecewise ones for
    every other step of up to as many tokens (cudagraph_mode FULL_AND_PIECEWISE, the default: each layer's
    attention launched between the pieces; roofline/kernel_set.py); the custom all-reduce kernel
    (disable_custom_all_reduce False)."""
    memory = hw.memory_bytes
    big, hopper_class = memory >= 160 * GiB, memory >= 70 * GiB and hw.architecture != "ampere"
    tokens = 16384 if big else 8192 if hopper_class else 2048
    seqs = 1024 if big or hopper_class else 256
    captured = min(512, 2 * seqs)
    return EngineDefaults("vllm-v1", seqs, tokens, tokens, 16, 0.92, 0.0, True,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True),
                          KernelSet(graph_max_batch=captured, padded_sizes=_vllm_v1_capture_sizes(captured),
                                    all_reduce="vllm-custom", piecewise_max_tokens=captured, graph_counts_tokens=True),
                          _ADD_NORM)


def _vllm_v1_08(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """vLLM's V1 engine as 0.8 released it (read at 0.8.3, the default engine from 0.8; the same graphs and
    serial host through 0.10): vllm/engine/arg_utils.py `_set_default_args_v1` for online serving picks the
    step's token budget by the device's name, 8192 where it holds "h100" or "h200" (GH200's does too) and
    2048 elsewhere, A100s included, with 1024 sequences everywhere; chunked prefill always, prefix caching on,
    gpu_memory_utilization 0.90, block_size 16 (platforms/cuda.py); CUDA graphs piecewise only
    (config.py: CompilationLevel.PIECEWISE split at the attention ops, captured up to 512 tokens, any step
    of at most that many tokens replaying them, v1/worker/gpu_model_runner.py), no full decode graphs (an
    option from 0.9, the default from 0.11); no async scheduling (v1/engine/core.py `step`: schedule, execute,
    update in series; `--async-scheduling` came in 0.10, default from 0.14), so the host's per-step work
    runs in series with the GPU's (detokenizing runs in the API server's process, off that path); the
    custom all-reduce. Later 0.8 releases may differ: vLLM PR #16158 took max_num_seqs back toward V0's
    256 off H100/H200."""
    name = hw.name.lower()  # as vLLM lowers torch's device name
    hopper_name = "h100" in name or "h200" in name
    return EngineDefaults("vllm-v1", 1024, 8192 if hopper_name else 2048, 8192 if hopper_name else 2048, 16, 0.90,
                          0.0, True, EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=False),
                          KernelSet(graph_max_batch=0, all_reduce="vllm-custom", piecewise_max_tokens=512,
                                    graph_counts_tokens=True),
                          _ADD_NORM)


# SGLang 0.5.23 arg_groups/memory_hook.py `handle_gpu_memory_settings`, by the GPU's memory in MiB:
# (below this much, chunked_prefill_size, decode graph max_bs below tp 4, from tp 4)
_SGLANG_TIERS_MIB = ((20 * 1024, 2048, 8, 8), (35 * 1024, 4096, 48, 160), (60 * 1024, 4096, 32, 160),
                     (160 * 1024, 8192, 256, 512), (float("inf"), 16384, 512, 512))


def _sglang(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """SGLang 0.5.23 (sgl-project/sglang python/sglang/srt/arg_groups/memory_hook.py
    `handle_gpu_memory_settings`): chunked_prefill_size and the decode CUDA graphs' largest batch by GPU
    memory and tensor parallelism (`_SGLANG_TIERS_MIB`; batches padded up to a captured size,
    `_sglang_capture_sizes`);
    mem_fraction_static leaves (512 + 1.5 max(chunk, 2048) + 1024 tp/8 + 2 per graph batch size) MiB for
    activations and graphs, at least 10 GiB on GPUs over 60 GiB, and holds the weights and the KV pool alone:
    the pool is what is free once the weights are loaded less the share left out, no activations profiled
    (model_executor/model_runner.py `profile_max_num_token`; memory_profile "static"); page size 1 (radix cache on); every
    prefill step is one chunk (max_prefill_tokens 16384 is larger); max_running_requests derived from the
    KV pool (taken as 2048, the pool's lower bound in 0.5.2); prefill and mixed steps run eagerly (piecewise
    CUDA graphs for them are an experimental flag, --enable-piecewise-cuda-graph, off by default: SGLang's
    "Piecewise CUDA Graph" docs); overlap scheduler on; vLLM's custom all-reduce
    (python/sglang/srt/distributed/device_communicators/custom_all_reduce.py, disable_custom_all_reduce
    False)."""
    memory_mib = hw.memory_bytes / 2 ** 20
    _, chunk, small_tp_graphs, large_tp_graphs = next(t for t in _SGLANG_TIERS_MIB if memory_mib < t[0])
    graphs = small_tp_graphs if tp < 4 else large_tp_graphs
    reserved_mib = 512 + 1.5 * max(chunk, 2048) + tp / 8 * 1024 + 2 * graphs
    if memory_mib > 60 * 1024:
        reserved_mib = max(reserved_mib, 10 * 1024)
    return EngineDefaults("sglang", 2048, chunk, chunk, 1, round((memory_mib - reserved_mib) / memory_mib, 3),
                          0.0, True, EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True),
                          KernelSet(graph_max_batch=graphs, padded_sizes=_sglang_capture_sizes(graphs),
                                    all_reduce="vllm-custom"), _ADD_NORM, memory_profile="static")


# TensorRT-LLM 0.20's PyTorch backend on an H100, as trtllm-bench logged it for Llama-3.1-8B-Instruct-FP8
# (NVIDIA/TensorRT-LLM issue #6294: weights 8.46 GiB, max_num_tokens 23552, free_gpu_memory_fraction 0.8,
# 860,308 KV tokens of 64 KiB = 52.51 GiB, so 65.64 GiB before the fraction). The plan here leaves 79.65 GiB
# (nvidia-smi's 81,559 MiB) - 8.46 - 2.25 GiB (the profiling pass's forward over 23,552 tokens; its 151
# requests' logits, sampled after it, take less) = 68.94 GiB: the 3.30 GiB between them is the CUDA context,
# non-torch workspaces, the allocator's slack and what the driver keeps. Measured on one GPU and one model: read
# it as an order of magnitude elsewhere.
_TRTLLM_RUNTIME_GIB = 3.30


def _trtllm(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """TensorRT-LLM 1.x, PyTorch backend (NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py): max_batch_size
    2048, max_num_tokens 8192, chunked prefill off, KvCacheConfig tokens_per_block 32 and
    free_gpu_memory_fraction 0.9 (of the memory free once weights and activations are loaded), block reuse on,
    CUDA graphs for decode-only batches of 1-32, 64 and 128 sequences, not padded (CudaGraphConfig
    batch sizes with enable_padding off: other sizes run eagerly), overlap scheduler on; all-reduces by
    AllReduceStrategy AUTO, its default (roofline/custom_all_reduce.py). The KV cache is sized after a profiling
    pass of context requests filling max_num_tokens (_torch/pyexecutor/_util.py KvCacheCreator: the fraction
    applies to the total memory CUDA reports less the pass's peak, non-torch memory included), and the
    process holds `_TRTLLM_RUNTIME_GIB` beyond weights, that pass's activations and the KV cache."""
    graphs = KernelSet(graph_max_batch=128, captured_sizes=frozenset(range(1, 33)) | {64, 128}, all_reduce="trtllm")
    return EngineDefaults("trtllm", 2048, 8192, 8192, 32, 0.9, 0.0, True,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True), graphs,
                          _ADD_NORM | _TRTLLM_ATTENTION, memory_utilization_of="free", runtime_gib=_TRTLLM_RUNTIME_GIB,
                          memory_profile="context")


def _trtllm_cpp(hw: HardwareSpec, max_model_len: int, tp: int) -> EngineDefaults:
    """TensorRT-LLM's C++ executor over TensorRT engines (the runtime before the PyTorch backend of 0.17, e.g.
    0.14 behind Triton's tensorrtllm_backend): the same batching, capacity policy (GUARANTEED_NO_EVICT is
    the documented default, performance-tuning-guide/useful-runtime-flags) and limits as `trtllm`, but no
    overlap scheduler, a PyTorch-backend feature (docs torch.md: "available in version 0.17 and later",
    Overlap Scheduler among its features): the host's per-step work runs in series with the GPU's; no CUDA
    graphs (executor ExtendedRuntimePerfKnobConfig cudaGraphMode off by default), but kernels and the
    all-reduce plugin enqueued from C++ ahead of the GPU (roofline/kernel_set.py); no KV block reuse
    (executor KvCacheConfig enableBlockReuse off by default); the all-reduce plugin's strategy AUTO
    (trtllm-build's default); RoPE and the cache write in the attention plugin's one preprocessing kernel
    (whether TensorRT folds the residual add into the norm is not documented: they are costed apart). A
    TensorRT engine holds its activations, logits for its max batch included, from the moment it loads, so
    its KV cache is sized after the largest step's activations and logits together (memory_profile
    "engine"); its runtime's own memory is not published (one
    A100 report, NVIDIA/TensorRT-LLM issue #548, left ~0.5 GB unaccounted): none is held back."""
    return replace(_trtllm(hw, max_model_len, tp), prefix_caching=False,
                   kernels=KernelSet(eager_floor_s=1.4e-6, all_reduce="trtllm"), fusions=_TRTLLM_ATTENTION,
                   overhead=EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=False), runtime_gib=0.0,
                   memory_profile="engine")


ENGINES = {p.name: p for p in (
    EnginePreset("vllm-v1", "vLLM V1 engine (defaults of 0.14-0.33)", _vllm_v1),
    EnginePreset("vllm-v1-0.8", "vLLM V1 engine as 0.8 released it (0.8.3; no async scheduling, piecewise "
                 "CUDA graphs only)", _vllm_v1_08),
    EnginePreset("vllm-v0", "vLLM V0 engine (0.6.6)", _vllm_v0),
    EnginePreset("sglang", "SGLang 0.5 (defaults of 0.5.23)", _sglang),
    EnginePreset("trtllm", "TensorRT-LLM 1.x, PyTorch backend", _trtllm),
    EnginePreset("trtllm-cpp", "TensorRT-LLM C++ executor over TensorRT engines (before 0.17, e.g. 0.14)",
                 _trtllm_cpp),
)}


def preset_config(preset: str, model: ModelSpec, hardware: HardwareSpec, options: StepOptions,
                  max_model_len: int, **run_fields) -> RunConfig:
    """A run configuration with every knob at the preset's default for this GPU; `run_fields` (cluster,
    slo, overhead, ...) go to RunConfig as they are, over the preset's."""
    require_choice("engine.preset", preset, ENGINES)
    d = ENGINES[preset].defaults(hardware, max_model_len, options.parallel.tensor_parallel)
    fields = {"overhead": d.overhead, "kernels": d.kernels, **run_fields}
    return RunConfig(model, hardware, d.step_options(options), scheduler=d.scheduler,
                     limits=SchedulerLimits(d.max_num_seqs, d.max_num_batched_tokens, max_model_len, d.chunk_tokens),
                     kv_cache=KVCacheSpec(block_size_tokens=d.block_size_tokens, prefix_caching=d.prefix_caching,
                                          watermark_fraction=d.watermark_fraction,
                                          memory_utilization=d.memory_utilization,
                                          memory_utilization_of=d.memory_utilization_of, runtime_gib=d.runtime_gib,
                                          memory_profile=d.memory_profile), **fields)
