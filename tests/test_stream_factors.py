"""Vector kernels stream at their own share of DRAM bandwidth (ops.STREAM_SHARES): the residual add near all
of it, the embedding gather at a seventh, RMSNorm at a third; a fused kernel moves each op's bytes at its
share; unmeasured kernels at the hardware's typical vector efficiency."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import get_hardware, get_model, ops
from infersim.roofline.profile import compare, read_profile
from infersim.roofline.step import StepOptions, dense_layer_ops
from infersim.roofline.timing import op_memory_s

A100 = get_hardware("a100-sxm-80gb")  # 2,039 GB/s; a typical vector kernel streams at 0.46 of it
PROFILES = {"llama-2-7b": "Llama-2-7b-hf_linear_ops.csv", "llama-3-8b": "Meta-Llama-3-8B_linear_ops.csv",
            "llama-2-70b": "Llama-2-70b-hf_linear_ops.csv"}


def test_a_residual_add_streams_near_the_whole_dram_bandwidth():
    # 1,000 tokens x 2,000 wide: two fp16 tensors read and one written, 12 MB, at 0.96 of 2,039 GB/s
    # (1,957.44 GB/s): 6.130 us
    add = ops.residual_add(1000, 2000)
    assert add.bytes == 12e6
    assert float(op_memory_s(A100, add)) == pytest.approx(12e6 / 1957.44e9, rel=1e-9)


def test_an_embedding_gather_streams_at_a_seventh_of_it():
    # 1,000 rows of 4,096 fp16 values read and written (16.384 MB) and 1,000 4-byte ids (4 kB) at 0.15 of
    # 2,039 GB/s (305.85 GB/s): 53.58 us
    emb = ops.embedding(1000, 4096)
    assert float(op_memory_s(A100, emb)) == pytest.approx(16.388e6 / 305.85e9, rel=1e-9)


def test_an_unmeasured_vector_kernel_streams_at_the_hardware_typical_share():
    # RoPE carries no share of its own: 0.46 of 2,039 GB/s (937.94 GB/s), and a hardware spec's own figure
    # moves it (a calibrated GPU's), not the measured kernels
    copy = ops.elementwise("copy", 1e6, 1, 1, 0)
    assert float(op_memory_s(A100, copy)) == pytest.approx(4e6 / 937.94e9, rel=1e-9)
    faster = dataclasses.replace(A100, vector_bandwidth_efficiency=0.9)
    assert float(op_memory_s(faster, copy)) == pytest.approx(4e6 / (0.9 * 2039e9), rel=1e-9)
    add = ops.residual_add(1000, 2000)
    assert float(op_memory_s(faster, add)) == float(op_memory_s(A100, add))


def test_a_fused_add_and_norm_moves_each_op_bytes_at_its_own_share():
    # add: 3 tensors of E bytes at 0.96; norm: reads E (the sum, no longer read back) and writes E, plus its
    # 2d weight bytes, at 0.35; the kernel's share = (3E + E + 2d) / (3E / 0.96 + (E + 2d) / 0.35)
    model = get_model("llama-2-7b")
    before, _ = dense_layer_ops(model, 4096, StepOptions(fusions=frozenset({"add_norm"})))
    (fused,) = [op for op in before if op.name == "add_input_norm"]
    e, w = 4096 * 4096 * 2, 4096 * 2
    assert fused.dram_share == pytest.approx((4 * e + w) / (3 * e / 0.96 + (e + w) / 0.35), rel=1e-12)
    # less time than the two kernels apart: the sum is neither written twice nor read back
    add, norm = ops.residual_add(4096, 4096), ops.norm("input_norm", 4096, 4096, "rmsnorm")
    assert float(op_memory_s(A100, fused)) < float(op_memory_s(A100, add)) + float(op_memory_s(A100, norm))


def test_a_fused_share_follows_each_instance_bytes_and_survives_zero_tokens():
    # vectorised over token counts (the simulator's tables): the weight bytes weigh less as tokens grow
    tokens = np.array([0.0, 1.0, 4096.0])
    fused = ops.fused("add_norm", ops.residual_add(tokens, 4096), ops.norm("n", tokens, 4096, "rmsnorm"),
                      unread_bytes=tokens * 4096 * 2)
    assert np.all(np.isfinite(fused.dram_share))
    assert fused.dram_share[0] == pytest.approx(0.35)  # nothing but the norm's weights: the norm's share
    assert 0.35 < fused.dram_share[1] < fused.dram_share[2] < 0.96


@pytest.mark.parametrize("model", PROFILES)
def test_vector_ops_match_the_a100_profiles(profile_dir, model):
    # Measured on the A100 (Vidur's profiles): with one efficiency for every vector kernel the add was
    # predicted 2-2.5x too slow (median error 101-146%) and the embedding 2-3x too fast (60-66%); all ops'
    # median error was 11.9-12.7%. The shares were set on these files: this pins that they still hold.
    result = compare(read_profile(profile_dir / PROFILES[model], get_model(model)), A100)
    assert result["ops"]["emb"]["median_abs_err"] <= 0.10
    assert result["ops"]["mlp_act"]["median_abs_err"] <= 0.10
    assert result["ops"]["add"]["median_abs_err"] <= 0.45
    assert result["ops"]["attn_rope"]["median_abs_err"] <= 0.30
    assert result["all_median_abs_err"] <= 0.10
