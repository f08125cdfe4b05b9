"""Serving engines as deployed: each preset is a scheduler, its limits, a KV cache layout, a kernel set (which
decode steps replay a CUDA graph) and a host model (whether the host's per-step work overlaps the GPU's), with
the defaults the engine itself picks on the GPU at hand. Values are read from each engine's code at the
version named (file and field cited beside them); every one can be overridden in a scenario.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from infersim.roofline.errors import require_choice
from infersim.roofline.hardware import GB, HardwareSpec
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


@dataclass(frozen=True)
class EnginePreset:
    name: str
    stands_for: str  # the engine and version its defaults are read from
    defaults: Callable[[HardwareSpec], EngineDefaults]


# Host time per step: the order of magnitude vLLM's own profiles show (v0.6.0 blog: scheduling and the API
# server took most of an 8B decode step on an H100 before async output processing); engines that overlap it
# with the GPU hide it behind steps longer than it. Not yet fitted to serving measurements.
_HOST_S, _HOST_PER_SEQ_S = 1.0e-3, 10e-6


def _vllm_v0(hw: HardwareSpec) -> EngineDefaults:
    """vLLM 0.6.6 (the V0 engine, default until 0.8): vllm/core/scheduler.py; vllm/config.py SchedulerConfig
    (max_num_seqs 256, max_num_batched_tokens max(max_model_len, 2048) without chunked prefill: taken as
    8192, the scenario's max_model_len cap), CacheConfig (block_size 16, gpu_memory_utilization 0.90);
    decode CUDA graphs up to batch 256 (_BATCH_SIZES_TO_CAPTURE); host work serial with the GPU but for
    async output processing."""
    return EngineDefaults("vllm", 256, 8192, 512, 16, 0.90, 0.01, False,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=False), KernelSet(graph_max_batch=256))


def _vllm_v1(hw: HardwareSpec) -> EngineDefaults:
    """vLLM's V1 engine (default from 0.8; values of 0.14-0.33): vllm/engine/arg_utils.py `get_batch_defaults`
    for online serving: GPUs of >= 160 GiB take 16384 batched tokens and 1024 sequences, >= 70 GiB (not the
    A100) 8192 and 1024, others 2048 and 256; vllm/config/cache.py block_size 16, gpu_memory_utilization 0.92
    (0.20+), prefix caching on; no watermark (config/scheduler.py); async scheduling on (0.14+); full CUDA
    graphs for decode steps up to 512 sequences (config/compilation.py max_cudagraph_capture_size)."""
    memory = hw.memory_bytes
    big, a100 = memory >= 160 * GiB, hw.name.startswith("a100")
    tokens = 16384 if big else 8192 if memory >= 70 * GiB and not a100 else 2048
    seqs = 1024 if big or (memory >= 70 * GiB and not a100) else 256
    return EngineDefaults("vllm-v1", seqs, tokens, tokens, 16, 0.92, 0.0, True,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True),
                          KernelSet(graph_max_batch=min(512, 2 * seqs)))


def _sglang(hw: HardwareSpec) -> EngineDefaults:
    """SGLang 0.5 (sgl-project/sglang python/sglang/srt/arg_groups/memory_hook.py
    `handle_gpu_memory_settings`): chunked_prefill_size 2048 below 20 GB, 4096 below 60 GB, 8192 below
    160 GB, 16384 above; max_prefill_tokens 16384; decode CUDA graphs up to 256 sequences (512 from 160 GB);
    page size 1 (radix cache on); mem_fraction_static leaves ~10-14 GB for graphs and activations on an
    80 GB GPU (taken as 12 GB); max_running_requests derived from the KV pool (taken as 2048, the pool's
    lower bound in 0.5.2); overlap scheduler on."""
    memory_gb = hw.memory_bytes / GB
    chunk = 2048 if memory_gb < 20 else 4096 if memory_gb < 60 else 8192 if memory_gb < 160 else 16384
    graphs = 512 if memory_gb >= 160 else 256
    return EngineDefaults("sglang", 2048, 16384, chunk, 1, max(0.5, 1 - 12 * GB / hw.memory_bytes), 0.0, True,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True), KernelSet(graph_max_batch=graphs))


def _trtllm(hw: HardwareSpec) -> EngineDefaults:
    """TensorRT-LLM 1.x, PyTorch backend (NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py): max_batch_size
    2048, max_num_tokens 8192, chunked prefill off, KvCacheConfig tokens_per_block 32 and
    free_gpu_memory_fraction 0.9 (of the memory free after loading: taken as 0.9 of all), block reuse on,
    CUDA graphs for decode-only batches up to 128 (CudaGraphConfig), overlap scheduler on."""
    return EngineDefaults("trtllm", 2048, 8192, 8192, 32, 0.9, 0.0, True,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=True), KernelSet(graph_max_batch=128))


def _trtllm_cpp(hw: HardwareSpec) -> EngineDefaults:
    """TensorRT-LLM's C++ executor over TensorRT engines (the runtime before the PyTorch backend of 0.17, e.g.
    0.14 behind Triton's tensorrtllm_backend): the same batching, capacity policy (GUARANTEED_NO_EVICT is
    the documented default, performance-tuning-guide/useful-runtime-flags) and limits as `trtllm`, but no
    overlap scheduler, a PyTorch-backend feature (docs torch.md: "available in version 0.17 and later",
    Overlap Scheduler among its features): the host's per-step work runs in series with the GPU's."""
    d = _trtllm(hw)
    return EngineDefaults(d.scheduler, d.max_num_seqs, d.max_num_batched_tokens, d.chunk_tokens,
                          d.block_size_tokens, d.memory_utilization, d.watermark_fraction, d.prefix_caching,
                          EngineOverhead(_HOST_S, _HOST_PER_SEQ_S, overlaps_gpu=False), d.kernels)


ENGINES = {p.name: p for p in (
    EnginePreset("vllm-v1", "vLLM V1 engine (0.8 and later; defaults of 0.14-0.33)", _vllm_v1),
    EnginePreset("vllm-v0", "vLLM V0 engine (0.6.6)", _vllm_v0),
    EnginePreset("sglang", "SGLang 0.5", _sglang),
    EnginePreset("trtllm", "TensorRT-LLM 1.x, PyTorch backend", _trtllm),
    EnginePreset("trtllm-cpp", "TensorRT-LLM C++ executor over TensorRT engines (before 0.17, e.g. 0.14)",
                 _trtllm_cpp),
)}


def preset_config(preset: str, model: ModelSpec, hardware: HardwareSpec, options: StepOptions,
                  max_model_len: int, **run_fields) -> RunConfig:
    """A run configuration with every knob at the preset's default for this GPU; `run_fields` (cluster,
    slo, overhead, ...) go to RunConfig as they are, over the preset's."""
    require_choice("engine.preset", preset, ENGINES)
    d = ENGINES[preset].defaults(hardware)
    fields = {"overhead": d.overhead, "kernels": d.kernels, **run_fields}
    return RunConfig(model, hardware, options, scheduler=d.scheduler,
                     limits=SchedulerLimits(d.max_num_seqs, d.max_num_batched_tokens, max_model_len, d.chunk_tokens),
                     kv_cache=KVCacheSpec(block_size_tokens=d.block_size_tokens, prefix_caching=d.prefix_caching,
                                          watermark_fraction=d.watermark_fraction,
                                          memory_utilization=d.memory_utilization), **fields)
