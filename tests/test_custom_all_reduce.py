"""Engines' own all-reduce kernels (roofline/custom_all_reduce.py): the one-shot and two-shot costs, each
engine's rule for when they run, the presets' choices and the scenario knob."""
import dataclasses

import numpy as np
import pytest

from infersim.roofline import SpecError, get_hardware
from infersim.roofline import collectives
from infersim.roofline.custom_all_reduce import all_reduce_s
from infersim.roofline.kernel_set import KernelSet
from infersim.sim.engines import ENGINES

MiB = 2 ** 20


def h100_in_graph():
    """An HGX H100's fabric as a graph replay sees it: 450 GB/s each way, 1.0 us per call."""
    return dataclasses.replace(get_hardware("h100-sxm"), collective_call_s=1e-6).fabric


def test_one_shot_reads_every_peers_whole_buffer_after_two_barriers():
    # vLLM, 4 H100s, 64 KiB (< 512 KiB: one-shot): 1.0 us call + 2 x 1.4 us barriers + 3 x 65536 B read
    # at 0.26 x 450 GB/s = 117 GB/s (1.6805 us) = 5.4805 us
    assert all_reduce_s(h100_in_graph(), "vllm-custom", 65536, 4) == pytest.approx(5.4805e-6, rel=1e-4)
    # TensorRT-LLM, 2 H100s, 4 MiB (one-shot up to its 16 MB workspace): 1.0 + 2.8 us + 4194304 B at
    # 0.29 x 450 = 130.5 GB/s (32.140 us) = 35.940 us
    assert all_reduce_s(h100_in_graph(), "trtllm", 4 * MiB, 2) == pytest.approx(35.940e-6, rel=1e-4)


def test_two_shot_reads_twice_the_share_of_the_payload_that_peers_hold_after_three_barriers():
    # vLLM, 4 H100s, 4 MiB (>= 512 KiB: two-shot): 1.0 us + 3 x 1.4 us + 2 x 3/4 x 4194304 B = 6291456 B
    # at 117 GB/s (53.773 us) = 58.973 us
    assert all_reduce_s(h100_in_graph(), "vllm-custom", 4 * MiB, 4) == pytest.approx(58.973e-6, rel=1e-4)
    # 8 GPUs switch to two-shot from 256 KiB: 1.0 + 4.2 us + 2 x 7/8 x 262144 B = 458752 B (3.9209 us)
    assert all_reduce_s(h100_in_graph(), "vllm-custom", 256 * 1024, 8) == pytest.approx(9.1209e-6, rel=1e-4)


def test_payloads_beyond_an_engines_limit_go_to_nccl():
    fabric = h100_in_graph()
    for engine, payload, gpus in (("vllm-custom", 8 * MiB, 4),  # vLLM: under 8 MiB only
                                  ("trtllm", 1e6, 4),  # AUTO on 4 GPUs: one-shot below 1 MB, no two-shot
                                  ("trtllm", 500e3, 8),  # ... below 500 kB on 8
                                  ("trtllm", 16e6 + 16, 2)):  # ... up to the 16 MB workspace on 2
        assert all_reduce_s(fabric, engine, payload, gpus) == collectives.all_reduce_s(fabric, payload, gpus)
    # 16 B under the limit vLLM runs its two-shot, even where NCCL's model is faster (74 us): engines pick by
    # size, not by cost. 1.0 + 4.2 us + 1.5 x 8388592 B = 12582888 B at 117 GB/s (107.546 us) = 112.746 us
    assert all_reduce_s(fabric, "vllm-custom", 8 * MiB - 16, 4) == pytest.approx(112.746e-6, rel=1e-4)


def test_pcie_nodes_and_unsupported_gpu_counts_fall_back_to_nccl_but_vllm_pairs_peers_over_pcie():
    l40s = dataclasses.replace(get_hardware("l40s"), collective_call_s=1e-6).fabric
    for engine in ("vllm-custom", "trtllm"):
        assert all_reduce_s(l40s, engine, 65536, 4) == collectives.all_reduce_s(l40s, 65536, 4)
        assert all_reduce_s(h100_in_graph(), engine, 65536, 3) == collectives.all_reduce_s(h100_in_graph(), 65536, 3)
    # vLLM runs its kernel on two PCIe GPUs (`should_custom_ar`: world size 2 or fully connected): L40S
    # PCIe Gen4 x16 32 GB/s each way; 1.0 + 2.8 us + 65536 B at 0.26 x 32 GB/s (7.8769 us) = 11.677 us
    assert all_reduce_s(l40s, "vllm-custom", 65536, 2) == pytest.approx(11.677e-6, rel=1e-4)
    assert all_reduce_s(l40s, "trtllm", 65536, 2) == collectives.all_reduce_s(l40s, 65536, 2)  # needs NVLink


def test_an_array_of_payloads_takes_each_ones_kernel():
    fabric, sizes = h100_in_graph(), np.array([65536.0, 4 * MiB, 8 * MiB])
    expected = [all_reduce_s(fabric, "vllm-custom", float(s), 4) for s in sizes]
    assert np.allclose(all_reduce_s(fabric, "vllm-custom", sizes, 4), expected, rtol=1e-12, atol=0)
    assert all_reduce_s(fabric, "vllm-custom", 65536, 1) == 0.0  # one GPU reduces nothing


def test_presets_run_their_engines_all_reduce_inside_and_outside_graphs():
    h100 = get_hardware("h100-sxm")
    rules = {name: preset.defaults(h100, 8192, 4).kernels for name, preset in ENGINES.items()}
    assert {name: k.all_reduce for name, k in rules.items()} == {
        "vllm-v1": "vllm-custom", "vllm-v1-0.8": "vllm-custom", "vllm-v0": "vllm-custom", "sglang": "vllm-custom",
        "trtllm": "trtllm", "trtllm-cpp": "trtllm"}
    for kernels in rules.values():
        assert kernels.in_graph(h100).all_reduce == kernels.eager(h100).all_reduce == kernels.all_reduce
    assert h100.all_reduce == "nccl"  # the hardware alone, with no engine: NCCL


def test_the_nccl_rule_prices_every_all_reduce_as_nccl_does():
    fabric = h100_in_graph()
    assert all_reduce_s(fabric, "nccl", 65536, 4) == collectives.all_reduce_s(fabric, 65536, 4)


def test_a_kernel_set_names_the_bad_all_reduce_and_the_allowed_ones():
    with pytest.raises(SpecError, match=r"engine\.all_reduce.*must be one of nccl, vllm-custom, trtllm"):
        KernelSet(all_reduce="gloo")


def test_a_scenario_overrides_the_presets_all_reduce_and_rejects_an_unknown_one(engine_scenario):
    from infersim.scenario import load_run
    assert load_run(engine_scenario(", all_reduce: nccl", tensor_parallel=2))[1].kernels.all_reduce == "nccl"
    assert load_run(engine_scenario("", tensor_parallel=2))[1].kernels.all_reduce == "vllm-custom"
    with pytest.raises(SpecError, match=r"engine\.all_reduce.*must be one of nccl, vllm-custom, trtllm"):
        load_run(engine_scenario(", all_reduce: custom", tensor_parallel=2))
