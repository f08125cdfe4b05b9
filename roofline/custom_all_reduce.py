"""Tensor-parallel all-reduces as serving engines run them: their own peer-to-peer kernels for the small
payloads of decode steps on an NVLink node, NCCL (roofline/collectives.py) for the rest.

vLLM (csrc/custom_all_reduce.cuh; SGLang's sgl-kernel runs a port of it) and TensorRT-LLM
(cpp/tensorrt_llm/kernels/customAllReduceKernels.cu) map every rank's buffer into its peers' address space
(CUDA IPC) and reduce with plain loads over NVLink in one kernel:
- one-shot: every rank reads the (n - 1) peers' whole buffers and sums them itself;
- two-shot: a reduce-scatter (each rank sums its 1/n slice of the n - 1 peers' buffers) then an all-gather
  (each rank reads the n - 1 slices the others summed): 2 (n - 1) / n of the payload read from peers.
The ranks agree through flags written into each other's memory: a barrier before the reads and one after,
and two-shot one more between its halves (`multi_gpu_barrier` in vLLM's `cross_device_reduce_1stage` and
`_2stage`).

Time = the kernel's floor (the fabric's call cost: an eager call's, or a kernel's in a CUDA graph, as the
kernel set says) + barriers x `BARRIER_S` + bytes read from peers / the kernel's peer-read bandwidth. Both
constants come from SGLang's H100 measurements of the two kernels (sgl-project/sglang PR #2904, "unit test
performance in H100", bf16; rows in tests/test_custom_all_reduce.py). The kernels run 36 thread blocks
(vLLM's `block_limit`), so their loads are bound by how many are in flight, not by NVLink: they read peers
at about a quarter of the link's bandwidth each way, whatever the number of peers.

Which kernel runs is each engine's rule, not a cost comparison: `ALL_REDUCES` (the names a scenario's
`engine.all_reduce` takes) maps each rule to the kernel it runs and when.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import collectives
from .collectives import Fabric

KiB, MiB = 2 ** 10, 2 ** 20

# One cross-GPU flag barrier: SGLang's custom all-reduce (a port of TensorRT-LLM's one-shot kernel) takes
# 3.9 / 3.7 us on 2 / 4 H100s for 8 KiB (PR #2904), whose reads take < 0.1 us: less a kernel's 1.0 us floor
# (measured on an H200, roofline/kernel_set.py), 2.8 us for a one-shot's two barriers. On 8 GPUs it took
# 5.7 us: the model is ~2 us short there.
BARRIER_S = 1.4e-6


@dataclass(frozen=True)
class PeerKernel:
    """A peer-to-peer all-reduce kernel: the share of the fabric's bandwidth each way at which one rank
    reads its peers' buffers."""

    peer_read_fraction: float

    def _read_s(self, fabric: Fabric, read_bytes):
        return read_bytes / (fabric.bandwidth_bytes_per_s * self.peer_read_fraction)

    def one_shot_s(self, fabric: Fabric, payload_bytes, gpus: int):
        """Two barriers and the (n - 1) peers' whole buffers read."""
        return fabric.call_s + 2 * BARRIER_S + self._read_s(fabric, (gpus - 1) * payload_bytes)

    def two_shot_s(self, fabric: Fabric, payload_bytes, gpus: int):
        """Three barriers; a reduce-scatter and an all-gather, each reading (n - 1) / n of the payload."""
        return fabric.call_s + 3 * BARRIER_S + self._read_s(fabric, 2 * (gpus - 1) / gpus * payload_bytes)


# vLLM's kernel on H100s (PR #2904's vLLM rows, 2 GPUs, one-shot): 512 KiB in 12.9 us, 2 MiB in 26.6 us, so
# 1.5 MiB more read from the one peer in 13.7 us: 115 GB/s, 0.26 of 450 GB/s. Its two-shot on 4 and 8 GPUs
# reads at the same rate (1 -> 2 MiB: 1.57 MB more in 13.3 us, 1.84 MB in 14.6 us: 118 and 126 GB/s).
VLLM_KERNEL = PeerKernel(peer_read_fraction=0.26)
# TensorRT-LLM's one-shot as SGLang ports it (same PR, 2 GPUs): 512 KiB in 7.9 us, 2 MiB in 19.9 us:
# 1.57 MB in 12.0 us, 131 GB/s, 0.29 of 450 GB/s.
TRTLLM_KERNEL = PeerKernel(peer_read_fraction=0.29)


def _ones(payload: np.ndarray) -> np.ndarray:
    return np.ones(payload.shape, dtype=bool)


