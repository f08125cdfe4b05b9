"""The tensor-core attention kernel's algorithm (its NumPy emulation) against the fp32 reference, within fp16
tolerances: causal and not, lengths that pad the 64-row blocks and 32-key tiles, head sizes 64 and 128."""
import numpy as np
import pytest

from infersim.kernels.attention import naive_attention
from infersim.kernels.tensor_core_attention import tensor_core_attention_emulated


def _qkv(rng, b, h, kv_h, s, t, d):
    return (rng.standard_normal((b, h, s, d)).astype(np.float32), rng.standard_normal((b, kv_h, t, d)).astype(np.float32),
            rng.standard_normal((b, kv_h, t, d)).astype(np.float32))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("b, h, kv_h, s, t, d", [
    (1, 2, 2, 64, 64, 64),  # exactly one block of rows, two key tiles
    (1, 4, 2, 70, 70, 128),  # 70 rows pad the second block; 70 keys pad the third tile; GQA groups of 2
    (2, 2, 1, 5, 37, 64),  # a 5-row chunk after 32 cached keys (causal end-aligned), two batches
    (1, 1, 1, 1, 200, 128),  # a decode row over 200 keys
])
def test_tensor_core_attention_matches_the_reference_within_fp16_rounding(causal, b, h, kv_h, s, t, d):
    # fp16 inputs carry a relative rounding of 2^-11 ~ 5e-4 and the fp16 output another; with unit-normal
    # inputs outputs are O(0.1-1), so an absolute 4e-3 and relative 1e-2 leave room for both and no more
    q, k, v = _qkv(np.random.default_rng(s * t + d), b, h, kv_h, s, t, d)
    got = tensor_core_attention_emulated(q, k, v, causal)
    assert got.dtype == np.float16 and got.shape == q.shape
    np.testing.assert_allclose(got.astype(np.float32), naive_attention(q, k, v, causal), rtol=1e-2, atol=4e-3)


def test_tensor_core_attention_equals_the_reference_on_fp16_exact_inputs():
    # inputs already fp16 and one key per query (s = t = 1): the output is V itself, rounded to fp16 exactly
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 1, 64)).astype(np.float16) for _ in range(3))
    assert np.array_equal(tensor_core_attention_emulated(q, k, v, True), v)


def test_causal_rows_ignore_later_keys():
    # changing the last key and value must not change any row but the last (each row sees keys up to itself)
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, 1, 1, 1, 40, 40, 64)
    k2, v2 = k.copy(), v.copy()
    k2[..., -1, :] += 5
    v2[..., -1, :] -= 5
    a, b = tensor_core_attention_emulated(q, k, v), tensor_core_attention_emulated(q, k2, v2)
    assert np.array_equal(a[..., :-1, :], b[..., :-1, :]) and not np.array_equal(a[..., -1, :], b[..., -1, :])


def test_a_head_size_off_the_fragment_grid_is_refused():
    with pytest.raises(ValueError, match="head_dim 16, 32, ..., 128 .* got 72"):
        tensor_core_attention_emulated(*(np.zeros((1, 1, 4, 72)),) * 3)
