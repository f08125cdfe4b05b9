"""The vectorizable float32 exponential against NumPy's, over the whole float32 range."""
import numba
import numpy as np

from infersim.kernels.fast_exp import fast_exp


@numba.njit
def _exp_all(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = fast_exp(x[i])
    return out


def test_fast_exp_is_within_a_few_ulp_wherever_the_result_is_a_normal_float():
    x = np.linspace(-87.3, 88.7, 1_000_001, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(_exp_all(x) - exact) / exact) < 3e-7  # float32's ulp is 6e-8 to 1.2e-7


def test_fast_exp_edges():
    x = np.array([0.0, 1.0, -np.inf, -88.0, -100.0, 89.0, np.inf], dtype=np.float32)
    got = _exp_all(x)
    assert got[0] == 1.0  # k = 0, r = 0: exactly 1
    assert abs(got[1] - np.e) / np.e < 3e-7
    assert got[2] == 0.0 and got[3] == 0.0 and got[4] == 0.0  # below the normal range: 0, as softmax wants
    assert np.isposinf(got[5]) and np.isposinf(got[6])  # e^89 > float32's largest
