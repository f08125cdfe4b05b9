"""A float32 exponential that Numba's loops can vectorize, for the softmax of the CPU kernels.

Numba calls the C library's expf one value at a time (PyPI's llvmlite has no vector math library), which
made exponentials the slowest part of attention's softmax on a CPU: ~16 vector FLOPs' time each. GPUs
compute exp in hardware at reduced precision instead (CUDA's __expf is ex2.approx of x log2 e). This
function does what vector math libraries do: Cody and Waite's range reduction (Cody & Waite 1980,
"Software Manual for the Elementary Functions", ch. 6), x = k ln 2 + r with |r| <= ln(2) / 2 and ln 2 split
in two so that k ln2_hi is exact, then e^r by its degree-6 Taylor polynomial (truncation error below
(ln(2)/2)^7 / 7! = 1.2e-7) and 2^k built from the exponent bits. Relative error <= 3e-7 for results in the
normal float32 range; 0 below it (x < -87.3), inf above it (x > 88.7).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # 355/512: k * _LN2_HI is exact for |k| < 2^15
_LN2_LO = np.float32(-2.12194440e-4)  # ln 2 - _LN2_HI


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE 754 bit pattern is the int32 `bits`."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@numba.njit(inline="always", fastmath={"contract", "arcp"})
def fast_exp(x):
    t = x * _LOG2E
    k = np.floor(min(max(t, np.float32(-126.0)), np.float32(128.0)) + np.float32(0.5))
    r = (min(max(x, np.float32(-88.0)), np.float32(89.0)) - k * _LN2_HI) - k * _LN2_LO
    p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(1 / 2) + r * (np.float32(1 / 6) + r * (
        np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))
    # 2^k as two powers of two, each a normal float even for k = 128 or -126; their product overflows to
    # inf exactly when e^x does
    k_int = np.int32(k)
    half = k_int >> np.int32(1)
    two_half = _float32_from_bits(np.int32((half + np.int32(127)) << np.int32(23)))
    two_rest = _float32_from_bits(np.int32((k_int - half + np.int32(127)) << np.int32(23)))
    return np.float32(0.0) if t < np.float32(-126.0) else p * two_half * two_rest