@dataclass(frozen=True)
class Nccl:
    """Every all-reduce through NCCL: engines without a kernel of their own, or with it turned off
    (vLLM and SGLang `--disable-custom-all-reduce`, TensorRT-LLM's strategy NCCL)."""

    def shots(self, fabric: Fabric, payload: np.ndarray, gpus: int) -> dict[str, np.ndarray]:
        return {}


@dataclass(frozen=True)
class VllmCustom:
    """vLLM's custom all-reduce, which SGLang runs too: vllm/distributed/device_communicators/
    custom_all_reduce.py `CustomAllreduce` (world sizes 2, 4, 6, 8; more than two GPUs only when fully
    NVLink-connected; `should_custom_ar`: payloads under max_size = 8 MiB), else NCCL; one-shot on two GPUs,
    and on a fully connected node below 512 KiB on up to 4 GPUs or 256 KiB on up to 8, else two-shot
    (csrc/custom_all_reduce.cuh `allreduce`). vLLM V1 on Hopper with symmetric memory lowers max_size to
    512 / 256 KiB on 6 / 8 GPUs (all_reduce_utils.py CUSTOM_ALL_REDUCE_MAX_SIZES) and hands what lies
    between to PyTorch's symmetric-memory all-reduce, which is not modelled: priced here as this kernel."""

    kernel: PeerKernel = VLLM_KERNEL
    max_bytes: int = 8 * MiB

    def shots(self, fabric: Fabric, payload: np.ndarray, gpus: int) -> dict[str, np.ndarray]:
        if gpus not in (2, 4, 6, 8) or (gpus > 2 and fabric.kind == "pcie"):
            return {}
        custom = payload < self.max_bytes
        one = _ones(payload) if gpus == 2 else payload < (512 * KiB if gpus <= 4 else 256 * KiB)
        return {"one-shot": custom & one, "two-shot": custom & ~one}


@dataclass(frozen=True)
class TrtllmAuto:
    """TensorRT-LLM's AllReduceStrategy AUTO (cpp/tensorrt_llm/plugins/ncclPlugin/allreducePlugin.cpp
    `selectImplementation`): NCCL without NVLink between every pair (`mIsNVLINKSupported`) or on an odd
    number of GPUs or more than 8 (`isCustomAllReduceSupported`); payloads up to the workspace
    (customAllReduceUtils.h `getMaxRequiredWorkspaceSize`: 16 MB on 2 GPUs, 8 MB on more) run one-shot on 2
    GPUs, below 1 MB on up to 4 and 500 kB on more, else NCCL: two-shot is off in AUTO (a workaround there
    for NVIDIA bug 4718747). The PyTorch backend's AUTO tabulates its choice per payload
    (customAllReduceUtils.h `selectStrategyLookUpTable`) and also runs one-shot for decode-sized payloads."""

    kernel: PeerKernel = TRTLLM_KERNEL

    def shots(self, fabric: Fabric, payload: np.ndarray, gpus: int) -> dict[str, np.ndarray]:
        if gpus % 2 or gpus > 8 or fabric.kind == "pcie":
            return {}
        workspace_bytes = 16e6 if gpus <= 2 else 8e6
        one_shot_below = np.inf if gpus <= 2 else 1e6 if gpus <= 4 else 500e3
        return {"one-shot": (payload <= workspace_bytes) & (payload < one_shot_below)}


ALL_REDUCES = {"nccl": Nccl(), "vllm-custom": VllmCustom(), "trtllm": TrtllmAuto()}


def all_reduce_s(fabric: Fabric, engine: str, payload_bytes, gpus: int):
    """Wall time of one all-reduce of `payload_bytes` per GPU (a number or an array) over `gpus` GPUs as
    the engine's rule `engine` (a key of ALL_REDUCES) runs it: its own kernel where the rule says, NCCL
    (`collectives.all_reduce_s`) elsewhere."""
    nccl_s = collectives.all_reduce_s(fabric, payload_bytes, gpus)
    rule = ALL_REDUCES[engine]
    payload = np.asarray(payload_bytes, dtype=np.float64)
    shots = rule.shots(fabric, payload, gpus) if gpus > 1 else {}
    if not shots:
        return nccl_s
    priced = {"one-shot": rule.kernel.one_shot_s, "two-shot": rule.kernel.two_shot_s}
    seconds = np.asarray(nccl_s, dtype=np.float64)
    for shot, runs in shots.items():
        seconds = np.where(runs, priced[shot](fabric, payload, gpus), seconds)
    return seconds if payload.ndim else float(seconds)
