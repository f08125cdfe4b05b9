"""Speculative decoding: the acceptance formula, the drafter's memory, the step's cost in both regimes, and the
simulator's draws against the formula."""
import dataclasses
import re

import numpy as np
import pytest
import yaml

from infersim.roofline import SpecError, StepOptions, get_hardware, get_model
from infersim.roofline.latency import StepTimer
from infersim.roofline.speculative import (AcceptanceModel, DraftTimer, SpeculativeSpec,
                                           draft_kv_bytes_per_token_per_gpu, draft_weight_bytes_per_gpu)
from infersim.roofline.quant import QuantSpec
from infersim.roofline.step import Parallelism
from infersim.scenario import load_run
from infersim.sim.engines import preset_config
from infersim.sim.run import requests_from, simulate
from infersim.sim.speculation import Speculation
from infersim.sim.workload import Workload

LLAMA_8B = get_model("llama-3.1-8b")
H100 = get_hardware("h100-sxm")


def test_a_constant_rate_gives_leviathans_expected_tokens():
    # (1 - a^(k+1)) / (1 - a) at a = 0.8, k = 4: 1 + 0.8 + 0.64 + 0.512 + 0.4096 = 3.3616
    assert AcceptanceModel((0.8,)).expected_tokens_per_step(4) == pytest.approx(3.3616)


def test_per_position_rates_multiply_along_the_draft():
    # 1 + 0.9 + 0.9 * 0.5 = 2.35
    assert AcceptanceModel((0.9, 0.5)).expected_tokens_per_step(2) == pytest.approx(2.35)


def test_per_position_rates_must_cover_every_drafted_token():
    with pytest.raises(SpecError, match="give one rate or exactly 3"):
        SpeculativeSpec("eagle", 3, AcceptanceModel((0.9, 0.5)))


def test_drawn_tokens_average_to_the_formula():
    spec = SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,)))
    draws = Speculation(spec, drafter=None).draw_emitted(200_000, np.random.default_rng(0))
    assert draws.min() == 1 and draws.max() == 4
    # 1 + 0.8 + 0.64 + 0.512 = 2.952; the draws' standard deviation is ~1.2, so 3 standard errors ~0.008
    assert draws.mean() == pytest.approx(2.952, abs=0.01)


def test_an_eagle_head_is_one_layer_of_the_target_sharing_its_embedding_and_head():
    spec = SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,)))
    # Llama-3.1-8B layer: q,k,v,o 4096 x (4096 + 2 x 1024) + 4096 x 4096 = 41,943,040; SwiGLU 3 x 4096 x 14,336
    # = 176,160,768; two RMSNorms 8,192: 218,112,000 parameters, 2 bytes each, plus its final norm (8,192 bytes)
    assert draft_weight_bytes_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == pytest.approx(436_232_192)
    # one layer's K and V: 8 KV heads x 128 x 2 x 2 bytes
    assert draft_kv_bytes_per_token_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == 4096


def test_medusa_heads_hold_a_block_and_an_lm_head_each_and_no_kv():
    spec = SpeculativeSpec("medusa", 3, AcceptanceModel((0.6,)))
    # 3 x (4096^2 + 4096 x 128,256) x 2 bytes
    assert draft_weight_bytes_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == 3_252_682_752
    assert draft_kv_bytes_per_token_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == 0


def test_a_draft_model_must_share_the_targets_vocabulary():
    spec = SpeculativeSpec("model", 4, AcceptanceModel((0.7,)), get_model("gpt2"))
    with pytest.raises(SpecError, match="share the target's tokenizer"):
        spec.check_target(LLAMA_8B)


def _seconds_per_token(seqs: int, context: int, spec: SpeculativeSpec | None) -> float:
    """Target-step seconds per emitted token of a decode batch, with or without speculation."""
    timer = StepTimer(LLAMA_8B, H100, StepOptions())
    if spec is None:
        return timer.step([1] * seqs, [context] * seqs, seqs).latency_s
    verify = timer.step([spec.tokens_per_seq] * seqs, [context] * seqs, seqs * spec.tokens_per_seq).latency_s
    draft_s = DraftTimer(spec, LLAMA_8B, H100, StepOptions()).step(np.full(seqs, context))[0]
    return (verify + draft_s) / spec.expected_tokens_per_step


