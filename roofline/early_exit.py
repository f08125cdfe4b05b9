"""Early exit (CALM, Schuster et al. 2022; LayerSkip, Elhoushi et al. 2024): a generated token leaves the
network at the first layer confident enough, and the layers after it are skipped.

In a batch, a decode step computes a layer while any of its tokens still needs it, so the step runs as
deep as its deepest token: with i.i.d. per-token exit layers of CDF F, the batch's depth D = max of b draws
has P(D <= l) = F(l)^b and E[D] = sum_l (1 - F(l - 1)^b). That is why batching erodes the saving: at
batch 1 the mean exit layer, at batch 32 nearly the full depth.

The skipped layers still owe later tokens their keys and values; `kv_fill` says how they are made:
- "copy": CALM's state propagation (Sec. 3): the exiting hidden state is projected to K and V in every
  skipped layer, which costs those layers' K/V projections for the step's tokens;
- "recompute": the skipped layers run in full for the token later (the next step takes them on), so the
  batch ends up computing every layer of every token: no saving, only an earlier token.
Prompt tokens never exit early (a prefill computes every layer), so a step that prefills runs full depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import SpecError

KV_FILL_POLICIES = ("copy", "recompute")


def expected_batch_depth(exit_probabilities, batch_size: int) -> float:
    """E[max of batch_size i.i.d. exit layers] = sum_l (1 - F(l - 1) ** b), l = 1..L, where F is the CDF
    of the per-token exit layer with probabilities `exit_probabilities[l - 1]` (E[X] = sum_l P(X >= l) for
    X in 1..L, and P(max < l) = F(l - 1) ** b)."""
    pmf = np.asarray(exit_probabilities, dtype=np.float64)
    if pmf.ndim != 1 or not len(pmf) or (pmf < 0).any() or not np.isclose(pmf.sum(), 1.0):
        raise ValueError(f"exit_probabilities must be non-negative per-layer probabilities summing to 1, "
                         f"got {pmf.tolist()}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    below = np.concatenate(([0.0], np.cumsum(pmf)[:-1]))  # F(l - 1) for l = 1..L
    return float(np.sum(1.0 - below ** batch_size))


@dataclass(frozen=True)
class EarlyExitSpec:
    """Tokens exit after `exit_fractions[i]` of the layers (rounded up to a layer) with `probabilities[i]`, the
    last exit being the full depth; probabilities written to a few digits (thirds as 0.3333, 0.6666) are scaled to sum to 1 exactly."""

    exit_fractions: tuple[float, ...]
    probabilities: tuple[float, ...]
    kv_fill: str = "copy"

    def __post_init__(self):
        if self.kv_fill not in KV_FILL_POLICIES:
            raise SpecError("early_exit.kv_fill", f"must be one of {', '.join(KV_FILL_POLICIES)}", self.kv_fill)
        if len(self.exit_fractions) != len(self.probabilities) or not self.exit_fractions:
            raise SpecError("early_exit.probabilities", f"needs one probability per exit fraction "
                            f"({len(self.exit_fractions)})", list(self.probabilities))
        fractions = list(self.exit_fractions)
        if any(not 0 < f <= 1 for f in fractions) or fractions != sorted(set(fractions)):
            raise SpecError("early_exit.exit_fractions", "must rise strictly within (0, 1]", fractions)
        if fractions[-1] != 1:  # CALM and LayerSkip keep the last layer's head as the last exit
            raise SpecError("early_exit.exit_fractions", "must end at 1, the full depth, where every token no "
                            "earlier exit takes leaves: add 1, with the probability of running every layer", fractions)
        total = sum(self.probabilities)
        if any(p < 0 for p in self.probabilities) or not math.isclose(total, 1.0, abs_tol=1e-3):
            raise SpecError("early_exit.probabilities", f"must be >= 0 and sum to 1 (within 0.001; these sum to "
                            f"{total:.6g})", list(self.probabilities))
        object.__setattr__(self, "probabilities", tuple(p / total for p in self.probabilities))

    def layer_probabilities(self, num_layers: int) -> np.ndarray:
        """P(a token exits after layer l), l = 1..num_layers."""
        pmf = np.zeros(num_layers)
        for fraction, p in zip(self.exit_fractions, self.probabilities):
            pmf[max(1, math.ceil(fraction * num_layers - 1e-9)) - 1] += p
        return pmf
