"""Early exit in the simulator: a decode step runs as deep as its deepest token, which batching pushes
toward the full depth; the K/V of skipped layers cost what their fill policy says."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import SpecError, StepOptions, get_hardware, get_model
from infersim.roofline.early_exit import EarlyExitSpec, expected_batch_depth
from infersim.sim.early_exit import EarlyExit
from infersim.sim.engines import preset_config
from infersim.sim.run import requests_from, simulate
from infersim.sim.workload import Workload

LLAMA_8B = get_model("llama-3.1-8b")
H100 = get_hardware("h100-sxm")
HALF_AT_HALF = EarlyExitSpec((0.5, 1.0), (0.5, 0.5))  # half the tokens exit after 16 of 32 layers


def test_exit_fractions_round_up_to_a_layer():
    # 32 layers: 0.25 -> layer 8, 0.3 -> ceil(9.6) = 10, 1.0 -> 32
    pmf = EarlyExitSpec((0.25, 0.3, 1.0), (0.2, 0.3, 0.5)).layer_probabilities(32)
    assert pmf[7] == 0.2 and pmf[9] == 0.3 and pmf[31] == 0.5 and pmf.sum() == pytest.approx(1.0)


def test_bad_exit_distributions_are_refused_with_their_field():
    with pytest.raises(SpecError, match=r"^early_exit.probabilities: must be >= 0 and sum to 1 \(within 0.001; these "
                                        r"sum to 1.1\), got \[0.5, 0.6\]$"):
        EarlyExitSpec((0.5, 1.0), (0.5, 0.6))
    with pytest.raises(SpecError, match="early_exit.exit_fractions"):
        EarlyExitSpec((1.0, 0.5), (0.5, 0.5))
    # every token leaving by 60% of the depth would leave the last layers unrun by any generated token: the
    # full depth is always an exit (the model's own head)
    with pytest.raises(SpecError) as info:
        EarlyExitSpec((0.5, 0.6), (0.3, 0.7))
    assert str(info.value) == ("early_exit.exit_fractions: must end at 1, the full depth, where every token no "
                               "earlier exit takes leaves: add 1, with the probability of running every layer, "
                               "got [0.5, 0.6]")


def test_drawn_batch_depths_follow_the_max_of_the_batch():
    exit_ = EarlyExit(HALF_AT_HALF, LLAMA_8B)
    rng = np.random.default_rng(0)
    for seqs in (1, 2, 8):
        depths = np.array([exit_.draw_depth(seqs, rng) for _ in range(20_000)])
        # a batch stops at layer 16 only if every token exits there: 0.5^b; else it runs all 32
        assert set(depths) == {16, 32}
        assert (depths == 16).mean() == pytest.approx(0.5 ** seqs, abs=0.012)
        # E[depth] = 16 + 16 (1 - 0.5^b): 24, 28, 31.94; the same as expected_batch_depth's sum
        assert depths.mean() == pytest.approx(expected_batch_depth(HALF_AT_HALF.layer_probabilities(32), seqs),
                                              abs=0.2)


def _run(early_exit, rate_per_s, n=150):
    cfg = dataclasses.replace(preset_config("vllm-v1", LLAMA_8B, H100, StepOptions(), 4096), early_exit=early_exit)
    rng = np.random.default_rng(0)
    workload = Workload(np.cumsum(rng.exponential(1 / rate_per_s, n)), np.full(n, 200), np.full(n, 200))
    return simulate(cfg, requests_from(workload)).summary


def test_early_exit_pays_alone_and_fades_in_a_batch():
    alone = _run(None, 0.2), _run(HALF_AT_HALF, 0.2)
    busy = _run(None, 20.0), _run(HALF_AT_HALF, 20.0)
    # nearly one request at a time: mean depth ~24 of 32 layers, a ~20% shorter time per token (the ends and
    # the copied K/V projections do not shrink)
    assert alone[1]["early_exit_depth_mean"] == pytest.approx(0.75, abs=0.03)
    assert alone[1]["tpot_s"]["mean"] < 0.85 * alone[0]["tpot_s"]["mean"]
    # ~20 sequences per step: 1 - 0.5^20 of the steps run all 32 layers
    assert busy[1]["early_exit_depth_mean"] > 0.97
    assert busy[1]["tpot_s"]["mean"] > 0.95 * busy[0]["tpot_s"]["mean"]


def test_recomputing_skipped_layers_gives_the_saving_back():
    recompute = _run(dataclasses.replace(HALF_AT_HALF, kv_fill="recompute"), 0.2)
    plain = _run(None, 0.2)
    assert recompute["early_exit_depth_mean"] == 1.0
    assert recompute["tpot_s"]["mean"] == pytest.approx(plain["tpot_s"]["mean"], rel=0.02)


def test_an_exit_that_never_comes_early_reproduces_plain_decoding():
    """Every token at full depth: the early-exit path (one step at a time, each costed as a ragged batch)
    gives the plain run's numbers, stepped one iteration at a time."""
    rng = np.random.default_rng(1)
    n = 80
    workload = Workload(np.cumsum(rng.exponential(1 / 4.0, n)), rng.integers(50, 400, n), rng.integers(20, 200, n))
    base = preset_config("vllm-v1", LLAMA_8B, H100, StepOptions(), 4096)
    # a technique's steps cost no CUDA-graph padding rows (sim/replica.py), so neither does the plain run here
    base = dataclasses.replace(base, kernels=dataclasses.replace(base.kernels, padded_sizes=()))
    plain = simulate(dataclasses.replace(base, jumps=False), requests_from(workload)).summary
    full_depth = simulate(dataclasses.replace(base, early_exit=EarlyExitSpec((1.0,), (1.0,))),
                          requests_from(workload)).summary
    assert full_depth.pop("early_exit_depth_mean") == 1.0
    assert full_depth.keys() == plain.keys()
    for key, value in plain.items():
        if value is None:  # no SLO set: no goodput
            assert full_depth[key] is None
        else:
            assert full_depth[key] == pytest.approx(value, rel=1e-9), key


def test_probabilities_written_to_a_few_digits_are_scaled_to_sum_to_one():
    # thirds as 0.3333 and 0.6666 sum to 0.9999: scaled, 0.3333 / 0.9999 = 1/3 and 0.6666 / 0.9999 = 2/3
    spec = EarlyExitSpec((0.5, 1.0), (0.3333, 0.6666))
    assert spec.probabilities == pytest.approx((1 / 3, 2 / 3), rel=1e-12) and sum(spec.probabilities) == pytest.approx(1.0)
