"""Weight pruning by score: magnitude |W_ij| and Wanda (Sun et al. 2023, "A Simple and Effective Pruning
Approach for LLMs", Eq. 1: |W_ij| ||X_j||_2), unstructured (a fraction of each output's inputs) or N:M
semi-structured (2:4, the pattern sparse tensor cores run: 2 kept in every 4 consecutive inputs).

W is [in_features, out_features] (y = X W), so the paper's comparison group, one output's weights (a row
of its W), is a column here. Both scores are compared within it, so the two methods differ only in the
score. Ties go to the lower input index (a stable sort prunes it first).
"""
from __future__ import annotations

import numpy as np

from .quant import outlier_activations, relative_error


def magnitude_score(w: np.ndarray) -> np.ndarray:
    return np.abs(w)


def wanda_score(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """S_ij = |W_ij| ||X_j||_2 (Wanda Eq. 1), the norm over the calibration tokens of input feature j."""
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"calibration in_features={x.shape[1]} must equal w's in_features={w.shape[0]}")
    return np.abs(w) * np.linalg.norm(x, axis=0)[:, None]


def unstructured_mask(score: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask pruning floor(sparsity x in_features) lowest-scoring inputs of every output."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1), got {sparsity!r}")
    pruned = int(sparsity * score.shape[0])
    lowest = np.argsort(score, axis=0, kind="stable")[:pruned]
    mask = np.ones(score.shape, dtype=bool)
    np.put_along_axis(mask, lowest, False, axis=0)
    return mask


def n_of_m_mask(score: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """Keep-mask holding the n highest scores of every m consecutive inputs of each output (2:4 by default)."""
    k, outputs = score.shape
    if not 0 < n < m:
        raise ValueError(f"n:m sparsity needs 0 < n < m, got {n}:{m}")
    if k % m:
        raise ValueError(f"m={m} must divide in_features={k}")
    groups = score.reshape(k // m, m, outputs)
    lowest = np.argsort(groups, axis=1, kind="stable")[:, :m - n]
    mask = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(mask, lowest, False, axis=1)
    return mask.reshape(k, outputs)


def pruning_report(tokens: int = 512, features: int = 256, out_features: int = 128, seed: int = 0) -> dict:
    """{pattern: {score: relative output error ||X W - X (W * mask)|| / ||X W||}} for magnitude and Wanda at
    50% unstructured and 2:4, on activations with outlier channels (calibration and measurement alike)."""
    rng = np.random.default_rng(seed)
    x = outlier_activations(tokens, features, rng)
    w = (rng.standard_normal((features, out_features)) / np.sqrt(features)).astype(np.float32)
    y = x @ w
    scores = {"magnitude": magnitude_score(w), "wanda": wanda_score(w, x)}
    patterns = {"50% unstructured": lambda s: unstructured_mask(s, 0.5), "2:4": n_of_m_mask}
    return {pattern: {name: relative_error(x @ (w * mask_of(score)), y) for name, score in scores.items()}
            for pattern, mask_of in patterns.items()}
