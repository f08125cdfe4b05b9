"""GPTQ and AWQ: a hand-worked error-feedback step, the reduction to round to nearest, and the output error
each saves on activations with outlier channels."""
import numpy as np
import pytest
from scipy.linalg import hadamard

from infersim.kernels.gptq import (awq_quantize, correlated_activations, gptq_hessian, gptq_quantize,
                                   weight_quant_report)
from infersim.kernels.quant import dequantize, outlier_activations, quantize, relative_error, w4a16_matmul


def _weights(rng, features, out_features):
    return (rng.standard_normal((features, out_features)) / np.sqrt(features)).astype(np.float32)


@pytest.mark.parametrize("bits", [4, 3])
def test_gptq_with_a_scaled_identity_hessian_is_round_to_nearest(bits):
    # A 64 x 64 Hadamard matrix has orthogonal columns of +-1, so X^T X = 64 I exactly in floating point and
    # H = 2 X^T X + 1% of its mean diagonal = 129.28 I. Then H^-1 = I / 129.28 and its Cholesky factor U is
    # diagonal: every feedback weight U_ij (j > i) is exactly 0, so quantizing row i moves no later row,
    # each group's grid is fitted to the original weights, and every row rounds to nearest on that grid.
    x = hadamard(64).astype(np.float32)
    w = _weights(np.random.default_rng(1), 64, 24)
    gptq, rtn = gptq_quantize(w, gptq_hessian(x), bits, 16), quantize(w, bits, False, "group", 16)
    assert np.array_equal(gptq.codes, rtn.codes)
    assert np.array_equal(gptq.scale, rtn.scale) and np.array_equal(gptq.zero, rtn.zero)
    assert (gptq.bits, gptq.shape, gptq.granularity, gptq.group_size, gptq.packed) == \
           (rtn.bits, rtn.shape, rtn.granularity, rtn.group_size, rtn.packed)


