"""Where speculative decoding stops paying: the target's seconds per emitted token with an EAGLE head (k = 3,
acceptance 0.8) against plain decoding, for Llama-3.1-8B on one H100, over batch sizes and context lengths.
Verification computes k + 1 tokens per sequence: free while decode is bound by reading weights and KV, a
loss once the GEMMs turn compute-bound (large batches of short contexts).

    python benchmarks/speculative_flip.py

Prints the speed-up table and the batch where it falls below 1 for each context; writes
benchmarks/results/speculative_flip.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infersim.roofline import StepOptions, get_hardware, get_model
from infersim.roofline.latency import StepTimer
from infersim.roofline.speculative import PRESETS, AcceptanceModel, DraftTimer, SpeculativeSpec

MODEL, GPU = get_model("llama-3.1-8b"), get_hardware("h100-sxm")
BATCHES = (1, 8, 32, 64, 128, 192, 256, 384, 512, 1024)
CONTEXTS = (128, 512, 1024, 4096)


def speedup(spec: SpeculativeSpec, seqs: int, context: int) -> float:
    """Plain decode step seconds over (verification + drafting) seconds per expected emitted token."""
    timer = StepTimer(MODEL, GPU, StepOptions())
    plain = timer.step([1] * seqs, [context] * seqs, seqs).latency_s
    verify = timer.step([spec.tokens_per_seq] * seqs, [context] * seqs, seqs * spec.tokens_per_seq).latency_s
    draft_s = DraftTimer(spec, MODEL, GPU, StepOptions()).step(np.full(seqs, context))[0]
    return plain / ((verify + draft_s) / spec.expected_tokens_per_step)


def main() -> None:
    preset = PRESETS["eagle"]
    spec = SpeculativeSpec(preset.method, preset.num_speculative_tokens, AcceptanceModel((preset.acceptance_rate,)))
    table = {context: {seqs: speedup(spec, seqs, context) for seqs in BATCHES} for context in CONTEXTS}
    print("speed-up per emitted token, EAGLE k=3 a=0.8, Llama-3.1-8B on H100 (rows: context tokens)")
    print("context " + "".join(f"{b:>7}" for b in BATCHES))
    for context, row in table.items():
        print(f"{context:>7} " + "".join(f"{row[b]:>7.2f}" for b in BATCHES))
    flips = {context: next((b for b in BATCHES if row[b] < 1), None) for context, row in table.items()}
    for context, batch in flips.items():
        print(f"context {context}: " + (f"loses from batch {batch}" if batch else f"still pays at batch {BATCHES[-1]}"))
    out = Path(__file__).resolve().parent / "results" / "speculative_flip.json"
    out.write_text(json.dumps({"model": MODEL.name, "hardware": GPU.name, "method": spec.method,
                               "num_speculative_tokens": spec.num_speculative_tokens,
                               "acceptance_rate": preset.acceptance_rate,
                               "speedup": {str(c): {str(b): v for b, v in row.items()} for c, row in table.items()},
                               "first_losing_batch": {str(c): b for c, b in flips.items()}}, indent=1))


if __name__ == "__main__":
    main()
