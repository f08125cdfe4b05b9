"""Attention kernels against the plain NumPy reference, and the reference against a hand-worked case."""
import math

import numpy as np
import pytest

from infersim.kernels.attention import (attention, naive_attention, paged_decode_attention,
                                        paged_decode_attention_reference)


def test_naive_attention_by_hand():
    # one head, d = 1: q = [1, 1], k = [0, ln 2 ... ] chosen so the weights are easy
    q = np.ones((1, 1, 2, 1), dtype=np.float32)
    k = np.array([0.0, math.log(3)], dtype=np.float32).reshape(1, 1, 2, 1)  # scores 0 and ln 3 (scale 1/sqrt(1))
    v = np.array([1.0, 5.0], dtype=np.float32).reshape(1, 1, 2, 1)
    out = naive_attention(q, k, v, causal=True)
    assert out[0, 0, 0, 0] == pytest.approx(1.0)  # the first query sees only key 0
    assert out[0, 0, 1, 0] == pytest.approx((1 * 1 + 3 * 5) / 4)  # weights 1/4 and 3/4
    assert naive_attention(q, k, v, causal=False)[0, 0, 0, 0] == pytest.approx(4.0)


def qkv(b, h, kv_h, s, t, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, h, s, d)).astype(dtype), rng.standard_normal((b, kv_h, t, d)).astype(dtype),
            rng.standard_normal((b, kv_h, t, d)).astype(dtype))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("shape", [(2, 4, 4, 70, 70, 32), (1, 8, 2, 33, 100, 16), (3, 4, 1, 1, 257, 64)],
                         ids=["prefill", "gqa-chunk", "mqa-decode"])
@pytest.mark.parametrize("causal", [True, False])
def test_tiled_attention_matches_the_naive_reference(backend, shape, causal):
    q, k, v = qkv(*shape, np.float32)
    expected = naive_attention(q, k, v, causal)
    got = attention(q, k, v, causal, backend=backend, block_q=16, block_k=32)
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fp16_inputs_keep_their_dtype_within_fp16_tolerance(backend):
    q, k, v = qkv(1, 2, 2, 40, 40, 64, np.float16)
    got = attention(q, k, v, True, backend=backend)
    assert got.dtype == np.float16
    expected = naive_attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), True)
    assert np.allclose(got.astype(np.float32), expected, rtol=1e-2, atol=2e-3)


def paged_case(seed=1):
    rng = np.random.default_rng(seed)
    b, h, kv_h, d, block, blocks = 3, 8, 2, 32, 16, 40
    k_cache = rng.standard_normal((blocks, block, kv_h, d)).astype(np.float32)
    v_cache = rng.standard_normal((blocks, block, kv_h, d)).astype(np.float32)
    lens = np.array([1, 37, 100])
    tables = np.stack([rng.permutation(blocks)[:8] for _ in range(b)])  # scattered blocks
    q = rng.standard_normal((b, h, d)).astype(np.float32)
    return q, k_cache, v_cache, tables, lens


def test_paged_reference_equals_attention_over_the_gathered_contiguous_cache():
    q, k_cache, v_cache, tables, lens = paged_case()
    out = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens)
    i = 2
    keys = np.concatenate([k_cache[blk] for blk in tables[i]])[:lens[i]]  # [n, kv_h, d]
    values = np.concatenate([v_cache[blk] for blk in tables[i]])[:lens[i]]
    contiguous = naive_attention(q[i][None, :, None], keys.transpose(1, 0, 2)[None], values.transpose(1, 0, 2)[None],
                                 causal=False)[0, :, 0]
    assert np.allclose(out[i], contiguous, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("split_tokens", [512, 16, 5], ids=["one-span", "block-spans", "odd-spans"])
def test_paged_numba_matches_the_reference(split_tokens):
    args = paged_case()  # lengths 1, 37 and 100: with small spans the short sequences leave spans empty
    got = paged_decode_attention(*args, backend="numba", split_tokens=split_tokens)
    assert np.allclose(got, paged_decode_attention_reference(*args), rtol=1e-4, atol=1e-5)


def test_bad_shapes_are_named():
    q, k, v = qkv(1, 3, 2, 4, 4, 8, np.float32)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        attention(q, k, v)
