"""Hand-worked costs of whole steps (values derived in the comments, not by the code under test)."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import (Parallelism, QuantSpec, SpecError, StepOptions, chunked_prefill_batch,
                               decode_batch, get_hardware, get_model, get_quant, prefill_batch, step_cost)

LLAMA7 = get_model("llama-2-7b")
A100 = get_hardware("a100-sxm-80gb")
GEMMS = ("qkv_proj", "o_proj", "ffn_up", "ffn_down", "lm_head")


def rows(cost):
    out = {}
    for r in cost.rows:
        out.setdefault(r.name, []).append(r)
    return out


def test_decode_at_short_context_costs_about_2_flops_per_parameter():
    # Kaplan et al. 2020, §2.1: C_forward ~ 2 N per token. Embedding lookups do no FLOPs, so the ratio
    # is 2 (N - V d) / N = 2 (6.738e9 - 0.131e9) / 6.738e9 = 1.96 plus a little attention.
    cost = step_cost(LLAMA7, A100, decode_batch([16]))
    assert cost.flops / LLAMA7.num_params() == pytest.approx(2.0, rel=0.03)


def test_decode_at_batch_1_is_memory_bound_and_streams_the_weights():
    cost = step_cost(LLAMA7, A100, decode_batch([16]))
    for name in GEMMS:
        assert all(r.timed.bound == "memory" for r in rows(cost)[name])
    # Every fp16 weight but the embedding table is read once: 13.48e9 - 32000 x 4096 x 2 (unused rows).
    assert cost.weight_bytes == pytest.approx(13.48e9 - 0.262e9, rel=0.01)


def test_decode_batch_1_time_is_weight_bytes_over_effective_bandwidth_in_the_plain_roofline():
    # Plain max(compute, memory) roofline without launch overhead: within a few percent of
    # 13.2e9 B / (2039e9 B/s x memory_efficiency).
    plain = dataclasses.replace(A100, overlap_exponent=50.0, launch_overhead_s=0.0)
    cost = step_cost(LLAMA7, plain, decode_batch([16]))
    floor_s = cost.weight_bytes / (A100.memory_bandwidth_bytes_per_s * A100.memory_efficiency)
    assert cost.time_s == pytest.approx(floor_s, rel=0.04)


def test_calibrated_decode_pays_the_measured_overlap_penalty():
    # Vidur's A100 profile: Llama-2-7B QKV at 1 token takes 65 us for 100.7 MB, 1.3x the datasheet floor;
    # the fitted overlap exponent keeps decode between 1x and 1.2x of the effective-bandwidth floor.
    cost = step_cost(LLAMA7, dataclasses.replace(A100, launch_overhead_s=0.0), decode_batch([16]))
    floor_s = cost.weight_bytes / (A100.memory_bandwidth_bytes_per_s * A100.memory_efficiency)
    assert 1.0 < cost.time_s / floor_s < 1.2


def test_launch_overhead_adds_once_per_kernel():
    base = dataclasses.replace(A100, launch_overhead_s=0.0)
    slow = dataclasses.replace(A100, launch_overhead_s=10e-6)
    a, b = step_cost(LLAMA7, base, decode_batch([16])), step_cost(LLAMA7, slow, decode_batch([16]))
    kernels = sum(r.count for r in a.rows)
    # 12 kernels per layer (2 norms, 4 GEMMs, RoPE, KV write, attention, activation, 2 adds) x 32
    # layers + embedding + final norm + LM head + sampling = 388.
    assert kernels == 12 * 32 + 4
    assert b.time_s - a.time_s == pytest.approx(kernels * 10e-6, rel=1e-9)


def test_prefill_at_2048_tokens_is_compute_bound():
    cost = step_cost(LLAMA7, A100, prefill_batch([2048]))
    for name in ("qkv_proj", "o_proj", "ffn_up", "ffn_down", "attention"):
        assert rows(cost)[name][0].timed.bound == "compute"
    # 2 x 6.47e9 non-embedding layer params x 2048 tokens = 26.5 TFLOP of GEMMs, plus attention.
    gemm_flops = sum(rows(cost)[n][0].flops for n in ("qkv_proj", "o_proj", "ffn_up", "ffn_down"))
    assert gemm_flops == pytest.approx(2 * 32 * 202_383_360 * 2048, rel=1e-3)


def test_flash_attention_off_adds_exactly_the_score_traffic_in_decode():
    # Decode, 8 sequences at 1024 cached tokens: S is 32 heads x 1 x 1025 fp16 per sequence; it is written
    # by QK^T, read and written by softmax, read by PV: 4 x 32 x 1025 x 2 B x 8 seqs per layer.
    batch = decode_batch([1024] * 8)
    on = step_cost(LLAMA7, A100, batch)
    off = step_cost(LLAMA7, A100, batch, StepOptions(flash_attention=False))
    assert off.bytes - on.bytes == pytest.approx(32 * 4 * 32 * 1025 * 2 * 8)
    assert "attention" in rows(on) and {"attn_scores", "attn_softmax", "attn_context"} <= set(rows(off))


def test_flash_attention_rereads_kv_once_per_query_tile():
    # One 512-token prompt, tiles of 128 queries: tile j reads 128 (j+1) keys: 128+256+384+512 = 1280 token
    # rows of K and V (2 x 32 heads x 128 x 2 B = 16 KiB each) instead of 512.
    cost = step_cost(LLAMA7, A100, prefill_batch([512]))
    attention = rows(cost)["attention"][0].timed.op
    assert attention.kv_read_bytes == 1280 * 16384
    assert attention.l2_reread_bytes == (1280 - 512) * 16384


def test_w4a16_cuts_weight_bytes_about_4x_plus_scales():
    fp16 = step_cost(LLAMA7, A100, decode_batch([16]))
    w4 = step_cost(LLAMA7, A100, decode_batch([16]), StepOptions(quant=get_quant("w4a16")))
    gemm_bytes = {name: [sum(r.timed.op.weight_bytes * r.count for r in rows(c)[name])
                         for c in (fp16, w4)] for name in ("qkv_proj", "ffn_up")}
    # 4 bits + (2 B scale + 2 B zero) per 128 weights = 0.5 + 4/128 B per weight vs 2 B: ratio 3.765.
    for before, after in gemm_bytes.values():
        assert before / after == pytest.approx(2 / (0.5 + 4 / 128), rel=1e-6)
    # Less than the 3.8x in bytes: the tile's tensor work and dequantization do not shrink (README gaps).
    gemm_s = [sum(r.time_s for r in c.rows if r.name in GEMMS) for c in (fp16, w4)]
    assert 2.0 < gemm_s[0] / gemm_s[1] < 3.8


def test_w8a8_runs_at_the_int8_peak_and_w4a16_at_fp16_plus_dequant():
    assert get_quant("w8a8").gemm_dtype() == "int8"
    assert get_quant("w4a16").gemm_dtype() == "fp16"
    cost = step_cost(LLAMA7, A100, prefill_batch([2048]), StepOptions(quant=get_quant("w4a16")))
    up = rows(cost)["ffn_up"][0].timed.op
    # Dequantization: 2 FLOPs ((q - z) x s) per weight per 128-row block: 2 x 4096 x 22016 x 16.
    assert up.vector_flops == 2 * 4096 * 22016 * 16
    w8a8 = step_cost(LLAMA7, A100, prefill_batch([2048]), StepOptions(quant=get_quant("w8a8")))
    fp16 = step_cost(LLAMA7, A100, prefill_batch([2048]))
    ratio = rows(fp16)["ffn_up"][0].time_s / rows(w8a8)["ffn_up"][0].time_s
    assert 1.7 < ratio <= 2.0  # 624 vs 312 TOPS, less the fixed costs


def test_llm_int8_runs_outlier_features_as_a_second_fp16_gemm():
    q = QuantSpec(weight_bits=8, act_bits=8, outlier_fraction=0.01)
    cost = step_cost(LLAMA7, A100, prefill_batch([256]), StepOptions(quant=q))
    main, outliers = rows(cost)["ffn_up"][0].timed.op, rows(cost)["ffn_up.outliers"][0].timed.op
    assert (main.gemm.k, outliers.gemm.k) == (4096 - 41, 41)  # round(4096 x 0.01) = 41 fp16 features
    assert (main.dtype, outliers.dtype) == ("int8", "fp16")


def test_gqa_cuts_kv_bytes_by_heads_over_kv_heads():
    mha = get_model("llama-2-7b")
    gqa = dataclasses.replace(mha, name="llama-2-7b-gqa8", num_kv_heads=8)
    kv = [step_cost(m, A100, decode_batch([2048] * 4)).kv_bytes for m in (mha, gqa)]
    assert kv[0] / kv[1] == pytest.approx(32 / 8)


def test_tp2_halves_weight_bytes_and_adds_all_reduces():
    one = step_cost(LLAMA7, A100, decode_batch([512] * 8))
    two = step_cost(LLAMA7, A100, decode_batch([512] * 8), StepOptions(parallel=Parallelism(2)))
    assert two.weight_bytes == pytest.approx(one.weight_bytes / 2, rel=0.005)
    names = rows(two)
    assert names["attn_all_reduce"][0].count == 32 and names["mlp_all_reduce"][0].count == 32
    # Each: 8 tokens x 4096 x 2 B = 64 KiB over 2 A100s on NVSwitch. NCCL picks ring/LL: 6.6 us base + 2
    # steps x 0.6 us, at min(87.7 GB/s, 0.5 x 240) bus = algorithm bandwidth (n = 2), reaching 0.8 of it;
    # plus the 30 us eager call: 30 + 7.8 + 65536 / 70.16e9 s = 38.73 us.
    assert names["attn_all_reduce"][0].timed.time_s == pytest.approx(30e-6 + 7.8e-6 + 65536 / (87.7e9 * 0.8))
    assert "attn_all_reduce" not in rows(one)


def test_pipeline_parallel_splits_layers_and_reports_bubble():
    cost = step_cost(LLAMA7, A100, decode_batch([512] * 8), StepOptions(parallel=Parallelism(1, 4)))
    layer_s = sum(r.timed.time_s for r in cost.rows if r.count == 32)
    assert cost.stage_time_s >= 8 * layer_s
    assert cost.stage_time_s < cost.time_s
    assert cost.pipeline_bubble_fraction(4) == pytest.approx(3 / 7)


def test_chunked_prefill_attends_to_cached_context():
    # A 512-token chunk after 1536 cached tokens scores 512 x 1536 + 512 x 513 / 2 pairs per head.
    cost = step_cost(LLAMA7, A100, chunked_prefill_batch(512, 1536))
    attention = rows(cost)["attention"][0].timed.op
    pairs = 512 * 1536 + 512 * 513 / 2
    assert attention.flops == pytest.approx(4 * 128 * 32 * pairs)
    assert "lm_head" not in rows(cost)  # a mid-prompt chunk samples nothing


def test_ragged_decode_sums_each_sequences_context():
    cost = step_cost(LLAMA7, A100, decode_batch([100, 1000, 3000]))
    attention = rows(cost)["attention"][0].timed.op
    # Keys read: 101 + 1001 + 3001 tokens x 2 x 32 x 128 x 2 B.
    assert attention.kv_read_bytes == (101 + 1001 + 3001) * 2 * 32 * 128 * 2


def test_moe_touches_only_routed_experts():
    mixtral = get_model("mixtral-8x7b")
    one = step_cost(mixtral, A100, decode_batch([64]))
    up = rows(one)["ffn_up"][0].timed.op
    # One token, top-2 of 8: E (1 - (1 - 2/8)^1) = 2 experts, 4096 x 28672 fp16 each.
    assert up.weight_bytes == 2 * 4096 * 28672 * 2


def test_2_4_sparsity_halves_values_and_doubles_the_peak():
    q = get_quant("sparse-2:4")
    # 0.5 x 2 B values + 2-bit index per kept value (0.125 B) = 1.125 B per weight.
    assert q.weight_bytes(4096, 4096) == 4096 * 4096 * 1.125
    dense = step_cost(LLAMA7, A100, prefill_batch([4096]))
    sparse = step_cost(LLAMA7, A100, prefill_batch([4096]), StepOptions(quant=q))
    assert rows(sparse)["ffn_up"][0].time_s < 0.6 * rows(dense)["ffn_up"][0].time_s


def test_impossible_shapes_are_named():
    with pytest.raises(SpecError, match="context: llama-2-7b allows at most 4096"):
        step_cost(LLAMA7, A100, decode_batch([5000]))
    with pytest.raises(SpecError, match="parallelism.tensor_parallel: must divide num_heads=32"):
        step_cost(LLAMA7, A100, decode_batch([16]), StepOptions(parallel=Parallelism(3)))
    with pytest.raises(SpecError, match="batch"):
        decode_batch([])
    with pytest.raises(SpecError, match="fp8"):
        step_cost(LLAMA7, A100, decode_batch([16]), StepOptions(quant=get_quant("fp8")))


def test_softmax_exponentials_run_at_the_special_function_rate_when_the_spec_has_one():
    """One exp per attention score: 8 heads x (1000 x 1001 / 2) causal pairs = 4,004,000 exponentials."""
    import dataclasses

    from infersim.roofline import QuantSpec, get_hardware, ops
    from infersim.roofline.timing import op_compute_s
    hw = get_hardware("a100-sxm-80gb")
    (op,) = ops.attention(np.array([1000]), np.array([0]), 8, 8, 64, QuantSpec(), True, 128, hw.sram_per_sm_bytes)
    assert op.exp_ops == 8 * 1000 * 1001 / 2
    slow_exp = dataclasses.replace(hw, special_function_per_s=1e12)
    extra = op_compute_s(slow_exp, op) - op_compute_s(hw, op)
    # without a rate an exp counts as one vector FLOP; with one, it takes 1 / rate
    expected = op.exp_ops * (1 / 1e12 - 1 / hw.vector_flops_per_s) / hw.compute_efficiency
    assert extra == pytest.approx(expected, rel=1e-9)


def test_nvfp4_decode_on_b200_reads_a_quarter_of_the_fp16_layer_weights_plus_scales():
    # Llama-3.1-8B's 32 layers hold 4096 x (6144 + 4096 + 28672) + 14336 x 4096 = 218,103,808 linear weights
    # each: 6,979,321,856 in all, at 2 B in fp16 and 0.5 + 1/16 B in NVFP4 (0.28125 = 1/4 + 1/32 of fp16).
    # Norms, embedding rows and the LM head stay fp16, so they cancel in the difference.
    model, b200, batch = get_model("llama-3.1-8b"), get_hardware("b200"), decode_batch([1024] * 8)
    fp16 = step_cost(model, b200, batch)
    nvfp4 = step_cost(model, b200, batch, StepOptions(quant=get_quant("nvfp4")))
    layer_weights = 32 * (4096 * (6144 + 4096 + 28672) + 14336 * 4096)
    assert fp16.weight_bytes - nvfp4.weight_bytes == layer_weights * (2 - 0.5625)
    assert nvfp4.time_s < fp16.time_s


def test_fp4_prefill_gemms_on_b200_run_nearly_twice_as_fast_as_fp8():
    # HGX B200: 9 PFLOPS dense fp4 against 4.5 fp8, NVFP4 sustaining 0.95 of the share fp8 does (cuBLAS on a
    # B200): 2 x 0.95 = 1.9x; an 8192-token prefill's GEMMs are compute-bound.
    model, b200, batch = get_model("llama-3.1-8b"), get_hardware("b200"), prefill_batch([8192])
    fp8 = rows(step_cost(model, b200, batch, StepOptions(quant=get_quant("fp8"))))["ffn_up"][0].timed
    fp4 = rows(step_cost(model, b200, batch, StepOptions(quant=get_quant("nvfp4"))))["ffn_up"][0].timed
    assert fp4.bound == fp8.bound == "compute"
    assert fp8.compute_s / fp4.compute_s == pytest.approx(2 * 0.95, rel=1e-9)
    assert 1.8 < fp8.time_s / fp4.time_s < 2 * 0.95  # the smoother roofline adds the (smaller) memory time


def test_fp4_presets_on_a_gpu_without_fp4_name_the_dtype():
    with pytest.raises(SpecError, match="^quantization: h100-sxm has no fp4 tensor-core peak"):
        step_cost(LLAMA7, get_hardware("h100-sxm"), decode_batch([16]), StepOptions(quant=get_quant("mxfp4")))
