"""StepTimer is a cache and a vectoriser over the roofline: every number it gives must equal step_cost's."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infersim.roofline import (Batch, Parallelism, StepOptions, decode_batch, get_hardware, get_model, get_quant,
                               step_cost)
from infersim.roofline.latency import StepTimer

SETUPS = {
    "llama-2-7b a100": (get_model("llama-2-7b"), get_hardware("a100-sxm-80gb"), StepOptions()),
    "llama-3.1-70b h100 tp4 fp8": (get_model("llama-3.1-70b"), get_hardware("h100-sxm"),
                                   StepOptions(quant=get_quant("fp8"), parallel=Parallelism(4))),
    "mixtral pp2 greedy": (get_model("mixtral-8x7b"), get_hardware("h200"),
                           StepOptions(parallel=Parallelism(1, 2), sampling="greedy")),
    "llama-2-7b no flash": (get_model("llama-2-7b"), get_hardware("a100-sxm-80gb"),
                            StepOptions(flash_attention=False)),
}
TIMERS = {name: StepTimer(*setup) for name, setup in SETUPS.items()}


@settings(max_examples=40, deadline=None)
@given(setup=st.sampled_from(sorted(SETUPS)), contexts=st.lists(st.integers(0, 3000), min_size=1, max_size=40),
       steps=st.integers(1, 12))
def test_a_decode_run_costs_what_step_cost_gives_each_of_its_steps(setup, contexts, steps):
    model, hw, options = SETUPS[setup]
    timer = TIMERS[setup]
    c = np.array(contexts)
    latency_s, end_s = timer.decode_run(len(c), int(c.sum()), int(c.max()), steps, start_s=2.0)
    overlapped_s, _ = timer.decode_run(len(c), int(c.sum()), int(c.max()), steps, 0.015, host_overlaps=True)
    flops, nbytes = timer.decode_totals(len(c), int(c.sum()), int(c.max()), steps)
    # step j of the run decodes every sequence once more: each context has grown by j
    costs = [step_cost(model, hw, decode_batch(c + j), options) for j in range(steps)]
    assert latency_s == pytest.approx([cost.time_s for cost in costs], rel=1e-9)
    assert end_s == pytest.approx(2.0 + np.cumsum([cost.time_s for cost in costs]), rel=1e-12)
    assert overlapped_s == pytest.approx([max(cost.time_s, 0.015) for cost in costs], rel=1e-9)
    assert flops == pytest.approx(sum(cost.flops for cost in costs), rel=1e-9)
    assert nbytes == pytest.approx(sum(cost.bytes for cost in costs), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(setup=st.sampled_from(sorted(SETUPS)),
       seqs=st.lists(st.tuples(st.integers(1, 600), st.integers(0, 2000), st.booleans()), min_size=1, max_size=12))
def test_a_ragged_step_costs_what_step_cost_gives(setup, seqs):
    model, hw, options = SETUPS[setup]
    new, cached, samples = zip(*seqs)
    latency_s, flops, nbytes = TIMERS[setup].step(list(new), list(cached), sum(samples))
    cost = step_cost(model, hw, Batch(new, cached, samples), options)
    assert (latency_s, flops, nbytes) == pytest.approx((cost.time_s, cost.flops, cost.bytes), rel=1e-9)


def test_decode_attention_per_key_is_one_k_and_v_row_and_two_head_dim_products_per_head():
    from infersim.roofline.ops import decode_attention_affine
    # Llama-2-7B layer, fp16: a key brings K and V of 32 heads x 128 = 2 x 4096 x 2 B = 16,384 B, and each
    # of the 32 query heads spends 2 x 128 FLOPs on q.k and 2 x 128 on p.v: 32 x 512 = 16,384 FLOPs, plus
    # one exponential and 4 vector FLOPs per head. The fixed part: 8 queries' Q read and O written,
    # 8 x 4096 x 2 B each way.
    fixed, per_key = decode_attention_affine(8, 32, 32, 128, get_quant("fp16"))
    assert (per_key.kv_read_bytes, per_key.flops, per_key.exp_ops, per_key.vector_flops) == (16384, 16384, 32, 128)
    assert (fixed.act_read_bytes, fixed.act_write_bytes, fixed.flops) == (65536, 65536, 0)