def test_speculation_pays_at_small_batches_and_loses_once_verification_is_compute_bound():
    spec = SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,)))
    # batch 1: a decode step reads 16 GB of weights either way; verifying 4 tokens costs about what 1 does,
    # so each of the ~2.95 tokens costs about a third
    assert _seconds_per_token(1, 1024, None) / _seconds_per_token(1, 1024, spec) > 2
    # batch 512 of short contexts: 2,048 verified tokens per step put the GEMMs past the H100's ridge
    # (~300 FLOPs/byte), so verifying costs ~4x a decode step while emitting ~2.95x the tokens
    assert _seconds_per_token(512, 128, None) / _seconds_per_token(512, 128, spec) < 1
    # ... but with 4K-token contexts reading the KV cache dominates, and verification reads it once for all 4
    # tokens: speculation still pays at large batches (MagicDec, Sadhukhan et al. 2024, makes this point)
    assert _seconds_per_token(512, 4096, None) / _seconds_per_token(512, 4096, spec) > 1.5


def _run(speculative, rate_per_s=4.0, n=120, output_tokens=200, seed=0):
    cfg = dataclasses.replace(preset_config("vllm-v1", LLAMA_8B, H100, StepOptions(), 4096),
                              speculative=speculative, seed=seed)
    rng = np.random.default_rng(0)
    workload = Workload(np.cumsum(rng.exponential(1 / rate_per_s, n)), np.full(n, 300), np.full(n, output_tokens))
    return simulate(cfg, requests_from(workload))


def test_simulated_tokens_per_step_follow_the_acceptance_model():
    result = _run(SpeculativeSpec("eagle", 4, AcceptanceModel((0.7,))))
    # 1 + 0.7 + 0.49 + 0.343 + 0.2401 = 2.7731; a sequence's last step emits what it has left (at most
    # 200 tokens / 2.77 per step ~ 72 steps, so clipping lowers the mean by ~1%); ~8,700 draws of sd ~1.4
    assert result.summary["speculative_tokens_per_step"] == pytest.approx(2.7731, rel=0.03)
    assert result.summary["requests_completed"] == 120
    assert result.replicas[0].kv.pool.used_blocks == 0  # every block, accepted or not, came back


def test_speculation_cuts_time_per_output_token_at_light_load_and_is_reproducible():
    plain = _run(None).summary
    eagle = _run(SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,))))
    again = _run(SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,))))
    other_seed = _run(SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,))), seed=1)
    assert eagle.summary["tpot_s"]["mean"] < 0.6 * plain["tpot_s"]["mean"]
    assert eagle.summary == again.summary
    assert eagle.summary["tpot_s"] != other_seed.summary["tpot_s"]


def test_speculation_refuses_pipeline_parallelism():
    cfg = dataclasses.replace(preset_config("vllm-v1", LLAMA_8B, H100, StepOptions(parallel=Parallelism(1, 2)), 4096),
                              speculative=SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,))))
    with pytest.raises(SpecError, match="pipeline parallelism"):
        simulate(cfg, [])


def test_ngram_lookup_drafts_for_free_and_holds_no_memory():
    spec = SpeculativeSpec("ngram", 4, AcceptanceModel((0.5,)))
    assert draft_weight_bytes_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == 0
    assert draft_kv_bytes_per_token_per_gpu(spec, LLAMA_8B, QuantSpec(), Parallelism()) == 0
    assert DraftTimer(spec, LLAMA_8B, H100, StepOptions()).step(np.full(8, 512)) == (0.0, 0.0, 0.0)


