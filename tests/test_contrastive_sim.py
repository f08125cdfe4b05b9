"""Contrastive decoding in the simulator: both models run every step, and the amateur's memory comes off the
KV cache."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import SpecError, StepOptions, get_hardware, get_model
from infersim.roofline.contrastive import ContrastiveSpec
from infersim.roofline.latency import StepTimer
from infersim.sim.engines import preset_config
from infersim.sim.run import requests_from, simulate, total_kv_blocks
from infersim.sim.workload import Workload

LLAMA_8B, LLAMA_1B = get_model("llama-3.1-8b"), get_model("llama-3.2-1b")
H100 = get_hardware("h100-sxm")


def _cfg(contrastive):
    return dataclasses.replace(preset_config("vllm-v1", LLAMA_8B, H100, StepOptions(), 4096), contrastive=contrastive)


def test_a_lone_request_decodes_at_the_sum_of_both_models_step_times():
    workload = Workload(np.zeros(1), np.array([500]), np.array([100]))
    plain = simulate(dataclasses.replace(_cfg(None), jumps=False), requests_from(workload)).summary
    both = simulate(_cfg(ContrastiveSpec(LLAMA_1B)), requests_from(workload)).summary
    graph_hw = _cfg(None).kernels.in_graph(H100)
    expert = StepTimer(LLAMA_8B, graph_hw, StepOptions()).step([1], [550], 1).latency_s
    amateur = StepTimer(LLAMA_1B, graph_hw, StepOptions()).step([1], [550], 1).latency_s
    # a decode step at context ~550 takes the expert's plus the amateur's GPU time (the host overlaps both)
    assert both["tpot_s"]["mean"] - plain["tpot_s"]["mean"] == pytest.approx(amateur, rel=0.05)
    assert both["tpot_s"]["mean"] == pytest.approx(expert + amateur, rel=0.05)


def test_the_amateur_takes_its_weights_and_kv_from_the_cache():
    # Llama-3.2-1B: 1,235,814,400 parameters x 2 B = 2.47 GB of weights; 16 layers x 8 KV heads x 64 x 2 x 2 B
    # = 32,768 B of K/V per token beside the 8B's 131,072: the cache holds fewer, larger token slots
    plain, both = total_kv_blocks(_cfg(None)), total_kv_blocks(_cfg(ContrastiveSpec(LLAMA_1B)))
    assert both < plain * 131_072 / (131_072 + 32_768)


def test_the_amateur_must_share_the_tokenizer():
    with pytest.raises(SpecError, match="must share a tokenizer"):
        simulate(_cfg(ContrastiveSpec(get_model("gpt2"))), [])
