"""Turn FLOPs and bytes into seconds on a hardware spec.

    time = (compute^p + memory^p)^(1/p) + launch_overhead

with compute = tensor FLOPs / (peak x compute_efficiency) + vector FLOPs / (vector peak x efficiency)
(+ exponentials / (special-function rate x efficiency), where the spec has one) and
memory = bytes / (bandwidth x efficiency). p -> infinity is the classic roofline max(compute, memory)
(Williams et al. 2009); a finite `overlap_exponent` says how imperfectly a kernel overlaps its loads with
its math near the ridge point (p = 2 fits the A100 profiles best; p = 1 would be no overlap at all).

GEMMs run in whole thread-block tiles over whole waves of SMs (tile and wave quantization, as modelled by
LLMCompass, Zhang et al. ISCA 2024): an (m x n) output in (tm x tn) tiles needs ceil(m/tm) ceil(n/tn)
tiles, run in ceil(tiles x splits / SMs) waves; each tile's K loop is bound by its tensor-core time or by
its operand traffic from L2. On Hopper and Blackwell a cluster of `gemm_cluster_ctas` thread blocks
shares one operand's tile through TMA multicast, so that operand is read from L2 once per cluster (the
library multicasts whichever operand saves more): the weight tile among blocks computing other rows of the
output, the activation tile among blocks computing other columns, so a decode GEMM, one row of tiles,
multicasts only its activations. The library is assumed to pick the fastest tile and
split-K, as cuBLAS' heuristics try to. All functions take NumPy arrays so that sweeps and profile fits are vectorised.

An SM keeps only so many bytes in flight, so it draws at most that over the DRAM latency (Little's law;
`HardwareSpec.sm_dram_bandwidth_bytes_per_s`): a GEMM whose tiles x splits occupy few SMs reaches less than
the chip's bandwidth, its memory time being bytes / min(bandwidth x efficiency, occupied SMs x per-SM
bandwidth). Elementwise kernels and attention keep the chip's bandwidth: they launch enough blocks to fill it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from .custom_all_reduce import all_reduce_s
from .hardware import HardwareSpec, Link
from .ops import ACT_BYTES, OpCost


_TIE = 1e-9  # relative: tile and split-K choices this close in time are equally fast


class GemmTiling(NamedTuple):
    """The tile and split-K a library picks for a GEMM (the fastest on the tensor side; between equally fast
    ones, the one with most thread blocks): its tensor-core time and how many thread blocks it launches."""

    tensor_s: np.ndarray
    thread_blocks: np.ndarray


def gemm_tiling(hw: HardwareSpec, m, n, k, count, b_bytes=ACT_BYTES, *, peak_flops_per_s: float,
                a_bytes=ACT_BYTES) -> GemmTiling:
    """Tensor-core time of `count` (m x k)(k x n) products under tile and wave quantization, and the thread
    blocks (tiles x splits) of the chosen configuration; the (k x n) operand moves `b_bytes` per element from
    L2 (quantized weights move fewer), the (m x k) one `a_bytes` (fp8 activations move one). Without tiles
    the GEMM fills every SM."""
    m, n, k, count, b_bytes, a_bytes = (np.asarray(x, dtype=np.float64) for x in (m, n, k, count, b_bytes, a_bytes))
    shape = np.broadcast(m, n, k, count, b_bytes, a_bytes).shape
    if not hw.gemm_tiles:
        return GemmTiling(2 * m * n * k * count / (peak_flops_per_s * hw.compute_efficiency),
                          np.full(shape, float(hw.sm_count)))
    per_sm_flops = peak_flops_per_s * hw.compute_efficiency / hw.sm_count
    per_sm_l2 = (hw.l2_bandwidth_bytes_per_s or np.inf) / hw.sm_count
    shared = hw.gemm_cluster_ctas
    # every (tile, split) candidate along a leading axis, against the shapes' own axes
    plans = np.array([(tm, tn, splits) for tm, tn in hw.gemm_tiles for splits in hw.gemm_split_k], dtype=np.float64)
    tm, tn, splits = (plans[:, i].reshape((-1,) + (1,) * len(shape)) for i in range(3))
    rows, columns = np.ceil(m / tm), np.ceil(n / tn)  # of tiles, in one product
    tiles = rows * columns * count
    x_bytes, w_bytes = tm * a_bytes, tn * b_bytes  # per step of k, per thread block
    # a cluster shares the (k x n) tile among blocks of one tile column (other rows: needs >= 2 of them) or
    # the (m x k) tile among blocks of one tile row (other columns)
    l2_bytes_per_k = np.minimum(x_bytes / np.minimum(shared, columns) + w_bytes,
                                x_bytes + w_bytes / np.minimum(shared, rows))
    k_part = np.ceil(k / splits)
    tile_s = np.maximum(2 * tm * tn * k_part / per_sm_flops, l2_bytes_per_k * k_part / per_sm_l2)
    time_s = np.ceil(tiles * splits / hw.sm_count) * tile_s
    best = time_s.min(axis=0)
    blocks = np.where(time_s <= best * (1 + _TIE), tiles * splits, 0.0).max(axis=0)
    return GemmTiling(best, blocks)


def gemm_tensor_time_s(hw: HardwareSpec, m, n, k, count, b_bytes=ACT_BYTES, *, peak_flops_per_s: float,
                       a_bytes=ACT_BYTES):
    """Tensor-core time of `count` (m x k)(k x n) products (`gemm_tiling`)."""
    return gemm_tiling(hw, m, n, k, count, b_bytes, peak_flops_per_s=peak_flops_per_s, a_bytes=a_bytes).tensor_s


@numba.vectorize(["float64(float64, float64, float64, float64)"], cache=True)
def kernel_time_s(compute_s, memory_s, p, launch_s):
    """(compute^p + memory^p)^(1/p) + launch: a NumPy ufunc that compiled code (the simulator's decode
    runs) calls too, so both compute the same seconds."""
    big = max(compute_s, memory_s)
    if big <= 0.0:
        return launch_s
    if p == 2.0:
        return math.hypot(compute_s, memory_s) + launch_s
    return big * ((compute_s / big) ** p + (memory_s / big) ** p) ** (1.0 / p) + launch_s


def combine_s(hw: HardwareSpec, compute_s, memory_s):
    """Smooth maximum of compute and memory time (see module docstring), plus the kernel floor."""
    return kernel_time_s(compute_s, memory_s, hw.overlap_exponent, hw.launch_overhead_s)


def transfer_time_s(link: Link, payload_bytes):
    """One copy over a link: latency + bytes / (bandwidth x efficiency), the latency-bandwidth (alpha-beta)
    model of message passing (Hockney 1994)."""
    return link.latency_s + np.asarray(payload_bytes, dtype=np.float64) / (link.bandwidth_bytes_per_s * link.efficiency)


def comm_time_s(hw: HardwareSpec, op: OpCost):
    """A collective: an all-reduce over the op's peers as the engine runs it on the node's fabric (its own
    kernel or NCCL's, `custom_all_reduce.all_reduce_s`), or the hand-off of activations to the next pipeline stage, one copy over
    the interconnect."""
    if op.collective == "send":
        return transfer_time_s(hw.interconnect, op.bytes)
    return all_reduce_s(hw.fabric, hw.all_reduce, op.bytes, op.comm_peers)


@dataclass(frozen=True)
class OpTime:
    op: OpCost
    compute_s: float
    memory_s: float
    time_s: float

    @property
    def bound(self) -> str:
        if self.op.kind == "comm":
            return "network"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def op_compute_s(hw: HardwareSpec, op: OpCost):
    """Tensor-core seconds at the op's dtype peak (doubled by 2:4 sparsity) times compute_efficiency and the
    dtype's share of it (`HardwareSpec.dtype_efficiency`), plus vector and exponential seconds."""
    peak = tensor_peak_flops_per_s(hw, op)
    if op.gemm is not None:
        g = op.gemm
        # The tile model sees the GEMM's own shape; FLOPs outside it (ragged attention) scale the result.
        dense_flops = 2.0 * np.asarray(g.m * g.n * g.k * g.count, dtype=np.float64)
        tile_s = gemm_tensor_time_s(hw, g.m, g.n, g.k, g.count, g.b_bytes, peak_flops_per_s=peak,
                                    a_bytes=g.a_bytes)
        tensor = np.where(dense_flops > 0, tile_s * op.flops / np.where(dense_flops > 0, dense_flops, 1.0), 0.0)
    else:
        tensor = op.flops / (peak * hw.compute_efficiency)
    exp_rate = hw.special_function_per_s or hw.vector_flops_per_s
    return tensor + (op.vector_flops / hw.vector_flops_per_s + op.exp_ops / exp_rate) / hw.compute_efficiency


def op_memory_s(hw: HardwareSpec, op: OpCost):
    """DRAM bytes over the bandwidth the op reaches, plus FlashAttention's re-reads served from L2."""
    dram_bw = chip_dram_bandwidth_bytes_per_s(hw, op)
    if op.gemm is not None and hw.sm_dram_bandwidth_bytes_per_s is not None:
        dram_bw = np.minimum(dram_bw, sms_dram_bandwidth_bytes_per_s(hw, gemm_thread_blocks(hw, op)))
    return (op.bytes - op.l2_reread_bytes) / dram_bw + l2_reread_s(hw, op)


def streaming_efficiency(hw: HardwareSpec, op: OpCost):
    """The share of a memory's bandwidth the op's kernel streams at: a vector kernel's measured share
    (`OpCost.dram_share`, ops.STREAM_SHARES), else a typical vector kernel's (vector_bandwidth_efficiency);
    memory_efficiency for the rest."""
    if op.kind == "vector":
        return hw.vector_bandwidth_efficiency if op.dram_share is None else op.dram_share
    return hw.memory_efficiency


def chip_dram_bandwidth_bytes_per_s(hw: HardwareSpec, op: OpCost):
    """The DRAM bandwidth an op filling the chip reaches."""
    return hw.memory_bandwidth_bytes_per_s * streaming_efficiency(hw, op)


def l2_reread_s(hw: HardwareSpec, op: OpCost):
    """Seconds of the op's re-reads served from L2 (at DRAM's rate where the spec has no L2 figure)."""
    l2_bw_bytes_per_s = hw.l2_bandwidth_bytes_per_s or hw.memory_bandwidth_bytes_per_s
    return op.l2_reread_bytes / (l2_bw_bytes_per_s * streaming_efficiency(hw, op))


def gemm_thread_blocks(hw: HardwareSpec, op: OpCost):
    """Thread blocks of the tile and split-K the GEMM runs with (`gemm_tiling`: the choice `op_compute_s` makes)."""
    g = op.gemm
    return gemm_tiling(hw, g.m, g.n, g.k, g.count, g.b_bytes, peak_flops_per_s=tensor_peak_flops_per_s(hw, op),
                       a_bytes=g.a_bytes).thread_blocks


def tensor_peak_flops_per_s(hw: HardwareSpec, op: OpCost) -> float:
    """The dense tensor-core peak of the op's dtype (doubled for 2:4 sparsity where the chip has sparse cores)
    times that dtype's share of compute_efficiency (`HardwareSpec.dtype_efficiency`)."""
    return hw.peak(op.dtype) * hw.dtype_efficiency_of(op.dtype) * (2 if op.sparse_24 and hw.sparse_tensor_cores else 1)


def sms_dram_bandwidth_bytes_per_s(hw: HardwareSpec, thread_blocks):
    """The DRAM bandwidth the SMs a kernel's `thread_blocks` occupy can draw: each SM's loads in flight over
    the DRAM latency (Little's law; `HardwareSpec.sm_dram_bandwidth_bytes_per_s`), on one SM at least and
    every SM at most."""
    return np.clip(np.asarray(thread_blocks, dtype=np.float64), 1, hw.sm_count) * hw.sm_dram_bandwidth_bytes_per_s


def op_time_s(hw: HardwareSpec, op: OpCost):
    """Seconds of one op; array-valued when the op's FLOPs and bytes are arrays (one entry per step)."""
    if op.kind == "comm":
        return comm_time_s(hw, op)
    return combine_s(hw, op_compute_s(hw, op), op_memory_s(hw, op))


def time_op(hw: HardwareSpec, op: OpCost) -> OpTime:
    if op.kind == "comm":
        return OpTime(op, 0.0, 0.0, float(op_time_s(hw, op)))
    compute, memory = float(op_compute_s(hw, op)), float(op_memory_s(hw, op))
    return OpTime(op, compute, memory, float(combine_s(hw, compute, memory)))
