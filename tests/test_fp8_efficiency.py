"""FP8 on Hopper: GEMMs and attention at the fp8 peak with fp8's own share of compute_efficiency, the fp8
preset's bytes and dtypes, and the hardware field that carries the share (issue 12)."""
import dataclasses

import pytest

from infersim.roofline import SpecError, get_hardware, get_quant
from infersim.roofline.hardware import hardware_from_dict, load_hardware_yaml
from infersim.roofline.ops import attention, flash_attention_rates, linear
from infersim.roofline.quant import QuantSpec
from infersim.roofline.timing import gemm_tensor_time_s, op_compute_s

H100 = get_hardware("h100-sxm")
H100_NO_TILES = dataclasses.replace(H100, gemm_tiles=())  # FLOPs / (peak x efficiencies), no tile quantization


def test_hopper_parts_run_fp8_at_seven_eighths_of_fp16s_share_and_others_at_fp16s():
    # cuBLAS 12.9 (NVIDIA blog, 2025): Hopper FP8 matmuls up to 1.75x BF16 on large shapes, of a 2x peak: 0.875.
    for name in ("h100-sxm", "h100-pcie", "h200", "gh200"):
        assert get_hardware(name).dtype_efficiency_of("fp8") == 0.875
    for name in ("h20", "l40s", "mi300x"):
        assert get_hardware(name).dtype_efficiency_of("fp8") == 1.0
    assert H100.dtype_efficiency_of("fp16") == H100.dtype_efficiency_of("bf16") == 1.0


def test_blackwell_parts_run_at_the_shares_cublas_measures_on_a_b200():
    # cuBLAS on a B200 (pytorch/ao PR #2427): bf16 at 0.631 / 0.646 / 0.672 of its peak at 8192^3 / 6144^3 /
    # 3072^3 -> 0.65; NVFP4 at 0.597 / 0.611 at 8192^3 / 6144^3, 0.597 / 0.631 = 0.611 / 0.646 = 0.946 of bf16's
    # share -> 0.95; MXFP8 at 8192^3 0.633 (triton-lang/triton PR #9044), bf16's share -> fp8 keeps it
    for name in ("b200", "gb200", "b300"):
        hw = get_hardware(name)
        assert hw.compute_efficiency == 0.65
        assert (hw.dtype_efficiency_of("fp8"), hw.dtype_efficiency_of("fp4")) == (1.0, 0.95)
    # 8192 x 8192 x 8192 in NVFP4 on a B200 without tiles: 1,099,511,627,776 FLOPs / (9,000 x 0.65 x 0.95 =
    # 5,557.5 TFLOP/s) = 0.197843 ms
    b200 = dataclasses.replace(get_hardware("b200"), gemm_tiles=())
    fp4_gemm = linear("ffn", 8192, 8192, 8192, get_quant("nvfp4"))[0]
    assert op_compute_s(b200, fp4_gemm) == pytest.approx(0.197843e-3, rel=1e-5)


def test_an_fp8_gemm_takes_its_flops_over_the_fp8_peak_times_both_efficiencies():
    # 8192 x 8192 x 8192: 2 x 8192^3 = 1,099,511,627,776 FLOPs. fp8: 1978.9 TFLOP/s x 0.76 x 0.875 = 1315.969
    # TFLOP/s -> 0.835515 ms; fp16: 989.4 x 0.76 = 751.944 TFLOP/s -> 1.462225 ms; 1.75x apart (the
    # datasheet's fp8 peak is 2.0001x its fp16 one).
    fp8_s = op_compute_s(H100_NO_TILES, linear("ffn", 8192, 8192, 8192, get_quant("fp8"))[0])
    fp16_s = op_compute_s(H100_NO_TILES, linear("ffn", 8192, 8192, 8192, get_quant("fp16"))[0])
    assert fp8_s == pytest.approx(0.835515e-3, rel=1e-6)
    assert fp16_s == pytest.approx(1.462225e-3, rel=1e-6)
    assert fp16_s / fp8_s == pytest.approx(1.75, rel=1e-4)


