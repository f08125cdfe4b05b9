"""A request and its progress: waiting -> prefilling -> decoding (-> preempted: waiting again, or swapped
-> decoding) -> done; or rejected on arrival.

A request asks for `output_tokens` tokens after a `prompt_tokens` prompt, in `num_seqs` parallel
sequences (n samples or beams) that share the prompt's KV blocks. Its running sequences live as rows of
its scheduler's decode batch (`sim.batch.DecodeBatch`) and its blocks are counted by the KV cache manager;
the request keeps only counters and timestamps, so no Python object exists per token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

WAITING, PREFILLING, DECODING, SWAPPED, DONE, REJECTED = (
    "waiting", "prefilling", "decoding", "swapped", "done", "rejected")


@dataclass(slots=True, eq=False)
class Request:
    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    num_seqs: int = 1
    priority: int = 0  # higher runs first
    prefix_id: int = -1  # requests with the same id start with the same `prefix_tokens` tokens
    prefix_tokens: int = 0

    state: str = WAITING
    replica: int = -1
    generated_tokens: int = 0  # per sequence
    prefill_tokens: int = 0  # tokens the current (re)computation of the context must process
    prefilled_tokens: int = 0  # of those, already in the KV cache
    kv_arrived: bool = False  # its context's KV cache came with it (prefilled on another replica)
    first_scheduled_s: float = math.nan
    first_token_s: float = math.nan
    last_token_s: float = math.nan
    completion_s: float = math.nan
    max_itl_s: float = 0.0
    preemptions: int = 0
    reject_reason: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def remaining_tokens(self) -> int:
        return self.output_tokens - self.generated_tokens

    @property
    def cached_context_tokens(self) -> int:
        """Tokens whose K/V a running request has cached: the prompt and every generated token but the
        last, which is sampled and written by the next step."""
        return self.prompt_tokens + self.generated_tokens - 1

    def start_prefill(self, cached_tokens: int) -> None:
        """(Re)compute the context: the prompt plus every token generated so far (vLLM's recompute
        preemption treats them as one longer prompt); `cached_tokens` are already in a prefix cache."""
        self.prefill_tokens = self.prompt_tokens + self.generated_tokens
        self.prefilled_tokens = cached_tokens
        self.state = PREFILLING

    def emit_token(self, now_s: float) -> None:
        """The step ending at `now_s` produced one token for each sequence."""
        if self.generated_tokens == 0:
            self.first_token_s = now_s
        else:
            self.max_itl_s = max(self.max_itl_s, now_s - self.last_token_s)
        self.generated_tokens += 1
        self.last_token_s = now_s


# What serving a request changes in it (the rest is what it asked for)
OUTCOME_FIELDS = ("state", "replica", "generated_tokens", "prefill_tokens", "prefilled_tokens", "kv_arrived",
                  "first_scheduled_s", "first_token_s", "last_token_s", "completion_s", "max_itl_s", "preemptions",
                  "reject_reason")


def outcomes(requests: list[Request]) -> dict[str, list]:
    """The outcome fields of the requests, a list each (cheap to send to another process, unlike the
    requests themselves)."""
    return {name: [getattr(r, name) for r in requests] for name in OUTCOME_FIELDS}


def set_outcomes(requests: list[Request], columns: dict[str, list]) -> None:
    """Write `outcomes` of copies of the requests back into them."""
    for name, values in columns.items():
        for req, value in zip(requests, values):
            setattr(req, name, value)
