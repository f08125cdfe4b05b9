"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a cheap drafter proposes k tokens per
sequence, the target model checks them all in one forward pass over k + 1 query tokens, and every step
emits the accepted prefix plus one token of the target's own.

The drafter is one of:
- `model`: a smaller model of its own (e.g. Llama-3.2-1B for Llama-3.1-8B), with its own weights and KV
  cache, run k times autoregressively;
- `eagle` (Li et al. ICML 2024) or `mtp` (DeepSeek-V3's multi-token prediction module, §2.2): one decoder
  layer of the target's width reading the target's hidden states and sharing its embedding and LM head,
  run k times;
- `medusa` (Cai et al. ICML 2024): k heads on the target's last hidden state, each a residual block and an
  LM head of its own, all run in one pass;
- `ngram`: no model at all: the draft is looked up in the prompt and the output so far (prompt lookup
  decoding, vLLM's `ngram` method; Jacobi and lookahead decoding, Santilli et al. 2023 and Fu et al. 2024,
  also guess without a drafter); it costs the host a lookup and the GPU nothing but the verification.

How many drafted tokens survive is an acceptance model: a rate per draft position, conditional on the
positions before it being accepted (one rate for all, or one per position). A step then emits
1 + sum_{i=1..k} prod_{j<=i} a_j tokens on average: (1 - a^(k+1)) / (1 - a) for a constant rate
(Leviathan et al. 2023, Eq. 1).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import ops
from .errors import SpecError
from .hardware import HardwareSpec
from .latency import NO_WORK, StepTimer, StepTotals, op_totals
from .memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu
from .models import ModelSpec, check_smaller
from .quant import QuantSpec
from .step import Parallelism, StepOptions, companion_options

DRAFT_METHODS = ("model", "eagle", "mtp", "medusa", "ngram")
MAX_SPECULATIVE_TOKENS = 16


class SpeculativePreset(NamedTuple):
    """A drafter with a published acceptance figure (a chain of k drafts; the papers' trees accept more)."""

    method: str
    num_speculative_tokens: int
    acceptance_rate: float
    source: str


PRESETS = {
    "mtp-deepseek-v3": SpeculativePreset(
        "mtp", 1, 0.85, "DeepSeek-V3 Technical Report (2024), §5.4.3: the second token's acceptance rate is 85-90% "
        "across generation topics (the low end here), giving 1.8x tokens per second"),
    "eagle": SpeculativePreset(
        "eagle", 3, 0.8, "Li et al., EAGLE (ICML 2024): the draft's acceptance is about 0.8 per token on MT-bench at "
        "temperature 0 (Vicuna and LLaMA2-Chat 7-70B); 3 tokens as vLLM's EAGLE example drafts"),
    "medusa": SpeculativePreset(
        "medusa", 3, 0.6, "Cai et al., Medusa (ICML 2024): the first head's top-1 accuracy is about 0.6 on Vicuna-7B, "
        "as EAGLE's comparison also puts it"),
}


@dataclass(frozen=True)
class AcceptanceModel:
    """`rates[i]`: the chance that draft token i + 1 is accepted given that tokens 1..i were; one rate
    stands for every position."""

    rates: tuple[float, ...]

    def __post_init__(self):
        if not self.rates:
            raise SpecError("speculative.acceptance_rate", "needs at least one rate", self.rates)
        for rate in self.rates:
            if not 0 <= rate <= 1:
                raise SpecError("speculative.acceptance_rate", "each rate must be in [0, 1]", rate)

    def position_rates(self, k: int) -> np.ndarray:
        """The conditional rate of each of k draft positions."""
        if len(self.rates) == 1:
            return np.full(k, self.rates[0])
        if len(self.rates) != k:
            raise SpecError("speculative.acceptance_rate", f"gives {len(self.rates)} per-position rates for "
                            f"num_speculative_tokens={k}; give one rate or exactly {k}", list(self.rates))
        return np.asarray(self.rates, dtype=float)

    def expected_tokens_per_step(self, k: int) -> float:
        """1 + sum over positions of the chance that every draft token up to it is accepted."""
        return 1.0 + float(np.cumprod(self.position_rates(k)).sum())


@dataclass(frozen=True)
class SpeculativeSpec:
    method: str
    num_speculative_tokens: int
    acceptance: AcceptanceModel
    draft_model: ModelSpec | None = None  # method "model": the drafter; others derive theirs from the target

    def __post_init__(self):
        if self.method not in DRAFT_METHODS:
            raise SpecError("speculative.method", f"must be one of {', '.join(DRAFT_METHODS)}", self.method)
        if not 1 <= self.num_speculative_tokens <= MAX_SPECULATIVE_TOKENS:
            raise SpecError("speculative.num_speculative_tokens", f"must be in [1, {MAX_SPECULATIVE_TOKENS}]",
                            self.num_speculative_tokens)
        if (self.method == "model") != (self.draft_model is not None):
            raise SpecError("speculative.draft_model", "is needed by method model and only by it", self.method)
        self.acceptance.position_rates(self.num_speculative_tokens)

    @property
    def tokens_per_seq(self) -> int:
        """Query tokens each decoding sequence brings to the target's verification pass."""
        return self.num_speculative_tokens + 1

    @property
    def expected_tokens_per_step(self) -> float:
        return self.acceptance.expected_tokens_per_step(self.num_speculative_tokens)

    def check_target(self, target: ModelSpec) -> None:
        if self.draft_model is not None and self.draft_model.vocab_size != target.vocab_size:
            raise SpecError("speculative.draft_model", f"has a vocabulary of {self.draft_model.vocab_size} tokens "
                            f"but {target.name} has {target.vocab_size}; a drafter must share the target's "
                            "tokenizer", self.draft_model.name)
        if self.draft_model is not None:
            check_smaller("speculative.draft_model", self.draft_model, target, "a drafter")


def draft_layers_model(spec: SpeculativeSpec, target: ModelSpec) -> ModelSpec | None:
    """The model the drafter runs autoregressively: the draft model, or for EAGLE/MTP one decoder layer of
    the target's shape (its embedding and LM head are the target's); None for Medusa's parallel heads and
    n-gram lookup."""
    if spec.method == "model":
        return spec.draft_model
    if spec.method in ("medusa", "ngram"):
        return None
    return dataclasses.replace(target, name=f"{target.name}-{spec.method}-head", num_layers=1)


def draft_weight_bytes_per_gpu(spec: SpeculativeSpec, target: ModelSpec, quant: QuantSpec,
                               parallel: Parallelism) -> float:
    """Weights the drafter adds on each GPU: a whole draft model (kept in fp16, split like the target; vLLM
    runs the drafter at the target's TP); one target-shaped layer for EAGLE/MTP (embedding and LM head
    shared); for Medusa, k residual blocks (d x d) and k LM heads (d x vocab / tp) in fp16."""
    tp = parallel.tensor_parallel
    companion = companion_options(StepOptions(quant, parallel))
    if spec.method == "model":
        return weight_bytes_per_gpu(spec.draft_model, companion.quant, companion.parallel)
    d = target.hidden_size
    if spec.method == "ngram":
        return 0.0
    if spec.method == "medusa":
        per_head = d * d + d * math.ceil(target.vocab_size / tp)
        return spec.num_speculative_tokens * per_head * ops.ACT_BYTES
    layer = draft_layers_model(spec, target)
    return weight_bytes_per_gpu(layer, companion.quant, companion.parallel) - _ends_bytes(layer, tp)


def _ends_bytes(model: ModelSpec, tp: int) -> float:
    """Embedding and LM head bytes that weight_bytes_per_gpu counts (shared with the target for heads)."""
    d = model.hidden_size
    return math.ceil(model.vocab_size / tp) * d * ops.ACT_BYTES * (1 if model.tied_embeddings else 2)


def draft_kv_bytes_per_token_per_gpu(spec: SpeculativeSpec, target: ModelSpec, quant: QuantSpec,
                                     parallel: Parallelism) -> float:
    """KV the drafter caches per token of context on each GPU (none for Medusa's heads or n-gram lookup)."""
    layers = draft_layers_model(spec, target)
    if layers is None:
        return 0.0
    companion = companion_options(StepOptions(quant, parallel))
    return kv_bytes_per_token_per_gpu(layers, companion.quant, companion.parallel)


class DraftTimer:
    """Seconds, FLOPs and bytes of one step's drafting for a batch of decoding sequences.

    An autoregressive drafter (model, EAGLE, MTP) first takes in what the last verification accepted (the
    expected tokens per step, rounded: the mean in place of each sequence's own count) and proposes its first
    token, then runs k - 1 single-token steps, as vLLM's V1 proposers do. Medusa's heads run once over each
    sequence's last hidden state."""

    def __init__(self, spec: SpeculativeSpec, target: ModelSpec, hw: HardwareSpec, options: StepOptions):
        self.spec, self.hw = spec, hw
        layers = draft_layers_model(spec, target)
        self._timer = StepTimer(layers, hw, companion_options(options)) if layers is not None else None
        self._catch_up_tokens = max(1, round(spec.expected_tokens_per_step))
        self._target, self._tp = target, options.parallel.tensor_parallel
        self._heads_by_seqs: dict[int, StepTotals] = {}

    def step(self, context_tokens: np.ndarray) -> StepTotals:
        """Seconds, FLOPs and bytes of drafting k tokens for sequences with these cached contexts."""
        k, seqs = self.spec.num_speculative_tokens, len(context_tokens)
        if self.spec.method == "ngram":
            return NO_WORK
        if self._timer is None:
            return self._medusa(seqs)
        m = self._catch_up_tokens
        first = self._timer.step([m] * seqs, context_tokens.tolist(), seqs)
        if k == 1:
            return first
        context_sum, context_max = int(context_tokens.sum()) + m * seqs, int(context_tokens.max()) + m
        latency_s, _ = self._timer.decode_run(seqs, context_sum, context_max, k - 1)
        flops, nbytes = self._timer.decode_totals(seqs, context_sum, context_max, k - 1)
        return first.plus(StepTotals(float(latency_s.sum()), flops, nbytes))

    def prefill(self, new_tokens: list, cached_tokens: list) -> StepTotals:
        """Seconds, FLOPs and bytes of the drafter taking in prompt chunks: a draft model or an EAGLE/MTP
        layer caches its own K/V of every prompt token (vLLM runs the drafter over the prefill too); Medusa's
        heads and n-gram lookup (no layers to run) cache nothing."""
        if self._timer is None:
            return NO_WORK
        return self._timer.step(new_tokens, cached_tokens, 0)

    def _medusa(self, seqs: int) -> StepTotals:
        cached = self._heads_by_seqs.get(seqs)
        if cached is None:
            d, vocab = self._target.hidden_size, math.ceil(self._target.vocab_size / self._tp)
            fp16, k = QuantSpec(), self.spec.num_speculative_tokens
            heads = (ops.linear("medusa_block", seqs, d, d, fp16, count=k)
                     + ops.linear("medusa_lm_head", seqs, d, vocab, fp16, count=k))
            cached = op_totals(self.hw, heads)
            self._heads_by_seqs[seqs] = cached
        return cached