def test_fp8_activations_halve_the_l2_traffic_that_can_bind_a_prefill_tile():
    # One 128 x 256 tile per SM (m = 256, n = 66 x 256 = 16,896, k = 4096: 2 rows x 66 columns = 132 tiles,
    # one wave), operands multicast over clusters of 2 (two rows, so the weight tile can be shared). Tensor
    # side: 2 x 128 x 256 x 4096 = 268,435,456 FLOPs at 1978.9e12 x 0.76 x 0.875 / 132 SMs = 9.96946 TFLOP/s per
    # SM -> 26.9258 us. L2 side per k step, at 7.5e12 / 132 B/s per SM: fp8 activations (1 B) read
    # min(128 / 2 + 256, 128 + 256 / 2) = 256 B -> 4096 x 256 B = 18.4549 us, so the tile is compute-bound; at
    # 2 B they would read min(256 / 2 + 256, 256 + 256 / 2) = 384 B -> 27.6824 us, L2-bound.
    one_tile = dataclasses.replace(H100, gemm_tiles=((128, 256),), gemm_split_k=(1,))
    [op] = linear("ffn_up", 256, 4096, 16896, get_quant("fp8"))
    assert op.gemm.a_bytes == 1.0
    assert op_compute_s(one_tile, op) == pytest.approx(26.9258e-6, rel=1e-5)
    fp8_peak = H100.peak("fp8") * 0.875
    assert gemm_tensor_time_s(one_tile, 256, 16896, 4096, 1, 1.0, peak_flops_per_s=fp8_peak,
                              a_bytes=2.0) == pytest.approx(27.6824e-6, rel=1e-5)


def test_a_decode_gemm_multicasts_only_its_activations():
    # m = 8 (one row of 128 x 256 tiles), n = 132 x 256 = 33,792, k = 4096, fp16: the weight tile has no other
    # row to share it with, so a cluster of 2 shares the activation tile: 128 x 2 / 2 + 256 x 2 = 640 B per k
    # step -> 4096 x 640 B / (7.5e12 / 132 B/s) = 46.1373 us (the tensor side, 2 x 128 x 256 x 4096 at a
    # burst's 989.4e12 x 0.89 / 132 per SM, is 40.2394 us). Sharing the weights would have read 128 x 2 + 256 =
    # 512 B (36.9098 us), less than one read of each weight byte.
    one_tile = dataclasses.replace(H100, gemm_tiles=((128, 256),), gemm_split_k=(1,), compute_efficiency=0.89)
    assert gemm_tensor_time_s(one_tile, 8, 33792, 4096, 1, 2.0, peak_flops_per_s=H100.peak("fp16")) == \
        pytest.approx(46.1373e-6, rel=1e-5)


def test_a_yaml_share_of_one_gives_fp8_gemms_twice_the_fp16_rate(tmp_path):
    data = {**H100_NO_TILES.to_dict(), "dtype_efficiency": {"fp8": 1.0}}
    path = tmp_path / "h100-fp8.yaml"
    path.write_text(dataclasses.replace(H100_NO_TILES, dtype_efficiency={"fp8": 1.0}).to_yaml())
    for spec in (hardware_from_dict(data, "h100-fp8.yaml"), load_hardware_yaml(path)):
        assert spec.dtype_efficiency == {"fp8": 1.0}
        # 1,099,511,627,776 FLOPs / (1978.9 x 0.76 = 1503.964 TFLOP/s) = 0.731076 ms: half fp16's 1.462225
        assert op_compute_s(spec, linear("ffn", 8192, 8192, 8192, get_quant("fp8"))[0]) == pytest.approx(
            0.731076e-3, rel=1e-6)


def test_the_ridge_point_moves_with_fp8s_share():
    # (1978.9e12 x 0.76 x 0.875) / (3350e9 x 0.91) = 1315.969e12 / 3048.5e9 = 431.677 FLOP/B
    assert H100.ridge_point_flops_per_byte("fp8") == pytest.approx(431.677, rel=1e-6)


def test_fp8_attention_runs_qk_and_pv_at_the_fp8_peak():
    # Llama-3.1-8B layer: 32 heads x 128: a causal pair costs 4 x 128 x 32 = 16,384 tensor FLOPs, 4 x 32 = 128
    # vector FLOPs and 32 exponentials (timed at the vector rate, 67 TFLOP/s, on the H100):
    # 16384 / 1315.969e12 + (128 + 32) / (67e12 x 0.76) = 1.245015e-11 + 3.142184e-12 = 1.559233e-11 s.
    pair = flash_attention_rates(32, 8, 128, get_quant("fp8")).per_pair
    assert pair.dtype == "fp8"
    assert op_compute_s(H100, pair) == pytest.approx(1.559233e-11, rel=1e-6)
    [op] = attention([2048], [0], 32, 8, 128, get_quant("fp8"), True, 128, 228 * 1024)
    assert op.dtype == "fp8"


