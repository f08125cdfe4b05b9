"""CuPy kernels against the NumPy references; skipped cleanly without CuPy and a GPU."""
import numpy as np
import pytest

from infersim.kernels import device
from infersim.kernels.cuda import attention as cuda_attention
from infersim.kernels.cuda import quant as cuda_quant

needs_gpu = pytest.mark.skipif(not device.available(), reason="needs CuPy and a CUDA GPU")


def test_gpu_attention_refuses_a_head_size_it_was_not_written_for():
    with pytest.raises(ValueError, match="head_dim 32, 64, 96 or 128"):
        cuda_attention.attention(np.zeros((1, 1, 1, 48)), np.zeros((1, 1, 1, 48)), np.zeros((1, 1, 1, 48)))
    with pytest.raises(ValueError, match="head_dim"):
        cuda_attention.paged_decode_attention(np.zeros((1, 1, 256)), None, None, None, None)


def test_paged_blocks_serve_the_largest_divisor_of_the_gqa_group_up_to_eight_heads():
    # worked by hand: Llama-3-8B 32/8 -> 4; a group of 12 -> two blocks of 6; MQA with 16 heads -> 8;
    # 7 (prime) -> 7; 9 -> 3; no sharing -> 1
    assert [cuda_attention._query_heads_per_block(g) for g in (4, 12, 16, 7, 9, 1)] == [4, 6, 8, 7, 3, 1]


def test_fused_w4a16_splits_k_until_the_grid_has_16_warps_per_sm():
    # worked by hand for a 4096 x 4096 weight, 64 threads (2 warps) a block: one token row takes 4096 / 8
    # / 64 = 8 column blocks; an H100's 132 SMs x 8 blocks = 1056 blocks want 132 splits, capped at
    # 4096 / 32 = 128 splits of 32 rows; an L4's 58 SMs want 58 splits of 4096 / 58 = 70.6 -> 72 rows
    # (whole pairs); 8 rows (2 row blocks of 4) on an H100: 66 splits of 62.1 -> 64 rows
    assert cuda_quant._fused_k_rows_per_split(4096, 8, 132) == 32
    assert cuda_quant._fused_k_rows_per_split(4096, 8, 58) == 72
    assert cuda_quant._fused_k_rows_per_split(4096, 16, 132) == 64
    assert cuda_quant._fused_k_rows_per_split(64, 4096, 132) == 64  # a grid already full: no split


def _attention_runs(seed: int, shapes, dtype):
    """For each (b, h, kv_h, s, t, d) and both masks: standard-normal Q (b, h, s, d), K and V (b, kv_h, t, d)
    in `dtype`, the mask, and what the CuPy backend computes of them."""
    import cupy as cp

    from infersim.kernels.attention import attention
    rng = np.random.default_rng(seed)
    for b, h, kv_h, s, t, d in shapes:
        q = rng.standard_normal((b, h, s, d)).astype(dtype)
        k, v = (rng.standard_normal((b, kv_h, t, d)).astype(dtype) for _ in range(2))
        for causal in (True, False):
            got = cp.asnumpy(attention(cp.asarray(q), cp.asarray(k), cp.asarray(v), causal, backend="cupy"))
            yield q, k, v, causal, got


@needs_gpu
def test_gpu_attention_matches_the_reference():
    from infersim.kernels.attention import naive_attention
    # query rows not a multiple of the 16-row blocks, keys beyond the queries (a chunk after a prefix),
    # fewer keys than one 32-key tile, every head size the kernel is compiled for
    shapes = ((2, 8, 2, 70, 90, 64), (1, 4, 4, 5, 5, 32), (1, 2, 1, 3, 257, 128), (1, 2, 2, 40, 40, 96))
    for q, k, v, causal, got in _attention_runs(0, shapes, np.float32):
        assert np.allclose(got, naive_attention(q, k, v, causal), rtol=1e-3, atol=1e-4), (q.shape, k.shape, causal)


@needs_gpu
def test_gpu_paged_attention_matches_the_reference():
    import cupy as cp

    from infersim.kernels.attention import paged_decode_attention, paged_decode_attention_reference
    rng = np.random.default_rng(1)
    tables = np.stack([rng.permutation(40)[:8] for _ in range(3)])
    lens = np.array([1, 37, 100])
    # query heads per kv head: 4 (one block serves all 4), 12 (two blocks of 6), 1 (no sharing)
    for h, kv_h in ((8, 2), (12, 1), (2, 2)):
        kc = rng.standard_normal((40, 16, kv_h, 32)).astype(np.float32)
        vc = rng.standard_normal((40, 16, kv_h, 32)).astype(np.float32)
        q = rng.standard_normal((3, h, 32)).astype(np.float32)
        expected = paged_decode_attention_reference(q, kc, vc, tables, lens)
        for split in (256, 16, 5):  # one span; block-sized spans; odd spans, some empty for the short sequences
            got = cp.asnumpy(paged_decode_attention(*(cp.asarray(a) for a in (q, kc, vc, tables, lens)),
                                                    backend="cupy", split_tokens=split))
            assert np.allclose(got, expected, rtol=1e-3, atol=1e-4), (h, kv_h, split)


