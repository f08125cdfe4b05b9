"""Whether a run fits this machine: the simulator's memory, estimated before anything is allocated.

The constants are peak RSS measured with `/usr/bin/time -f %M infersim run S.yaml --out DIR` (run.png
included) on scenarios that grow one term at a time, minus the smaller run's peak:
- a request: 217 MB for 10 requests, 944 MB for 100,000 (7.3 KB each) on the lognormal 512/256-token
  Llama-2-7B / A100 workload of benchmarks/sim_speed.py; the simulation alone takes 6.0 KB a request at 1
  replica, 7.0 KB at 10 and 8.0 KB at 100, and 7.6 KB a replica (100,000 replicas of two requests);
- a step: one request of 1,000,000 then 4,000,000 output tokens running alone (a 16M-context tiny
  config.json model, block_size 1) peaks at 447 then 1,275 MB without run.png (276 B a timeline row) and
  1,942 MB with it (431 B a row);
- a sequence: 50 then 100 requests of 65,536 parallel sequences (max_num_seqs 1,048,576, so the KV cache
  preempts and resumes them) peak at 1,062 then 1,942 MB (270 B a sequence; 283 B with swap preemption).
  The sequences a run holds at once are bounded by max_num_seqs, but those preemptions leave memory that
  grows with all of them, so all are counted.
The estimate rounds each up. Steps are bounded above (`max_steps`), as the simulator alone knows how many
requests share a step: the bound is tight when requests run one at a time, and loose (up to the batch
size) when they share steps, where the per-request figure already holds their rows.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from infersim.roofline.errors import SpecError

START_BYTES = 250e6  # the interpreter, NumPy, SimPy and the compiled kernels
BYTES_PER_REQUEST = 8e3
BYTES_PER_REPLICA = 8e3
BYTES_PER_STEP = 450.0  # a timeline row, its arrays while the run is summarised, and its points in run.png
BYTES_PER_SEQUENCE = 300.0


class RunSize(NamedTuple):
    """What a run's memory grows with."""

    requests: int
    replicas: int = 1
    steps: int = 0  # an upper bound on the steps it takes (`max_steps`): each is a timeline row
    sequences: int = 0  # the requests' parallel sequences, all of them


def max_steps(prompt_tokens: np.ndarray, output_tokens: np.ndarray, chunk_tokens: int, max_model_len: int) -> int:
    """An upper bound on a run's steps, each a timeline row: a step that decodes advances at least one
    request by a token (a request's sequences decode together), so at most sum(output) steps decode; a step
    that only prefills processes a chunk (`chunk_tokens`: the smaller of the chunk size and the step's
    token budget) or finishes a prompt. Requests longer than `max_model_len` are rejected on arrival and
    take none. Recomputation after preemption is not counted."""
    served = prompt_tokens + output_tokens <= max_model_len
    chunks = -(-prompt_tokens[served].astype(np.int64) // chunk_tokens)
    return int(np.sum(output_tokens[served], dtype=np.int64) + np.sum(chunks) + np.count_nonzero(served))


def run_memory_bytes(size: RunSize) -> float:
    """Peak memory of simulating a run of `size` and writing the results."""
    return (START_BYTES + size.requests * BYTES_PER_REQUEST + size.replicas * BYTES_PER_REPLICA
            + size.steps * BYTES_PER_STEP + size.sequences * BYTES_PER_SEQUENCE)


def available_memory_bytes() -> float:
    """Memory this process can take: Linux's MemAvailable, else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(size: RunSize, available_bytes: float | None = None,
                 lengths_field: str = "workload.output_tokens") -> None:
    """Refuse up front a run that would not fit in memory, naming what makes it large (`lengths_field`
    for its steps: where its lengths come from), the estimate and the machine's memory."""
    need = run_memory_bytes(size)
    have = available_memory_bytes() if available_bytes is None else available_bytes
    if need > have:
        field, what, fix = max(_terms(size, lengths_field))[1:]
        raise SpecError(field, f"{what} need ~{_gigabytes(need)} GB, more than this machine's {_gigabytes(have)} GB "
                        f"available; {fix}")


def _terms(size: RunSize, lengths_field: str) -> list[tuple]:
    """(bytes, field, what, fix) of each way a run grows."""
    requests = f"{size.requests:,} requests"
    replicas = f"{requests} x {size.replicas:,} replica{'s' if size.replicas > 1 else ''}"
    return [(size.requests * BYTES_PER_REQUEST, "workload.num_requests", replicas, "simulate fewer requests"),
            (size.replicas * BYTES_PER_REPLICA, "cluster.replicas", replicas, "simulate fewer requests"),
            (size.steps * BYTES_PER_STEP, lengths_field, f"{requests} taking up to {size.steps:,} steps (one per "
             "output token when each runs alone)", "simulate fewer or shorter requests"),
            (size.sequences * BYTES_PER_SEQUENCE, "workload.num_seqs", f"{requests} of "
             f"{size.sequences // max(1, size.requests):,} sequences each", "simulate fewer sequences")]


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.0f}" if n_bytes >= 10e9 else f"{n_bytes / 1e9:.2g}"
