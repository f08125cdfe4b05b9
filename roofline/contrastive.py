"""Contrastive decoding (Li et al. 2023, "Contrastive Decoding: Open-ended Text Generation as
Optimization"): every token is chosen by log p_expert - log p_amateur over the expert's plausible head, so
serving it runs a second, smaller "amateur" model over everything the expert sees: each prompt chunk and
each decode token, with its own weights and KV cache (kernels/contrastive_decoding.py has the scoring)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import SpecError
from .models import ModelSpec, check_smaller


@dataclass(frozen=True)
class ContrastiveSpec:
    amateur: ModelSpec

    def check_expert(self, expert: ModelSpec) -> None:
        if self.amateur.vocab_size != expert.vocab_size:
            raise SpecError("contrastive.amateur_model", f"has a vocabulary of {self.amateur.vocab_size} tokens but "
                            f"{expert.name} has {expert.vocab_size}; the two models' scores are compared token by "
                            "token, so they must share a tokenizer", self.amateur.name)
        check_smaller("contrastive.amateur_model", self.amateur, expert, "the amateur")