def test_an_eagle_layer_takes_in_the_prompt_as_one_more_layer_of_the_target_would():
    spec = SpeculativeSpec("eagle", 3, AcceptanceModel((0.8,)))
    draft = DraftTimer(spec, LLAMA_8B, H100, StepOptions()).prefill([1000], [0])
    target = StepTimer(LLAMA_8B, H100, StepOptions()).step([1000], [0], 0)
    # no LM head (nothing is sampled) and an embedding lookup of no FLOPs: one of the target's 32 layers
    assert draft[1] == pytest.approx(target.flops / 32, rel=1e-6)
    assert DraftTimer(SpeculativeSpec("medusa", 3, AcceptanceModel((0.6,))), LLAMA_8B, H100,
                      StepOptions()).prefill([1000], [0]) == (0.0, 0.0, 0.0)


SCENARIO = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"max_model_len": 4096},
            "workload": {"num_requests": 10, "arrival": {"process": "poisson", "rate_per_s": 1},
                         "prompt_tokens": 100, "output_tokens": 10}}


@pytest.mark.parametrize("section, message", [
    ({"num_speculative_tokens": 3}, "needs a preset, or method, num_speculative_tokens and acceptance_rate "
                                    "(missing: method, acceptance_rate)"),
    ({"method": "eagle", "num_speculative_tokens": 3, "acceptance_rate": 0.8, "draft_model": "llama-3.2-1b"},
     "draft_model is needed by method model"),
    ({"method": "eagle", "num_speculative_tokens": 3, "acceptance_rate": [0.9, 0.8]},
     "speculative.acceptance_rate: gives 2 per-position rates for num_speculative_tokens=3"),
])
def test_a_bad_speculative_section_is_one_line_naming_the_key(tmp_path, section, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, "speculative": section}))
    with pytest.raises(SpecError, match=re.escape(message)):
        load_run(path)


def test_a_preset_can_be_overridden_key_by_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SCENARIO, "speculative": {"preset": "eagle",
                                                                             "num_speculative_tokens": 5}}))
    _, cfg, _ = load_run(path)
    assert (cfg.speculative.method, cfg.speculative.num_speculative_tokens) == ("eagle", 5)
    assert cfg.speculative.acceptance.rates == (0.8,)


@pytest.mark.parametrize("preset", ["vllm-v1", "vllm-v0", "sglang", "trtllm"])
def test_samples_of_one_request_finish_together_under_speculation(preset):
    """n = 2 samples draw one accepted run per step between them, so they finish in the same step."""
    cfg = dataclasses.replace(preset_config(preset, LLAMA_8B, H100, StepOptions(), 4096),
                              speculative=SpeculativeSpec("eagle", 4, AcceptanceModel((0.8,))))
    result = simulate(cfg, requests_from(Workload(np.array([0.0, 0.1]), np.array([100, 90]), np.array([50, 70])),
                                         num_seqs=2))
    assert [r.generated_tokens for r in result.requests] == [50, 70]
    assert result.replicas[0].kv.pool.used_blocks == 0


@pytest.mark.parametrize("preset", ["vllm-v1", "vllm-v0", "sglang", "trtllm"])
def test_a_request_near_its_end_reserves_only_the_blocks_it_can_still_fill(preset):
    """One request (100 prompt + 60 output tokens) in a cache of exactly its peak blocks: drafting 4 tokens
    per step must not reserve positions past its last token, so it never preempts itself."""
    base = preset_config(preset, LLAMA_8B, H100, StepOptions(), 4096)
    block = base.kv_cache.block_size_tokens
    kv_cache = dataclasses.replace(base.kv_cache, num_blocks=-(-159 // block), watermark_fraction=0.0)
    cfg = dataclasses.replace(base, kv_cache=kv_cache, speculative=SpeculativeSpec("eagle", 4, AcceptanceModel((0.8,))))
    result = simulate(cfg, requests_from(Workload(np.array([0.0]), np.array([100]), np.array([60]))))
    assert result.summary["requests_completed"] == 1 and result.summary["preemptions"] == 0
