"""A kernel that occupies few SMs draws only their bandwidth: each SM keeps so many bytes in flight, and
Little's law turns that over the DRAM latency into the bandwidth it can draw (roofline/timing.py)."""
import dataclasses

import numpy as np
import pytest
import yaml

from infersim.roofline import SpecError, get_hardware
from infersim.roofline.ops import decode_attention_affine, linear
from infersim.roofline.quant import QuantSpec
from infersim.roofline.timing import gemm_tensor_time_s, gemm_tiling, op_memory_s

H100 = get_hardware("h100-sxm")
# One tile shape so that the chosen plan can be worked by hand; 50 GB/s per SM, a round figure.
ONE_TILE = dataclasses.replace(H100, gemm_tiles=((16, 128),), sm_dram_bandwidth_bytes_per_s=50e9)
CHIP_BW = 3350e9 * 0.91  # the H100 SXM's datasheet bandwidth x its memory efficiency: 3.0485e12 B/s


def gemm_op(tokens, in_features, out_features):
    (op,) = linear("proj", tokens, in_features, out_features, QuantSpec())
    return op


def test_a_decode_gemm_on_16_sms_reaches_their_bandwidth_not_the_chips():
    # A 70B k projection on one of 4 GPUs at one token: (1 x 8192)(8192 x 256). Tiles of 16 x 128: 1 x 2
    # tiles; split-K 1, 2, 4, 8 all run in one wave, so split 8 (k/8 per block) is fastest: 16 blocks.
    # Bytes: 8192 x 256 x 2 weights + 8192 x 2 read + 256 x 2 written = 4,211,200. 16 SMs x 50 GB/s =
    # 800 GB/s, below the chip's 3.0485 TB/s: 4,211,200 / 800e9 = 5.264 us (the chip alone: 1.381 us).
    op = gemm_op(1, 8192, 256)
    assert float(gemm_tiling(ONE_TILE, 1, 256, 8192, 1, peak_flops_per_s=H100.peak("fp16")).thread_blocks) == 16
    assert float(op_memory_s(ONE_TILE, op)) == pytest.approx(4_211_200 / 800e9)


def test_a_gemm_filling_the_gpu_keeps_the_chip_bandwidth():
    # An 8B o projection at one token: 1 x 32 tiles x split 8 = 256 blocks over 132 SMs, 132 x 50 GB/s =
    # 6.6 TB/s > 3.0485 TB/s. Bytes 4096 x 4096 x 2 + 4096 x 2 + 4096 x 2 = 33,570,816: 11.012 us.
    assert float(op_memory_s(ONE_TILE, gemm_op(1, 4096, 4096))) == pytest.approx(33_570_816 / CHIP_BW)


def test_bandwidth_grows_with_the_sms_occupied_until_the_chip_caps_it():
    # One tile, no split-K: n = 128 j columns run j blocks. k = 4096; bytes = 4096 x 128 j x 2 + 4096 x 2
    # + 128 j x 2 = 1,048,576 j + 8,192 + 256 j. Bandwidth min(3.0485e12, 50e9 j): j = 1 -> 50 GB/s, 10 ->
    # 500 GB/s, 60 -> 3.0 TB/s, 61 and beyond -> the chip (61 x 50e9 = 3.05e12 > 3.0485e12).
    hw = dataclasses.replace(ONE_TILE, gemm_split_k=(1,))
    blocks = np.array([1, 10, 60, 61, 132, 200])
    (op,) = linear("proj", 1, 4096, 128 * blocks, QuantSpec())
    bytes_ = 1_048_576 * blocks + 8_192 + 256 * blocks
    bandwidth = np.array([50e9, 500e9, 3000e9, CHIP_BW, CHIP_BW, CHIP_BW])
    np.testing.assert_allclose(op_memory_s(hw, op), bytes_ / bandwidth, rtol=1e-12)


def test_equally_fast_tilings_count_the_one_with_more_thread_blocks():
    # A 70B qkv projection on 4 GPUs at one token: n = 2048 + 2 x 256 = 2560, 20 tiles of 16 x 128. Split 4:
    # 80 blocks in one wave of k/4; split 8: 160 blocks, two waves of k/8, the same time. The library may
    # launch either; the one with more blocks fills the 132 SMs.
    tiling = gemm_tiling(ONE_TILE, 1, 2560, 8192, 1, peak_flops_per_s=H100.peak("fp16"))
    assert float(tiling.thread_blocks) == 160
    assert float(tiling.tensor_s) == float(gemm_tensor_time_s(ONE_TILE, 1, 2560, 8192, 1,
                                                              peak_flops_per_s=H100.peak("fp16")))


def test_without_a_per_sm_figure_every_kernel_may_reach_the_chip_bandwidth():
    unbounded = dataclasses.replace(ONE_TILE, sm_dram_bandwidth_bytes_per_s=None)
    assert float(op_memory_s(unbounded, gemm_op(1, 8192, 256))) == pytest.approx(4_211_200 / CHIP_BW)


def test_flash_attention_memory_stays_affine_in_the_keys_read():
    # Decode attention is costed as fixed + K x per_key (roofline/latency.py): its memory seconds must not
    # depend on SM occupancy. Per key read: K and V, 2 x 8 heads x 128 x 2 B = 4,096 B at the chip's rate.
    _, per_key = decode_attention_affine(4, 64, 8, 128, QuantSpec())
    assert float(op_memory_s(ONE_TILE, per_key)) == pytest.approx(4096 / CHIP_BW)


def test_registry_figures_follow_littles_law():
    # 2048 threads x 16 B = 32,768 B in flight per SM over 650 ns (A100), 610 ns (GH100), 550 ns (H200).
    assert get_hardware("a100-sxm-80gb").sm_dram_bandwidth_bytes_per_s == pytest.approx(50.41e9, rel=1e-3)
    assert H100.sm_dram_bandwidth_bytes_per_s == pytest.approx(53.72e9, rel=1e-3)
    assert get_hardware("h200").sm_dram_bandwidth_bytes_per_s == pytest.approx(59.58e9, rel=1e-3)
    assert get_hardware("b200").sm_dram_bandwidth_bytes_per_s is None


def write(tmp_path, value):
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump({**H100.to_dict(), "sm_dram_bandwidth_bytes_per_s": value}))
    return str(path)


def test_a_hardware_file_sets_or_unsets_the_per_sm_bandwidth(tmp_path):
    assert get_hardware(write(tmp_path, 40e9)).sm_dram_bandwidth_bytes_per_s == 40e9
    assert get_hardware(write(tmp_path, None)).sm_dram_bandwidth_bytes_per_s is None


@pytest.mark.parametrize("value,shown", [(0, "0"), (-5e10, "-50000000000.0"), ("fast", "'fast'")])
def test_a_bad_per_sm_bandwidth_names_the_field(tmp_path, value, shown):
    with pytest.raises(SpecError, match=r"^hw.yaml: sm_dram_bandwidth_bytes_per_s: must be a finite number "
                                        rf"from 1,000,000 to 1e\+18, got {shown}$"):
        get_hardware(write(tmp_path, value))