def test_the_fp8_preset_stores_one_byte_per_weight_activation_and_kv_element_with_per_tensor_scales():
    fp8 = get_quant("fp8")
    assert (fp8.gemm_dtype(), fp8.attention_dtype) == ("fp8", "fp8")
    # 4096 x 4096 weights at 1 B + one 2 B fp16 scale for the tensor
    assert fp8.weight_bytes(4096, 4096) == 16_777_218
    assert (fp8.act_bytes_per_element(), fp8.kv_bytes_per_element(128)) == (1.0, 1.0)
    # 100 tokens into a 4096 -> 1024 projection: reads 100 x 4096 x 1 B, writes 100 x 1024 x 2 B (bf16 out)
    [op] = linear("o_proj", 100, 4096, 1024, fp8)
    assert (op.act_read_bytes, op.act_write_bytes, op.weight_bytes) == (409_600, 204_800, 4_194_306)


def test_fp4_presets_keep_an_fp8_kv_cache_and_fp8_attention():
    for name in ("nvfp4", "mxfp4"):
        spec = get_quant(name)
        assert (spec.gemm_dtype(), spec.kv_bits, spec.attention_dtype) == ("fp4", 8, "fp8")


def test_a_non_fp8_kv_cache_turns_attention_back_to_fp16():
    assert get_quant("fp8", kv_bits=16).attention_dtype == "fp16"
    assert get_quant("fp8", kv_bits=8).attention_dtype == "fp8"


def test_fp8_attention_without_an_fp8_kv_cache_is_refused():
    with pytest.raises(SpecError, match=r"^quantization.attention_dtype: fp8 attention reads an FP8 KV cache "
                                        r"\(kv_bits 8\), got 'fp8'$"):
        QuantSpec(attention_dtype="fp8")
    with pytest.raises(SpecError, match=r"^quantization.attention_dtype: must be one of"):
        QuantSpec(kv_bits=8, attention_dtype="fp4")


@pytest.mark.parametrize("share, message", [
    ({"fp8": 1.4}, "h100-sxm.dtype_efficiency.fp8: must be > 0 and at most 1 / compute_efficiency (1.32): the "
                   "dtype's share of its peak is compute_efficiency x this, got 1.4"),
    ({"bf16": 0.9}, "h100-sxm.dtype_efficiency.bf16: fp16 (bf16) is the reference: its efficiency is "
                    "compute_efficiency"),
    ({"fp4": 0.5}, "h100-sxm.dtype_efficiency.fp4: names a dtype without a peak here; peaks: fp16, fp32, fp8, "
                   "int8, tf32, got 'fp4'"),
    ({"fp8": "fast"}, "h100-sxm.dtype_efficiency.fp8: must be > 0 and at most 1 / compute_efficiency (1.32): "
                      "the dtype's share of its peak is compute_efficiency x this, got 'fast'"),
])
def test_a_bad_dtype_share_is_one_line_naming_the_field_and_value(share, message):
    with pytest.raises(SpecError) as err:
        dataclasses.replace(H100, dtype_efficiency=share)
    assert str(err.value) == message


@pytest.mark.parametrize("share, message", [
    ({"fp8": 1.5}, "h100.yaml: h100-sxm.dtype_efficiency.fp8: must be > 0 and at most 1 / compute_efficiency "
                   "(1.32): the dtype's share of its peak is compute_efficiency x this, got 1.5"),
    ({"fp9": 0.5}, "h100.yaml: dtype_efficiency.fp9: unknown dtype; allowed: fp32, tf32, fp16, bf16, fp8, fp4, "
                   "int8, int4"),
    ({"fp8": 0}, "h100.yaml: dtype_efficiency.fp8: must be a finite number from 0.01 to 100, got 0"),
    (0.9, "h100.yaml: dtype_efficiency: must be a mapping of dtype to a share of compute_efficiency, e.g. "
          "{fp8: 0.875}, got 0.9"),
])
def test_a_bad_dtype_share_in_a_hardware_file_names_the_file(share, message):
    with pytest.raises(SpecError) as err:
        hardware_from_dict({**H100.to_dict(), "dtype_efficiency": share}, "h100.yaml")
    assert str(err.value) == message
