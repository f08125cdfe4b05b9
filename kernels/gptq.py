"""Post-training weight quantization that looks at calibration activations: GPTQ (Frantar et al. 2022,
Algorithm 1) and AWQ (Lin et al. 2023, §3.2), against round to nearest (quant.quantize), by output error.

Weights W are [in_features, out_features] (y = X W), so the papers' columns of W (input features) are the
rows here, and a group is `group_size` consecutive input rows of one output column: quant.py's "group"
layout, with asymmetric (scale, zero) grids as in the GPTQ reference code's per-group quantizer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .quant import (Quantized, asymmetric_codes, asymmetric_grid, check_bits, dequantize, outlier_activations,
                    pack_int4, quantize, relative_error)

AWQ_ALPHAS = np.linspace(0.0, 1.0, 21)  # 0, 0.05, ..., 1; the AWQ reference searches 0, 0.05, ..., 0.95


def _check_arguments(w: np.ndarray, bits: int, group_size: int, in_features: int) -> None:
    check_bits(bits)
    if w.ndim != 2:
        raise ValueError(f"w must be [in_features, out_features], got shape {w.shape}")
    if in_features != w.shape[0]:
        raise ValueError(f"calibration in_features={in_features} must equal w's in_features={w.shape[0]}")
    if group_size <= 0 or w.shape[0] % group_size:
        raise ValueError(f"group_size={group_size} must be positive and divide in_features={w.shape[0]}")


def gptq_hessian(x: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """H = 2 X^T X, the Hessian of ||X W - X W_q||^2 in each output column (GPTQ §3, for X [tokens,
    features]), plus `damp` times its mean diagonal on the diagonal (§4, "Cholesky reformulation")."""
    x = np.asarray(x, dtype=np.float64)
    h = 2.0 * x.T @ x
    return h + damp * np.mean(np.diag(h)) * np.eye(len(h))


def gptq_quantize(w: np.ndarray, hessian: np.ndarray, bits: int = 4, group_size: int = 128) -> Quantized:
    """GPTQ, Algorithm 1 without lazy batches: quantize input feature i, then spread its error
    E = (w_i - q_i) / U_ii over the features still unquantized, w_j -= U_ij E (j > i), where U is the upper
    Cholesky factor of H^-1 (H^-1 = U^T U); each group's grid is fitted to its weights as they stand when
    the loop reaches the group's first row (the reference code's grouping). Returns quant.py's layout, so
    dequantize() and w4a16_matmul() take the result."""
    w = np.asarray(w, dtype=np.float32)
    _check_arguments(w, bits, group_size, hessian.shape[0])
    k, n = w.shape
    upper = np.linalg.cholesky(np.linalg.inv(hessian)).T
    work = w.copy()
    codes = np.empty((k, n), dtype=np.uint8)
    scale = np.empty((n, k // group_size), dtype=np.float32)
    zero = np.empty((n, k // group_size), dtype=np.float32)
    for i in range(k):
        g = i // group_size
        if i % group_size == 0:
            s, z = asymmetric_grid(work[i:i + group_size].T, bits)
            scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
        codes[i] = asymmetric_codes(work[i], scale[:, g], zero[:, g], bits)
        error = (work[i] - (codes[i] - zero[:, g]) * scale[:, g]) / upper[i, i]
        work[i + 1:] -= np.outer(upper[i, i + 1:], error)
    packed = bits == 4
    return Quantized(pack_int4(codes) if packed else codes, scale.reshape(-1, 1), zero.reshape(-1, 1), bits,
                     (k, n), "group", group_size, packed)


@dataclass(frozen=True)
class ActivationAware:
    """AWQ's result: diag(s) W rounded to nearest; X diag(s)^-1 is folded into the op before (AWQ §3.2)."""
    quantized: Quantized
    channel_scale: np.ndarray  # s, one per input feature
    alpha: float

    def dequantized(self) -> np.ndarray:
        """Q(diag(s) W) / s: the weights that the scaled activations effectively meet."""
        return dequantize(self.quantized) / self.channel_scale[:, None]


def awq_channel_scale(x: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = mean_tokens |X_ij| ^ alpha (AWQ §3.2, Eq. 5: s = s_X^alpha), floored as the reference code does."""
    return np.maximum(np.abs(x).mean(axis=0), 1e-4) ** alpha


def awq_quantize(w: np.ndarray, x: np.ndarray, bits: int = 4, group_size: int = 128,
                 alphas: np.ndarray = AWQ_ALPHAS) -> ActivationAware:
    """AWQ: the alpha of `alphas` whose scaled, rounded weights give the smallest ||X W - X Q(W s)/s||
    (AWQ §3.2, Eq. 4-5). The reference also divides s by sqrt(max s min s); a constant factor on s scales
    each group's min-max grid with the weights and leaves Q(W s)/s as it was, so it is left out."""
    w, x = np.asarray(w, dtype=np.float32), np.asarray(x, dtype=np.float32)
    _check_arguments(w, bits, group_size, x.shape[1])
    y = x @ w
    best, best_error = None, np.inf
    for alpha in alphas:
        s = awq_channel_scale(x, alpha).astype(np.float32)
        candidate = ActivationAware(quantize(w * s[:, None], bits, False, "group", group_size), s, float(alpha))
        error = relative_error(x @ candidate.dequantized(), y)
        if error < best_error:
            best, best_error = candidate, error
    return best


def correlated_activations(tokens: int, features: int, rng: np.random.Generator, rank: int = 16,
                           factor_scale: float = 3.0) -> np.ndarray:
    """outlier_activations plus `rank` shared factors: features that move together, as in a real layer's
    inputs, the structure GPTQ's error feedback exploits (with independent features H is diagonal)."""
    x = outlier_activations(tokens, features, rng)
    factors = rng.standard_normal((tokens, rank)) @ rng.standard_normal((rank, features))
    return x + (factor_scale * factors).astype(np.float32)


def weight_quant_report(tokens: int = 512, features: int = 256, out_features: int = 128, group_size: int = 64,
                        seed: int = 0) -> dict:
    """{activations: {bits: {method: relative output error}}} for round to nearest, AWQ and GPTQ at 4 and 3
    bits, asymmetric per group, calibrated and measured on the same activations: independent features
    with outlier channels, and the same with shared factors (correlated_activations)."""
    rng = np.random.default_rng(seed)
    inputs = {"outlier channels": outlier_activations(tokens, features, rng),
              "outlier channels + correlated features": correlated_activations(tokens, features, rng)}
    w = (rng.standard_normal((features, out_features)) / np.sqrt(features)).astype(np.float32)
    report = {}
    for name, x in inputs.items():
        y, h = x @ w, gptq_hessian(x)
        report[name] = {bits: {
            "round to nearest": relative_error(x @ dequantize(quantize(w, bits, False, "group", group_size)), y),
            "awq": relative_error(x @ awq_quantize(w, x, bits, group_size).dequantized(), y),
            "gptq": relative_error(x @ dequantize(gptq_quantize(w, h, bits, group_size)), y),
        } for bits in (4, 3)}
    return report
