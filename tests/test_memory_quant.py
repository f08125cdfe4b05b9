import pytest

from infersim.roofline import (Parallelism, QuantSpec, SpecError, get_hardware, get_model, get_quant, plan_memory,
                               weight_bytes_per_gpu)
from infersim.roofline.errors import HardwareLimit

LLAMA7 = get_model("llama-2-7b")
A100 = get_hardware("a100-sxm-80gb")


def test_llama2_7b_fp16_weights_are_13_5_gb():
    assert weight_bytes_per_gpu(LLAMA7, QuantSpec(), Parallelism()) == 6_738_415_616 * 2


def test_memory_plan_of_llama2_7b_on_a100_80gb():
    plan = plan_memory(LLAMA7, A100)
    # Workspace: the forward, 8192 tokens x (22016 + 11008 + 2 x 4096) x 2 B = 675,282,944 B, outweighs the
    # sampler, 256 seqs x 32000 x 38.9 B = 318,668,800 B, which runs after it.
    assert plan.activation_bytes == 8192 * 41216 * 2
    # KV: (0.9 x 80 GiB (85,899,345,920 B) - 13,476,831,232 - 675,282,944) / 524,288 B per token = 120,462
    # tokens (vLLM logs ~7,500 16-token blocks for this model and GPU)
    assert plan.max_kv_tokens == 120_462
    assert plan.max_batch(4096) == 29


def test_a_tensorrt_engine_holds_its_activations_and_logits_at_once():
    # Allocated together when the engine loads: 8192 tokens x (22016 + 11008 + 2 x 4096) x 2 B + 256 seqs x
    # 32000 x (2 + 3 x 4) B = 789,970,944 B; KV (0.9 x 80 GiB - 13,476,831,232 - 789,970,944) / 524,288 B =
    # 120,244 tokens
    plan = plan_memory(LLAMA7, A100, logits_held=True)
    assert plan.activation_bytes == 8192 * 41216 * 2 + 256 * 32000 * 14 == 789_970_944
    assert plan.max_kv_tokens == 120_244


def test_vllm_0_11s_startup_pass_on_an_h100_as_llm_d_logged_it():
    """llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md: vLLM 0.11 on one H100 (79.18 GiB
    to CUDA), gpu_memory_utilization 0.9, 1,024 sequences and 8,192 tokens in its startup pass. Llama-3.1-8B:
    weights 14.99 GiB, torch peak 4.76 GiB, non-torch 0.13 GiB, KV cache 51.38 GiB; Llama-3.3-70B-FP8 at TP 2:
    torch peak 4.84 GiB."""
    h100 = get_hardware("h100-sxm")
    plan = plan_memory(get_model("llama-3.1-8b"), h100, utilization=0.9, max_batched_tokens=8192, max_sequences=1024)
    # the sampler's 1024 x 128,256 x 38.9 B = 5,108,898,202 B = 4.758 GiB (the figure the constant was read from)
    assert plan.activation_bytes / 2 ** 30 == pytest.approx(4.76, abs=0.005)
    # KV: 0.9 x 79.65 GiB - 14.96 - 4.76 = 51.96 GiB against the logged 51.38: the plan counts nvidia-smi's 79.65
    # GiB where vLLM sees CUDA's 79.18 (0.42 GiB of the 0.9) and holds no non-torch 0.13 GiB back
    assert plan.kv_cache_bytes / 2 ** 30 == pytest.approx(51.38, rel=0.012)
    # the 70B at TP 2 samples the whole vocabulary on each rank: the same 4.76 GiB against the logged 4.84
    tp2 = plan_memory(get_model("llama-3.1-70b"), h100, get_quant("fp8"), Parallelism(2), utilization=0.9,
                      max_batched_tokens=8192, max_sequences=1024)
    assert tp2.activation_bytes / 2 ** 30 == pytest.approx(4.84, rel=0.02)


def test_tp2_halves_weights_and_kv_per_gpu():
    one = plan_memory(LLAMA7, A100)
    two = plan_memory(LLAMA7, A100, parallel=Parallelism(2))
    assert two.weight_bytes == pytest.approx(one.weight_bytes / 2, rel=1e-4)
    assert two.kv_bytes_per_token == one.kv_bytes_per_token / 2


def test_70b_does_not_fit_one_a100_and_says_so():
    with pytest.raises(SpecError, match="does not fit.*raise tensor or pipeline parallelism, or quantize"):
        plan_memory(get_model("llama-2-70b"), A100)
    assert plan_memory(get_model("llama-2-70b"), A100, parallel=Parallelism(4)).max_kv_tokens > 0


def test_kv_bits_scale_kv_bytes():
    # 8-bit: 1 B per element; 4-bit: 0.5 B + (2 B scale + 2 B zero) per 128-element head = 0.53125 B.
    assert get_quant("fp16", kv_bits=8).kv_bytes_per_element(128) == 1.0
    assert get_quant("fp16", kv_bits=4).kv_bytes_per_element(128) == 0.5 + 4 / 128


