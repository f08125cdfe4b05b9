"""What share of the chip a kernel's launch occupies, and the roofline seconds of its work on that share.

The roofline (`infersim.roofline.timing`) times an op as if it filled every SM. A real kernel launches a
grid of thread blocks, which the SMs run in waves of R blocks per SM, R the blocks one SM holds at once
(wave quantization, as LLMCompass models GEMM tiles, Zhang et al. ISCA 2024): `thread_blocks` blocks on S
SMs run floor(blocks / (R S)) full waves, then a last wave on the blocks left, spread over min(left, S)
SMs, each block doing an equal share of the work. A wave on n SMs
computes at n / S of the chip's rate and draws min(the chip's bandwidth, n SMs' DRAM bandwidth) (Little's
law, `roofline.timing.sms_dram_bandwidth_bytes_per_s`), so a kernel of fewer blocks than SMs, compute- or
memory-bound, is timed on the SMs it occupies. Its products run on tensor cores at the dtype's peak, or on
CUDA cores at the vector rate (fp16 twice it: half2 instructions, NVIDIA H100 whitepaper, Table 2).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from infersim.roofline.hardware import HardwareSpec
from infersim.roofline.ops import OpCost
from infersim.roofline.timing import (chip_dram_bandwidth_bytes_per_s, kernel_time_s, l2_reread_s, op_compute_s,
                                       sms_dram_bandwidth_bytes_per_s, tensor_peak_flops_per_s)


@dataclass(frozen=True)
class Launch:
    """How a measured kernel runs: the thread blocks of the launch that does its work, whether its matrix
    products run on tensor cores, how many kernels it launches one after another (each pays the spec's
    launch overhead) and how many of its blocks one SM holds at once (its threads, registers and shared
    memory allow)."""

    thread_blocks: int
    tensor_cores: bool
    launches: int = 1
    blocks_per_sm: int = 1

    def __post_init__(self):
        if min(self.thread_blocks, self.launches, self.blocks_per_sm) < 1:
            raise ValueError(f"a launch has >= 1 thread block, kernel and block per SM, got thread_blocks="
                             f"{self.thread_blocks}, launches={self.launches}, blocks_per_sm={self.blocks_per_sm}")


class Wave(NamedTuple):
    """Consecutive waves that run on the same number of SMs, and the share of the launch's work they do."""

    work_share: float
    sms: int


def waves(thread_blocks: int, sm_count: int, blocks_per_sm: int = 1) -> list[Wave]:
    """The full waves (as one) and the last, partial one, of `thread_blocks` blocks on `sm_count` SMs that
    hold `blocks_per_sm` each."""
    wave = sm_count * blocks_per_sm
    full, last = divmod(thread_blocks, wave)
    out = [Wave(full * wave / thread_blocks, sm_count)] if full else []
    return out + ([Wave(last / thread_blocks, min(last, sm_count))] if last else [])


def product_flops_per_s(hw: HardwareSpec, op: OpCost, launch: Launch) -> float:
    """The peak the op's matrix products run at: the tensor-core peak of its dtype (with the dtype's share of
    compute_efficiency), or the CUDA cores' vector rate, doubled for 16-bit floats (paired half2 math)."""
    if launch.tensor_cores:
        return tensor_peak_flops_per_s(hw, op)
    return hw.vector_flops_per_s * (2 if op.dtype in ("fp16", "bf16") else 1)


def chip_compute_s(hw: HardwareSpec, op: OpCost, launch: Launch) -> float:
    """Compute seconds of the op on the whole chip: its products at `product_flops_per_s`, its vector and
    exponential work as the roofline times them."""
    others = float(op_compute_s(hw, dataclasses.replace(op, flops=0.0, gemm=None)))
    return op.flops / (product_flops_per_s(hw, op, launch) * hw.compute_efficiency) + others


def launch_compute_s(hw: HardwareSpec, op: OpCost, launch: Launch) -> float:
    """Compute seconds of the op in the launch's waves: each wave's share of the work at its SMs' share of
    the chip's rate."""
    chip_s = chip_compute_s(hw, op, launch)
    return sum(w.work_share * chip_s * hw.sm_count / w.sms
               for w in waves(launch.thread_blocks, hw.sm_count, launch.blocks_per_sm))


def launch_memory_s(hw: HardwareSpec, op: OpCost, launch: Launch) -> float:
    """Memory seconds of the op in the launch's waves: each wave's share of the DRAM bytes over the bandwidth
    its SMs draw (the chip's, at the share of it the roofline gives the op's kernel, or fewer SMs' own); the
    re-reads served from L2 as the roofline times them."""
    chip_bw = chip_dram_bandwidth_bytes_per_s(hw, op)
    dram_bytes = op.bytes - op.l2_reread_bytes

    def wave_bw(sms: int) -> float:
        if hw.sm_dram_bandwidth_bytes_per_s is None:
            return chip_bw
        return min(chip_bw, float(sms_dram_bandwidth_bytes_per_s(hw, sms)))
    return float(l2_reread_s(hw, op)) + sum(w.work_share * dram_bytes / wave_bw(w.sms)
                                             for w in waves(launch.thread_blocks, hw.sm_count, launch.blocks_per_sm))


def launch_predict(hw: HardwareSpec, work: list[OpCost], launch: Launch) -> dict:
    """Roofline seconds of the work done by the launch, and the terms that make them up: compute and memory
    per op, combined as the roofline combines them, plus one launch overhead per kernel launched."""
    compute = [launch_compute_s(hw, op, launch) for op in work]
    memory = [launch_memory_s(hw, op, launch) for op in work]
    launch_s = hw.launch_overhead_s * launch.launches
    busy_s = sum(float(kernel_time_s(c, m, hw.overlap_exponent, 0.0)) for c, m in zip(compute, memory))
    return {"predicted_s": busy_s + launch_s, "compute_s": sum(compute), "memory_s": sum(memory), "launch_s": launch_s}
