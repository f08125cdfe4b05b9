"""The launch model of the GPU validation (`kernels.launch`): waves, the SMs a grid occupies, the units its
products run on; every expected value worked by hand."""
import dataclasses

import pytest

from infersim.kernels.launch import Launch, Wave, launch_compute_s, launch_memory_s, launch_predict, waves
from infersim.kernels.validate import predict
from infersim.roofline import get_hardware, ops
from infersim.roofline.hardware import HardwareSpec

# 4 SMs; fp16 tensor peak 1 TFLOP/s, CUDA cores 0.1 TFLOP/s; 100 GB/s DRAM, 10 GB/s per SM; nothing lost to
# efficiency factors
GPU = HardwareSpec(name="test-gpu", peak_flops_per_s={"fp32": 1e11, "fp16": 1e12}, vector_flops_per_s=1e11,
                   memory_bytes=8e9, memory_bandwidth_bytes_per_s=1e11, l2_bytes=1e6, sram_per_sm_bytes=1e5,
                   sm_count=4, interconnect_bandwidth_bytes_per_s=1e10, host_link_bandwidth_bytes_per_s=1e10,
                   gemm_tiles=(), compute_efficiency=1.0, memory_efficiency=1.0, vector_bandwidth_efficiency=1.0,
                   launch_overhead_s=1e-6, sm_dram_bandwidth_bytes_per_s=1e10)
PRODUCTS = ops.OpCost(name="attention", kind="attention", flops=4e9, dtype="fp16")  # 4 ms at the fp16 peak
STREAM = ops.OpCost(name="stream", kind="vector", act_read_bytes=1e9)  # 10 ms at the chip's bandwidth


def test_waves_are_the_full_ones_and_the_partial_last_one():
    assert waves(64, 132) == [Wave(1.0, 64)]  # fewer blocks than SMs: one wave on 64 SMs
    assert waves(264, 132) == [Wave(1.0, 132)]  # two full waves
    assert waves(133, 132) == [Wave(132 / 133, 132), Wave(1 / 133, 1)]  # one block spills into a second wave
    # SMs holding 8 blocks each: 144 blocks run at once on all 132 SMs; 1100 = 1056 (a full wave) + 44
    assert waves(144, 132, 8) == [Wave(1.0, 132)]
    assert waves(1100, 132, 8) == [Wave(1056 / 1100, 132), Wave(44 / 1100, 44)]


def test_a_grid_on_fewer_sms_than_the_chip_computes_at_their_share():
    # 4 ms on 4 SMs; 1 block: one SM, 16 ms; 5 blocks: 4/5 of the work on 4 SMs (3.2 ms), then 1/5 of it
    # on one SM (4 ms / 5 x 4 = 3.2 ms): 6.4 ms
    assert launch_compute_s(GPU, PRODUCTS, Launch(4, tensor_cores=True)) == pytest.approx(4e-3)
    assert launch_compute_s(GPU, PRODUCTS, Launch(1, tensor_cores=True)) == pytest.approx(16e-3)
    assert launch_compute_s(GPU, PRODUCTS, Launch(5, tensor_cores=True)) == pytest.approx(6.4e-3)
    # two blocks a SM: the 5 blocks run in one wave on all 4 SMs, 4 ms
    assert launch_compute_s(GPU, PRODUCTS, Launch(5, tensor_cores=True, blocks_per_sm=2)) == pytest.approx(4e-3)


def test_products_on_cuda_cores_run_at_the_vector_rate_and_fp16_at_twice_it():
    # 4e9 FLOPs at 0.1 TFLOP/s: 40 ms in fp32; half2 doubles it: 20 ms
    fp32 = dataclasses.replace(PRODUCTS, dtype="fp32")
    assert launch_compute_s(GPU, fp32, Launch(4, tensor_cores=False)) == pytest.approx(40e-3)
    assert launch_compute_s(GPU, PRODUCTS, Launch(4, tensor_cores=False)) == pytest.approx(20e-3)


def test_a_grid_on_few_sms_draws_only_their_dram_bandwidth():
    # 1 GB: the chip's 100 GB/s give 10 ms; one SM draws 10 GB/s (100 ms), four 40 GB/s (25 ms)
    assert launch_memory_s(GPU, STREAM, Launch(1, tensor_cores=False)) == pytest.approx(0.1)
    assert launch_memory_s(GPU, STREAM, Launch(4, tensor_cores=False)) == pytest.approx(25e-3)
    no_per_sm_figure = dataclasses.replace(GPU, sm_dram_bandwidth_bytes_per_s=None)
    assert launch_memory_s(no_per_sm_figure, STREAM, Launch(1, tensor_cores=False)) == pytest.approx(10e-3)


def test_each_kernel_launched_pays_the_launch_overhead():
    # 3 launches of 1 us after 25 ms of memory-bound streaming on 4 SMs (no compute: the smooth maximum is
    # the memory time itself)
    p = launch_predict(GPU, [STREAM], Launch(4, tensor_cores=False, launches=3))
    assert p["launch_s"] == pytest.approx(3e-6)
    assert p["predicted_s"] == pytest.approx(25e-3 + 3e-6)


def test_batch_1_top_p_on_one_block_of_an_h200_streams_at_one_sms_bandwidth():
    # the sampling op over a 128256-token vocabulary moves 22 bytes a token (2 + 4 read, 4 + 4 + 8 written):
    # 2,821,632 bytes; one H200 SM keeps 2048 x 16 bytes in flight over 550 ns (roofline/hardware.py):
    # 2821632 / 32768 x 550 ns = 47.36 us, where the whole chip (4.8 TB/s x 0.46) would take 1.28 us
    h200 = get_hardware("h200")
    op = ops.sampling(1, 128256, "top_p")
    assert op.bytes == 2_821_632
    assert launch_memory_s(h200, op, Launch(1, tensor_cores=False)) == pytest.approx(47.36e-6, rel=1e-4)
    assert launch_memory_s(h200, op, Launch(132, tensor_cores=False)) == pytest.approx(1.278e-6, rel=1e-3)


def test_the_validation_predicts_a_case_with_a_launch_on_its_grid():
    with_launch = predict(GPU, [STREAM], Launch(1, tensor_cores=False))
    assert with_launch["memory_s"] == pytest.approx(0.1) and with_launch["bytes"] == 1e9
    assert predict(GPU, [STREAM])["memory_s"] == pytest.approx(10e-3)  # without one, the roofline's own


def test_a_launch_without_blocks_is_refused_in_one_line():
    with pytest.raises(ValueError, match="thread_blocks=0"):
        Launch(0, tensor_cores=True)
