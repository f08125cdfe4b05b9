"""Memory capacity of one GPU of a replica: weights + activation workspace + the engine's runtime + KV cache.

Like vLLM's startup profiling: the KV cache gets what is left of `utilization x capacity` after the
weights, the peak activation workspace of the largest step and what the engine's process holds outside them
(its `runtime_bytes`); that fixes the KV tokens a GPU holds. An engine that runs no such pass (SGLang) is
planned with no workspace: its share of memory leaves the activations' room by itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import HardwareLimit, SpecError, require_choice
from .hardware import HardwareSpec
from .models import ModelSpec
from .ops import ACT_BYTES, LOGIT_BYTES
from .quant import QuantSpec
from .step import Parallelism


def weight_bytes_per_gpu(model: ModelSpec, quant: QuantSpec, parallel: Parallelism) -> float:
    """Weights one GPU stores: its 1/pp of the layers, each matrix split 1/tp (but the K and V projections of
    the KV heads it holds, replicated where tp exceeds them); embedding and LM head split over the vocabulary and kept in fp16 (as GPTQ/AWQ checkpoints keep them)."""
    tp, pp = parallel.tensor_parallel, parallel.pipeline_parallel
    d = model.hidden_size
    qkv_out = model.q_width // tp + 2 * model.kv_heads_per_gpu(tp) * model.head_dim  # K/V heads replicated past tp
    up_out = model.ffn_size * (2 if model.ffn_kind == "swiglu" else 1) // tp
    per_layer = (quant.weight_bytes(d, qkv_out) + quant.weight_bytes(model.q_width // tp, d)
                 + model.num_experts * (quant.weight_bytes(d, up_out) + quant.weight_bytes(model.ffn_size // tp, d)))
    vector_params = model.layer_params() - (
        d * (model.q_width + 2 * model.kv_width) + model.q_width * d
        + model.num_experts * model.ffn_matrices * d * model.ffn_size)
    per_layer += vector_params * ACT_BYTES  # norms, biases, router: small and unquantized
    layers = math.ceil(model.num_layers / pp)
    vocab = math.ceil(model.vocab_size / tp) * d * ACT_BYTES
    ends = vocab * (1 if model.tied_embeddings else 2) + (model.embedding_params() - model.vocab_size * d *
                                                          (1 if model.tied_embeddings else 2)) * ACT_BYTES
    return layers * per_layer + ends


def kv_bytes_per_token_per_gpu(model: ModelSpec, quant: QuantSpec, parallel: Parallelism) -> float:
    """K and V of one token on one GPU: 2 x (layers / pp) x its KV heads x head_dim x bytes (PagedAttention §3)."""
    layers = math.ceil(model.num_layers / parallel.pipeline_parallel)
    kv_heads = model.kv_heads_per_gpu(parallel.tensor_parallel)
    return 2 * layers * kv_heads * model.head_dim * quant.kv_bytes_per_element(model.head_dim)


# What a sampler holds at its peak for each sampled sequence and vocabulary entry. vLLM 0.11's startup pass on
# one H100 with 1,024 sequences sampled (its "torch peak memory increase" log line, gathered by llm-d:
# llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md) peaked at 4.76 GiB for Llama-3.1-8B
# and 4.84 GiB for Llama-3.3-70B at TP 2 (vocabulary 128,256), 5.56 GiB for Qwen3-0.6B and 5.64 GiB for
# Qwen3-32B (151,936): the vocabulary sets it, not the model's size nor its split, so the sampler does, over the
# whole vocabulary on every rank: 4.76 GiB / (1,024 x 128,256) = 38.9 B, some ten bf16 and fp32 copies of the
# logits (their fp32 cast, a sort's values and int64 indices, probabilities, masks, the noise sampled against).
# Read off one engine's logs: other samplers (FlashInfer's sort-free one, TensorRT-LLM's) may hold less.
SAMPLER_BYTES_PER_LOGIT = 38.9


def activation_bytes_per_gpu(model: ModelSpec, parallel: Parallelism, max_batched_tokens: int,
                             max_sequences: int, logits_held: bool = False) -> float:
    """Peak transient memory of the largest step: the larger of its forward pass (the FFN's up output and
    activation for every token, the residual stream twice) and its sampler (`SAMPLER_BYTES_PER_LOGIT` for each
    sampled sequence's each logit, the vocabulary whole). They run one after the other, the forward's buffers
    freed before the sampler takes its own: the llm-d logs above peak the same for a 0.6B and a 32B model.

    With `logits_held` (a TensorRT engine, whose activations and output buffers are allocated once, when it
    loads) both are held at once: the forward's and each sequence's logits of the rank's shard, bf16 with
    fp32 probabilities and sort buffers (2 + 3 x 4 B; an estimate, TensorRT-LLM publishes no figure)."""
    tp = parallel.tensor_parallel
    up = model.ffn_size * (2 if model.ffn_kind == "swiglu" else 1) // tp
    forward = max_batched_tokens * (up + model.ffn_size // tp + 2 * model.hidden_size) * ACT_BYTES
    if logits_held:
        return forward + max_sequences * math.ceil(model.vocab_size / tp) * (ACT_BYTES + 3 * LOGIT_BYTES)
    return max(forward, max_sequences * model.vocab_size * SAMPLER_BYTES_PER_LOGIT)


@dataclass(frozen=True)
class MemoryPlan:
    capacity_bytes: float
    usable_bytes: float
    weight_bytes: float
    activation_bytes: float
    kv_bytes_per_token: float
    runtime_bytes: float = 0.0  # the engine's process outside weights, activations and KV (plan_memory)

    @property
    def kv_cache_bytes(self) -> float:
        return self.usable_bytes - self.weight_bytes - self.activation_bytes - self.runtime_bytes

    @property
    def max_kv_tokens(self) -> int:
        return int(self.kv_cache_bytes // self.kv_bytes_per_token)

    def max_batch(self, context_tokens: int) -> int:
        """Sequences whose whole context fits in the KV cache at once."""
        if context_tokens <= 0:
            raise SpecError("context", "must be > 0", context_tokens)
        return self.max_kv_tokens // context_tokens


MEMORY_SHARES = ("total", "free")  # what kv_cache.memory_utilization is a share of


def plan_memory(model: ModelSpec, hw: HardwareSpec, quant: QuantSpec = QuantSpec(),
                parallel: Parallelism = Parallelism(), utilization: float = 0.9,
                max_batched_tokens: int = 8192, max_sequences: int = 256, draft_weight_bytes: float = 0.0,
                draft_kv_bytes_per_token: float = 0.0, utilization_of: str = "total",
                draft_field: str = "speculative", draft_name: str = "", runtime_bytes: float = 0.0,
                logits_held: bool = False) -> MemoryPlan:
    """Split one GPU's memory (defaults as vLLM's: gpu_memory_utilization 0.9, 8192 batched tokens). A
    speculative drafter's weights come off the top and its KV cache shares the blocks (each block holds
    both models' K and V for its tokens, as vLLM's spec-decode KV groups do); one that does not fit beside the
    model is named by `draft_field` and `draft_name` (the spec's key and the drafter's name).

    `utilization` is a share of the whole memory (vLLM's gpu_memory_utilization, SGLang's
    mem_fraction_static), or with `utilization_of` "free" of what weights and activations leave free, the KV cache's
    own share (TensorRT-LLM's free_gpu_memory_fraction: cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp
    takes the free memory cudaMemGetInfo reports once the engine is loaded, times the fraction).

    `runtime_bytes` is what the engine's process holds beyond the weights, that workspace and the KV cache and
    this plan would otherwise count as the KV cache's: the CUDA context, library workspaces, communicator
    buffers, the allocator's slack, and the memory the driver keeps from what nvidia-smi lists (an H100's
    81,559 MiB are 79.2 GiB to CUDA, vllm PR #10511's logs). It comes off what is left in either case.
    `logits_held`: see `activation_bytes_per_gpu`."""
    if not 0 < utilization <= 1:
        raise SpecError("kv_cache.memory_utilization", "must be in (0, 1]", utilization)
    weight_bytes = weight_bytes_per_gpu(model, quant, parallel) + draft_weight_bytes
    activation_bytes = activation_bytes_per_gpu(model, parallel, max_batched_tokens, max_sequences, logits_held)
    taken_bytes = weight_bytes + activation_bytes + runtime_bytes
    require_choice("kv_cache.memory_utilization_of", utilization_of, MEMORY_SHARES)
    usable_bytes = (taken_bytes + utilization * max(hw.memory_bytes - taken_bytes, 0.0) if utilization_of == "free"
                    else hw.memory_bytes * utilization)
    plan = MemoryPlan(capacity_bytes=hw.memory_bytes, usable_bytes=usable_bytes, weight_bytes=weight_bytes,
                      activation_bytes=activation_bytes,
                      kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, quant, parallel) + draft_kv_bytes_per_token,
                      runtime_bytes=runtime_bytes)
    # what weights, workspace and runtime must fit in: all the memory (TensorRT-LLM's fraction is of what they
    # leave), or the share of it the engine takes
    room_bytes = hw.memory_bytes if utilization_of == "free" else usable_bytes
    if room_bytes - taken_bytes <= 0 or plan.kv_cache_bytes <= 0:
        runtime = f" + the engine's runtime {runtime_bytes / 1e9:.1f} GB" if runtime_bytes else ""
        if runtime_bytes and room_bytes - (taken_bytes - runtime_bytes) > 0:  # it fits but for the runtime
            raise HardwareLimit("kv_cache.runtime_gib", f"leaves no room for a KV cache beside {model.name} on "
                                f"{hw.name} (weights {weight_bytes / 1e9:.1f} GB + activations "
                                f"{activation_bytes / 1e9:.1f} GB of {room_bytes / 1e9:.1f} GB); lower it",
                                runtime_bytes / 2 ** 30)
        if draft_weight_bytes and room_bytes - (taken_bytes - draft_weight_bytes) > 0:  # it fits but for its drafter
            fix = ("pick a smaller drafter (or method: ngram, which has no weights)"
                   if draft_field.startswith("speculative") else "pick a smaller model")
            raise HardwareLimit(draft_field, f"does not fit beside {model.name} on {hw.name}: weights "
                                f"{(weight_bytes - draft_weight_bytes) / 1e9:.1f} GB + its "
                                f"{draft_weight_bytes / 1e9:.1f} GB + activations {activation_bytes / 1e9:.1f} GB{runtime} "
                                f"exceed {room_bytes / 1e9:.1f} GB usable; {fix}", draft_name or None)
        raise HardwareLimit("hardware", f"{model.name} does not fit: weights {plan.weight_bytes / 1e9:.1f} GB + "
                            f"activations {plan.activation_bytes / 1e9:.1f} GB{runtime} exceed {room_bytes / 1e9:.1f} GB "
                            f"usable on {hw.name}; raise tensor or pipeline parallelism, or quantize", hw.name)
    return plan