def test_group_per_channel_and_per_tensor_scales():
    k, n = 4096, 4096
    assert QuantSpec(weight_bits=8).weight_bytes(k, n) == k * n + 2 * n  # one fp16 scale per output channel
    assert QuantSpec(weight_bits=8, weight_granularity="tensor").weight_bytes(k, n) == k * n + 2
    asym_g128 = QuantSpec(weight_bits=4, weight_granularity="group", weight_symmetric=False)
    assert asym_g128.weight_bytes(k, n) == k * n / 2 + (k // 128) * n * 4


def test_nvfp4_and_mxfp4_store_half_a_byte_per_weight_plus_one_byte_scale_per_block():
    k, n = 4096, 4096
    # NVFP4: 4-bit E2M1 values + one FP8 E4M3 scale per 16 along K: 4096 x 4096 / 2 + 256 x 4096 x 1 B
    assert get_quant("nvfp4").weight_bytes(k, n) == 8_388_608 + 1_048_576 == k * n * (0.5 + 1 / 16)
    # MXFP4: + one E8M0 scale per 32: 4096 x 4096 / 2 + 128 x 4096 x 1 B
    assert get_quant("mxfp4").weight_bytes(k, n) == 8_388_608 + 524_288 == k * n * (0.5 + 1 / 32)
    # activations carry the same block scales; the KV cache stays fp8
    assert get_quant("nvfp4").act_bytes_per_element() == 0.5625
    assert get_quant("mxfp4").kv_bytes_per_element(128) == 1.0


def test_fp4_presets_run_at_the_fp4_peak_without_dequantizing():
    for name in ("nvfp4", "mxfp4"):
        assert get_quant(name).gemm_dtype() == "fp4" and get_quant(name).dequant_flops_per_weight() == 0


def test_unstructured_sparsity_stores_kept_values_and_a_bitmap():
    q = QuantSpec(sparsity=0.5, sparsity_pattern="unstructured")
    assert q.weight_bytes(1024, 1024) == 1024 * 1024 * (0.5 * 2 + 1 / 8)


def test_naive_w8a8_is_flagged_and_smoothed_is_not():
    assert get_quant("w8a8-naive").accuracy_notes()
    assert not get_quant("w8a8").accuracy_notes()


@pytest.mark.parametrize("kwargs,field", [
    ({"weight_bits": 5}, "weight_bits"), ({"act_bits": 4}, "act_bits"), ({"kv_bits": 2}, "kv_bits"),
    ({"act_bits": 8}, "act_bits"), ({"outlier_fraction": 0.1}, "outlier_fraction"),
    ({"weight_bits": 4, "weight_granularity": "group", "act_bits": 4}, "act_bits"),  # int4 weights: not FP4
    ({"scale_bytes": 4}, "scale_bytes"),
    ({"sparsity": 0.3, "sparsity_pattern": "2:4"}, "sparsity"),
])
def test_bad_quant_settings_name_the_field(kwargs, field):
    with pytest.raises(SpecError, match=f"quantization.{field}"):
        QuantSpec(**kwargs)


def test_tensorrt_llms_fraction_is_of_the_memory_weights_and_workspace_leave():
    # free_gpu_memory_fraction 0.9 of (80 GiB - 13,476,831,232 weights - 675,282,944 workspace) =
    # 64,572,508,569.6 B of KV; / 524,288 B per token = 123,162 tokens (vLLM's 0.9 of all: 120,462)
    plan = plan_memory(LLAMA7, A100, utilization=0.9, utilization_of="free")
    assert plan.kv_cache_bytes == pytest.approx(64_572_508_569.6)
    assert plan.max_kv_tokens == 123_162


def test_the_engines_runtime_comes_off_what_either_share_leaves():
    # 2 GiB = 2,147,483,648 B held by the runtime: vLLM's share loses all of it (0.9 x 80 GiB - 13,476,831,232 -
    # 675,282,944 - 2,147,483,648 = 61,009,813,504 B), TensorRT-LLM's free share 0.9 of it (64,572,508,569.6 -
    # 1,932,735,283.2 = 62,639,773,286.4 B)
    total = plan_memory(LLAMA7, A100, utilization=0.9, runtime_bytes=2 * 2 ** 30)
    free = plan_memory(LLAMA7, A100, utilization=0.9, utilization_of="free", runtime_bytes=2 * 2 ** 30)
    assert total.kv_cache_bytes == pytest.approx(61_009_813_504)
    assert free.kv_cache_bytes == pytest.approx(62_639_773_286.4)
    # a runtime that leaves the KV cache nothing is named as the cause
    with pytest.raises(HardwareLimit, match=r"kv_cache.runtime_gib: leaves no room for a KV cache beside llama-2-7b"):
        plan_memory(LLAMA7, A100, runtime_bytes=80 * 2 ** 30)
    # a model that does not fit under a free share is the model's fault, whatever the runtime (Llama-2-70B's
    # 138 GB of fp16 weights on one 80 GB A100), with no KV cache of a few bytes left over from rounding
    with pytest.raises(HardwareLimit, match=r"llama-2-70b does not fit: weights 138.0 GB"):
        plan_memory(get_model("llama-2-70b"), A100, utilization_of="free", runtime_bytes=3 * 2 ** 30)


def test_kv_projections_are_replicated_where_tp_exceeds_the_kv_heads():
    # Llama-3.1-8B (32 layers, d 4096, 32 query and 8 KV heads of 128, FFN 14336, vocabulary 128256, untied) on
    # 16 GPUs: each holds 2 query heads and a whole KV head (replicated), so per layer in fp16
    #   QKV 4096 x (256 + 2 x 128) x 2 = 4,194,304; O 256 x 4096 x 2 = 2,097,152;
    #   gate+up 4096 x 1792 x 2 = 14,680,064; down 896 x 4096 x 2 = 7,340,032; two norms 2 x 4096 x 2 = 16,384
    # = 28,327,936 x 32 layers = 906,493,952; embedding and LM head 8,016 x 4096 x 2 each = 131,334,144;
    # the final norm 8,192. Splitting K and V 16 ways would have held 32 MiB less.
    model = get_model("llama-3.1-8b")
    assert weight_bytes_per_gpu(model, QuantSpec(), Parallelism(16)) == 906_493_952 + 131_334_144 + 8_192