@needs_gpu
def test_gpu_quantized_gemms_match_the_cpu_kernels():
    import cupy as cp

    from infersim.kernels import quant as qk
    rng = np.random.default_rng(2)
    x = rng.standard_normal((17, 256)).astype(np.float32)
    w = rng.standard_normal((256, 48)).astype(np.float32)
    for granularity in ("channel", "tensor"):
        w8 = qk.quantize(w, 8, True, granularity)
        for x_granularity in ("token", "tensor"):
            got8 = cp.asnumpy(qk.w8a8_matmul(cp.asarray(x), device.to_device(w8), x_granularity, backend="cupy"))
            assert np.allclose(got8, qk.w8a8_matmul(x, w8, x_granularity), rtol=1e-5, atol=1e-4)
    for symmetric in (False, True):  # the fused kernel: fp32 activations and math
        w4 = qk.quantize(w, 4, symmetric, "group", 64)
        for rows in (1, 3, cuda_quant.W4A16_FUSED_ROWS):
            got4 = cp.asnumpy(qk.w4a16_matmul(cp.asarray(x[:rows]), device.to_device(w4), backend="cupy"))
            assert np.allclose(got4, qk.w4a16_matmul(x[:rows], w4, backend="numpy"), rtol=1e-4, atol=1e-3), symmetric
    # more rows than the fused kernel takes: fp16 weights and activations, fp32 accumulation, so the
    # reference is the product of the fp16-rounded operands
    xs = rng.standard_normal((cuda_quant.W4A16_FUSED_ROWS + 13, 256)).astype(np.float32)
    w4 = qk.quantize(w, 4, False, "group", 64)
    rounded = xs.astype(np.float16).astype(np.float32) @ qk.dequantize(w4).astype(np.float16).astype(np.float32)
    got = cp.asnumpy(qk.w4a16_matmul(cp.asarray(xs), device.to_device(w4), backend="cupy"))
    assert np.allclose(got, rounded, rtol=1e-4, atol=1e-3)


@needs_gpu
def test_gpu_processors_match_the_reference():
    import cupy as cp

    from infersim.kernels.sampling import process_logits
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 1000)).astype(np.float32) * 3
    context = rng.integers(-1, 1000, (6, 12))
    tied = np.round(logits)  # many ties at the top-p boundary: removed in index order, as a stable sort does
    for kwargs in (dict(top_p=0.9), dict(repetition=1.3), dict(temperature=0.7, top_k=7),
                   dict(repetition=1.2, temperature=0.8, top_k=20, top_p=0.8, min_tokens_to_keep=3),
                   dict(top_p=0.5, tied=True), dict(top_p=0.01, min_tokens_to_keep=40, tied=True)):
        x = tied if kwargs.pop("tied", False) else logits
        got = cp.asnumpy(process_logits(cp.asarray(x), cp.asarray(context), backend="cupy", **kwargs))
        expected = process_logits(x, context, **kwargs)
        assert np.array_equal(np.isneginf(got), np.isneginf(expected)), kwargs
        assert np.allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], rtol=1e-6), kwargs


@needs_gpu
def test_gpu_tensor_core_attention_matches_its_emulation_and_the_reference():
    from infersim.kernels.attention import naive_attention
    from infersim.kernels.tensor_core_attention import tensor_core_attention_emulated
    # rows padding the 64-row blocks, keys padding the 32-key tiles and beyond the queries, GQA, d 64 and 128
    shapes = ((2, 8, 2, 70, 90, 64), (1, 4, 4, 5, 5, 128), (1, 2, 1, 3, 257, 128), (1, 32, 8, 512, 512, 128))
    for q, k, v, causal, got in _attention_runs(4, shapes, np.float16):
        where = str((q.shape, k.shape, causal))
        assert got.dtype == np.float16
        # the emulation: the same fp16 roundings, sums in another order (fp32): within a few fp16 ulps
        np.testing.assert_allclose(got.astype(np.float32), tensor_core_attention_emulated(q, k, v, causal)
                                   .astype(np.float32), rtol=4e-3, atol=2e-3, err_msg=where)
        np.testing.assert_allclose(got.astype(np.float32), naive_attention(q, k, v, causal).astype(np.float32),
                                   rtol=1e-2, atol=4e-3, err_msg=where)


@needs_gpu
def test_gpu_top_p_keeps_the_references_tokens_split_over_blocks_and_a_block_a_row():
    import cupy as cp

    from infersim.kernels.sampling import process_logits
    from infersim.kernels.validate import zipf_logits
    rng = np.random.default_rng(5)
    sms = device.sm_count()
    cases = [(zipf_logits(1, 128256, rng), dict(top_p=0.9)),  # batch 1: a row over every SM
             (zipf_logits(3, 128256, rng), dict(top_p=0.5)),
             (np.round(rng.standard_normal((2, 5000)) * 2).astype(np.float32), dict(top_p=0.7)),  # ties across blocks
             (np.round(rng.standard_normal((2, 5000))).astype(np.float32), dict(top_p=0.01, min_tokens_to_keep=700)),
             (np.where(np.arange(3000) % 2, -0.0, 0.0)[None].astype(np.float32), dict(top_p=0.5)),
             (rng.standard_normal((sms + 3, 1000)).astype(np.float32) * 3, dict(top_p=0.9))]  # a block a row
    for logits, kwargs in cases:
        got = cp.asnumpy(process_logits(cp.asarray(logits), backend="cupy", **kwargs))
        expected = process_logits(logits, **kwargs)
        assert np.array_equal(np.isneginf(got), np.isneginf(expected)), (logits.shape, kwargs)
        assert np.array_equal(got[np.isfinite(got)], expected[np.isfinite(expected)]), (logits.shape, kwargs)