def test_gptq_error_feedback_by_hand():
    # H = [[1.25, 0.5, 0], [0.5, 1, 0], [0, 0, 1]]: the top 2x2 block has determinant 1.25 - 0.25 = 1, so
    # H^-1 = [[1, -0.5, 0], [-0.5, 1.25, 0], [0, 0, 1]] = U^T U with U = [[1, -0.5, 0], [0, 1, 0], [0, 0, 1]]
    # (U^T U: 1 * 1 = 1, 1 * -0.5 = -0.5, 0.25 + 1 = 1.25). 2 bits, one group of 3 rows per column.
    # Column A = [0.4, 1.4, 3.0]: grid [0, 3] in 3 steps, scale 1, zero 0, levels {0, 1, 2, 3}.
    #   row 0: 0.4 -> 0, E = (0.4 - 0) / U_00 = 0.4; row 1 -= U_01 E: 1.4 + 0.5 x 0.4 = 1.6; row 2 -= 0 x E.
    #   row 1: 1.6 -> 2 (round to nearest alone gives 1), E = -0.4; row 2 -= U_12 E = 0. row 2: 3 -> 3.
    # Column B = [0.7, -1.0, 2.0]: grid [-1, 2], scale 1, zero round(1 / 1) = 1, levels {-1, 0, 1, 2}.
    #   row 0: 0.7 -> code 1 + 1 = 2, value 1; E = -0.3; row 1: -1.0 + 0.5 x -0.3 = -1.15 -> code
    #   round(-1.15) + 1 = 0, value -1; row 2: 2 -> 2. The same as round to nearest.
    h = np.array([[1.25, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    w = np.array([[0.4, 0.7], [1.4, -1.0], [3.0, 2.0]], dtype=np.float32)
    w_q = dequantize(gptq_quantize(w, h, bits=2, group_size=3))
    assert w_q.tolist() == [[0.0, 1.0], [2.0, -1.0], [3.0, 2.0]]
    # The loss GPTQ lowers, d^T H d for column A's error d: round to nearest's d = [0.4, 0.4, 0] costs
    # 1.25 x 0.16 + 2 x 0.5 x 0.16 + 1 x 0.16 = 0.52; GPTQ's d = [0.4, -0.6, 0] costs 1.25 x 0.16
    # + 2 x 0.5 x (0.4 x -0.6) + 1 x 0.36 = 0.2 - 0.24 + 0.36 = 0.32.
    d_rtn, d_gptq = np.array([0.4, 0.4, 0.0]), w[:, 0] - w_q[:, 0]
    assert d_rtn @ h @ d_rtn == pytest.approx(0.52)
    assert d_gptq @ h @ d_gptq == pytest.approx(0.32, rel=1e-6)


@pytest.mark.parametrize("bits", [4, 3])
def test_gptq_output_error_is_below_round_to_nearest_on_correlated_activations(bits):
    rng = np.random.default_rng(2)
    x = correlated_activations(256, 128, rng)
    w = _weights(rng, 128, 32)
    rtn = relative_error(x @ dequantize(quantize(w, bits, False, "group", 32)), x @ w)
    gptq = relative_error(x @ dequantize(gptq_quantize(w, gptq_hessian(x), bits, 32)), x @ w)
    assert gptq < 0.85 * rtn


def test_awq_with_alpha_zero_is_round_to_nearest():
    # s = mean|X_j|^0 = 1 for every channel, so Q(W s) / s = Q(W)
    rng = np.random.default_rng(4)
    x, w = outlier_activations(64, 64, rng), _weights(rng, 64, 16)
    awq = awq_quantize(w, x, 4, 16, alphas=np.array([0.0]))
    assert awq.alpha == 0.0 and np.array_equal(awq.channel_scale, np.ones(64, dtype=np.float32))
    assert np.array_equal(awq.dequantized(), dequantize(quantize(w, 4, False, "group", 16)))


def test_awq_protects_outlier_channels():
    rng = np.random.default_rng(5)
    x, w = outlier_activations(128, 128, rng), _weights(rng, 128, 32)
    awq = awq_quantize(w, x, 4, 32)
    rtn = relative_error(x @ dequantize(quantize(w, 4, False, "group", 32)), x @ w)
    assert awq.alpha > 0 and relative_error(x @ awq.dequantized(), x @ w) < 0.7 * rtn


@pytest.mark.parametrize("bits", [1, 9])
def test_bits_out_of_range_are_refused(bits):
    w, x = np.ones((8, 2), dtype=np.float32), np.ones((4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=f"bits must be an integer from 2 to 8, got {bits}"):
        gptq_quantize(w, gptq_hessian(x), bits, 4)
    with pytest.raises(ValueError, match=f"got {bits}"):
        awq_quantize(w, x, bits, 4)


def test_a_group_that_does_not_divide_the_inputs_is_refused():
    w, x = np.ones((12, 2), dtype=np.float32), np.ones((4, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="group_size=8 must be positive and divide in_features=12"):
        gptq_quantize(w, gptq_hessian(x), 4, 8)
    with pytest.raises(ValueError, match="group_size=8"):
        awq_quantize(w, x, 4, 8)
    with pytest.raises(ValueError, match="calibration in_features=10 must equal w's in_features=12"):
        awq_quantize(w, np.ones((4, 10), dtype=np.float32), 4, 4)


def test_report_shows_awq_on_outliers_and_gptq_on_correlated_features():
    report = weight_quant_report(tokens=128, features=128, out_features=32, group_size=32)
    for bits in (4, 3):
        independent = report["outlier channels"][bits]
        correlated = report["outlier channels + correlated features"][bits]
        assert independent["awq"] < independent["round to nearest"]
        assert correlated["gptq"] < correlated["round to nearest"]
    assert report["outlier channels"][3]["round to nearest"] > report["outlier channels"][4]["round to nearest"]


def test_gptq_int4_result_runs_through_the_w4a16_kernel():
    rng = np.random.default_rng(3)
    x = correlated_activations(64, 128, rng)
    w_q = gptq_quantize(_weights(rng, 128, 48), gptq_hessian(x), 4, 32)
    assert w_q.packed and w_q.codes.shape == (64, 48)
    np.testing.assert_allclose(w4a16_matmul(x[:2], w_q, "numba"), x[:2] @ dequantize(w_q), rtol=1e-4, atol=1e-3)
