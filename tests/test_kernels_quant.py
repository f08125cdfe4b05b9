"""Quantization kernels: hand-worked codes, round trips, GEMMs against dequantized references, and the
outlier story of LLM.int8() and SmoothQuant in numbers."""
import numpy as np
import pytest

from infersim.kernels.quant import (codebook_quantize, dequantize, error_report, llm_int8_matmul,
                                    outlier_activations, pack_int4, quantize, smoothing_scales, unpack_int4,
                                    w4a16_matmul, w8a8_matmul)

RNG = np.random.default_rng(0)


def test_symmetric_int8_codes_by_hand():
    q = quantize(np.array([[-1.0, 0.5, 1.0]]), 8, True, "tensor")
    assert q.scale.item() == pytest.approx(1 / 127)
    assert q.codes.tolist() == [[-127, 64, 127]]  # 0.5 x 127 = 63.5 rounds to even
    assert dequantize(q).ravel().tolist() == pytest.approx([-1.0, 64 / 127, 1.0])


def test_asymmetric_int4_codes_by_hand():
    q = quantize(np.array([[0.0], [1.5], [3.0], [0.3]]), 4, False, "tensor")
    assert q.scale.item() == pytest.approx(0.2) and q.zero.item() == 0  # (3 - 0) / 15
    assert unpack_int4(q.codes, 4).ravel().tolist() == [0, 8, 15, 2]  # 7.5 rounds to even
    assert q.codes.shape == (2, 1)  # two codes per byte
    assert dequantize(q).ravel().tolist() == pytest.approx([0.0, 1.6, 3.0, 0.4])


def test_int4_packing_round_trips():
    codes = RNG.integers(0, 16, (8, 5)).astype(np.uint8)
    assert np.array_equal(unpack_int4(pack_int4(codes), 8), codes)


@pytest.mark.parametrize("bits,symmetric", [(8, True), (8, False), (4, True), (4, False)])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "token", "group"])
def test_round_trip_error_is_at_most_half_a_step(bits, symmetric, granularity):
    x = RNG.standard_normal((256, 64)).astype(np.float32)
    q = quantize(x, bits, symmetric, granularity, group_size=32)
    err = np.abs(dequantize(q) - x)
    step = {"tensor": lambda s: s.max(), "token": lambda s: s.reshape(-1, 1), "channel": lambda s: s.reshape(1, -1),
            "group": lambda s: s.reshape(64, 8).T.repeat(32, axis=0)}[granularity](q.scale)
    assert np.all(err <= step / 2 + 1e-6)


def test_finer_granularity_is_more_accurate():
    x = RNG.standard_normal((128, 64)).astype(np.float32) * np.linspace(0.1, 10, 64)[None, :]
    errs = [np.abs(dequantize(quantize(x, 4, True, g, 16)) - x).mean() for g in ("tensor", "channel", "group")]
    assert errs[0] > errs[1] > errs[2]


def test_codebook_beats_uniform_int4_on_gaussian_weights():
    w = RNG.standard_normal((512, 64)).astype(np.float32)
    uniform = np.abs(dequantize(quantize(w, 4, True, "group", 64)) - w).mean()
    book = codebook_quantize(w, 16, 64)
    assert len(book.codebook) == 16 and book.codes.dtype == np.uint8
    assert np.abs(dequantize(book) - w).mean() < uniform


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_w8a8_gemm_equals_the_product_of_its_dequantized_operands(backend):
    x = RNG.standard_normal((16, 96)).astype(np.float32)
    w = RNG.standard_normal((96, 32)).astype(np.float32)
    wq = quantize(w, 8, True, "channel")
    xq = quantize(x, 8, True, "token")
    got = w8a8_matmul(x, wq, backend=backend)
    assert np.allclose(got, dequantize(xq) @ dequantize(wq), rtol=1e-5, atol=1e-4)


def test_w8a8_kernel_accumulates_exactly_as_the_integer_reference():
    x = RNG.standard_normal((7, 300)).astype(np.float32) * 50  # large codes: int32 sums far beyond int16
    wq = quantize(RNG.standard_normal((300, 20)).astype(np.float32), 8, True, "tensor")
    assert np.array_equal(w8a8_matmul(x, wq, "tensor", "numba"), w8a8_matmul(x, wq, "tensor", "numpy"))


@pytest.mark.parametrize("symmetric", [True, False])
def test_w4a16_kernel_matches_the_dequantized_reference(symmetric):
    x = RNG.standard_normal((5, 256)).astype(np.float32)
    wq = quantize(RNG.standard_normal((256, 48)).astype(np.float32), 4, symmetric, "group", 64)
    assert np.allclose(w4a16_matmul(x, wq), w4a16_matmul(x, wq, backend="numpy"), rtol=1e-4, atol=1e-4)


def test_llm_int8_finds_the_outlier_channels():
    rng = np.random.default_rng(3)
    x = outlier_activations(64, 256, rng, outlier_channels=4, magnitude=40)
    w = rng.standard_normal((256, 32)).astype(np.float32)
    _, outliers = llm_int8_matmul(x, w)
    assert set(outliers.tolist()) == set(np.flatnonzero(np.abs(x).max(axis=0) > 20).tolist())
    assert len(outliers) == 4


def test_smoothing_scales_by_hand():
    x = np.array([[4.0, -1.0], [2.0, 0.5]])
    w = np.array([[1.0, -0.5], [4.0, 2.0]])
    # max|X_j| = (4, 1), max|W_j| = (1, 4): s = (4^0.5 / 1^0.5, 1^0.5 / 4^0.5)
    assert smoothing_scales(x, w, 0.5).tolist() == pytest.approx([2.0, 0.5])


def test_outliers_ruin_per_tensor_int8_and_decomposition_or_smoothing_recover_it():
    report = error_report(tokens=128, features=512, out_features=256)
    naive = report["w8a8 per-tensor"]
    assert naive > 0.05  # outlier channels stretch the one activation scale: most values round to 0
    assert report["llm.int8 decomposition"] < naive / 5
    assert report["smoothquant per-tensor (alpha 0.5)"] < naive / 3
    assert report["w8a8 per-token x per-channel"] < naive
    assert report["w8a16 per-channel"] < 0.01
