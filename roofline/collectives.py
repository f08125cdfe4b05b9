"""Collectives as NCCL runs them: the all-reduce of tensor parallelism on one node.

NCCL prices every algorithm (ring, tree, NVLink SHARP) and protocol (LL, LL128, Simple) with one cost model
and runs the cheapest (NVIDIA/nccl 2.30.7, src/enqueue.cc `topoGetAlgoInfo` over the table
src/graph/tuning.cc `ncclTopoTuneModel` fills; time = latency + bytes / algorithm bandwidth, a tree's bandwidth
scaled by a factor for the payload's size, `ncclTopoGetAlgoTime`). This module restates that model (constants
cited where they are defined; no code copied) and adds the two things NCCL's choice leaves out, which a wall
clock sees: a fixed cost per call (launching the kernel and waiting for the last rank to join) and the fraction
of its modelled NVLink bandwidth a transfer reaches. Both were set once on Vidur's A100 NCCL measurements
(data/profiles/a100) and are physical knobs, not per-size fits.

Bus bandwidth (nccl-tests doc/PERFORMANCE.md): an all-reduce of S bytes in t seconds moves S / t "algorithm"
bytes per second and 2 (n - 1) / n times that per link ("bus" bandwidth), whatever the algorithm.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import SpecError

FABRICS = ("nvswitch", "nvlink", "pcie")  # every GPU on an NVSwitch; GPUs wired directly; peers over PCIe
GENERATIONS = ("volta", "ampere", "hopper", "blackwell")  # NCCL's compute-capability index (tuning.cc)
PROTOCOLS = ("LL", "LL128", "Simple")

# tuning.cc `ncclTunerConstantsDefaults`: base latency per algorithm and protocol (us) ...
_BASE_LATENCY_US = {"tree": (6.8, 14.0, 8.4), "ring": (6.6, 14.0, 8.4), "nvls": (0.0, 0.0, 0.0)}
# ... and hardware latency per ring step / tree hop / NVLS call (us), for NVLink and PCIe paths
_HW_LATENCY_US = {"nvlink": {"tree": (0.6, 1.25, 4.0), "ring": (0.6, 1.9, 3.4), "nvls": (0.0, 0.0, 25.0)},
                  "pci": {"tree": (1.0, 1.9, 4.0), "ring": (1.0, 2.5, 5.7), "nvls": (0.0, 0.0, 0.0)}}
# tuning.cc, one node, by generation: llMaxBws, perChMaxRingLL128Bws, perChMaxTreeBws, perChMaxTreeLL128Bws
# (GB/s), nvlsEfficiency. The last cap binds on one node only on Volta; elsewhere perChMaxTreeBws x 7/9 is lower
_LL_MAX_BW = (39.0, 87.7, 141.0, 282.0)
_RING_LL128_MAX_BW_PER_CHANNEL = (20.0, 20.0, 36.7, 40.0)
_TREE_MAX_BW_PER_CHANNEL = (26.5, 24.0, 38.7, 70.0)
_TREE_LL128_MAX_BW_PER_CHANNEL = (20.0, 20.0, 36.7, 55.6)
_NVLS_EFFICIENCY = (0.0, 0.0, 0.85, 0.74)
# tuning.cc `treeCorrectionFactor`, rows LL, LL128, Simple, a column per power of two of the payload from 64 B:
# the factor on a tree all-reduce's bandwidth. `ncclTopoGetAlgoTime` reads columns 0-22 (64 B to 512 MiB); the
# 24th, added in NCCL 2.29, serves only NVLS trees on Blackwell, which this module does not model
_TREE_CORRECTION = (
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9))
# NCCL's bandwidth per NVLink (src/graph/topo.h SM70/SM80/SM90/SM100_NVLINK_BW) against the datasheet's
# 25 GB/s per direction (NVLink 2-4) or 50 GB/s (NVLink 5)
_NCCL_NVLINK_BW = (20.0, 20.0, 20.6, 40.1)
_DATASHEET_NVLINK_BW = (25.0, 25.0, 25.0, 50.0)
# PCIe: NCCL takes lanes x rate / 80 with the rate in 100 Mb/s (topo.cc `kvDictPciGen`: Gen4 x16 = 24 GB/s),
# 0.75 of the datasheet's 32 GB/s
_NCCL_PCIE_FRACTION = 0.75
# search.cc `speedArrayIntra`, `sm90SpeedArrayIntra`, `sm100SpeedArrayIntra`: the channel speeds tried (GB/s)
_SPEEDS = ((40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0),
           (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0),
           (60.0, 50.0, 40.0, 30.0, 24.0, 20.0, 15.0, 12.0, 11.0, 6.0, 3.0),
           (90.0, 80.0, 70.0, 60.0, 50.0, 45.0, 40.0, 30.0, 24.0, 20.0, 19.0, 18.0))
_RING_MAX_CHANNELS = 32  # src/init.cc: MAXCHANNELS / 2 (src/include/device.h MAXCHANNELS 64)
_NVLS_MAX_ARITY = 32  # device.h NCCL_MAX_NVLS_ARITY


@dataclass(frozen=True)
class Fabric:
    """How a node's GPUs reach each other, as NCCL sees it.

    `bandwidth_bytes_per_s` is one GPU's datasheet bandwidth each way (all its NVLinks, or its PCIe slot);
    `efficiency` the fraction of NCCL's modelled NVLink bandwidth transfers below ~1 GB reach (0.8 on the A100
    measurements: straight-line fits give 172-204 GB/s of NCCL's 240; PCIe and NVLS reach NCCL's own
    figures, so it is not applied to them); `call_s` the fixed cost of one call (30 us for eager PyTorch calls
    on the A100 measurements, which include waiting for the last rank; less inside a CUDA graph)."""

    kind: str
    generation: str
    bandwidth_bytes_per_s: float
    nvls: bool = False  # NVLink SHARP: reductions in the NVSwitch (Hopper and later)
    efficiency: float = 0.8
    call_s: float = 30e-6

    def __post_init__(self):  # errors name the HardwareSpec fields a fabric is made of
        if self.kind not in FABRICS:
            raise SpecError("gpu_fabric", f"must be one of {', '.join(FABRICS)}", self.kind)
        if self.generation not in GENERATIONS:
            raise SpecError("architecture", f"must be one of {', '.join(GENERATIONS)}", self.generation)
        if self.nvls and (self.kind != "nvswitch" or GENERATIONS.index(self.generation) < 2):
            raise SpecError("nvlink_sharp", "needs an NVSwitch of the Hopper generation or later", self.nvls)


class Choice(NamedTuple):
    """An algorithm and protocol NCCL could run, with its latency and algorithm bandwidth."""

    algorithm: str
    protocol: str
    latency_s: float
    algorithm_bandwidth_bytes_per_s: float


def _ring_channels(total_gbs: float, gen: int) -> tuple[int, float]:
    """(channels, GB/s each) NCCL's ring search settles on when each GPU has `total_gbs` each way
    (search.cc `ncclTopoCompute`): from the fastest speed that fits, keep the largest channels x speed while
    the speed stays above 0.49 of the first; then duplicate the channels at half speed
    (`ncclTopoDupChannels`) and try faster speeds at that channel count."""
    speeds = _SPEEDS[gen]
    first = next((i for i, s in enumerate(speeds) if s <= total_gbs), len(speeds) - 1)
    channels, speed = 0, 0.0
    for s in speeds[first:]:
        if channels and s / speed <= 0.49:
            break
        n = min(_RING_MAX_CHANNELS, int(total_gbs // s + 1e-9))
        if n * s > channels * speed:
            channels, speed = n, s
        if channels * speed >= total_gbs:
            break
    if speed >= 25.0 and not (gen >= 2 and speed < 50.0 and channels > 4):
        doubled = min(2 * channels, _RING_MAX_CHANNELS)
        speed, channels = speed / math.ceil(doubled / channels), doubled
    for faster in sorted(s for s in speeds if s > speed):
        if faster * channels > total_gbs + 1e-9:
            break
        speed = faster
    return channels, speed


def _nvls_bus_gbs(total_gbs: float, gpus: int, gen: int) -> float:
    """NVLS bus bandwidth on one node: a channel per GPU; the head's link carries two shares and every other
    GPU's one, so each link carries (n + 1) x the channel speed (search.cc `ncclTopoSearchTryNvls`); the
    inter speed then rises while below twice the intra (pass 2); all-reduce pipelines two operations
    (tuning.cc)."""
    speeds = _SPEEDS[gen]
    n = min(_NVLS_MAX_ARITY, gpus)
    fits = [i for i, s in enumerate(speeds) if s * (n + 1) <= total_gbs + 1e-9]
    if not fits or n < 2:
        return 0.0
    i = fits[0]
    intra = inter = speeds[i]
    while i > 0 and inter < 2 * intra:
        i -= 1
        inter = speeds[i]
    return n * min(2.0 * intra * _NVLS_EFFICIENCY[gen] * (n - 1) / n, inter)


@functools.lru_cache(maxsize=256)
def choices(fabric: Fabric, gpus: int) -> tuple[Choice, ...]:
    """Every (algorithm, protocol) NCCL's tuner prices for an all-reduce over `gpus` GPUs of one node
    (tuning.cc `ncclTopoTuneModel`), with NCCL's own algorithm bandwidth."""
    gen = GENERATIONS.index(fabric.generation)
    raw_gbs = fabric.bandwidth_bytes_per_s / 1e9
    if fabric.kind == "pcie":
        total, path = raw_gbs * _NCCL_PCIE_FRACTION, "pci"
    else:  # topo.cc: links x NCCL's per-link bandwidth
        total, path = round(raw_gbs / _DATASHEET_NVLINK_BW[gen]) * _NCCL_NVLINK_BW[gen], "nvlink"
    steps = 2 * (gpus - 1)
    channels, speed = _ring_channels(total, gen)
    ring = channels * speed
    tree = min(0.92 * ring, channels * _TREE_MAX_BW_PER_CHANNEL[gen])
    bus_gbs = {("ring", "LL"): min(_LL_MAX_BW[gen], 0.5 * ring),
               ("ring", "LL128"): min(0.92 * ring, channels * _RING_LL128_MAX_BW_PER_CHANNEL[gen]),
               ("ring", "Simple"): ring,
               ("tree", "LL"): min(tree / 3.8, _LL_MAX_BW[gen]),
               ("tree", "LL128"): min(tree * 7 / 9, channels * _TREE_LL128_MAX_BW_PER_CHANNEL[gen]),
               ("tree", "Simple"): tree}
    if path == "pci":  # LL128 runs only on paths up to NVLink bridges (tuning.cc protoEnable)
        del bus_gbs[("ring", "LL128")], bus_gbs[("tree", "LL128")]
    out = []
    for (algorithm, protocol), bus in bus_gbs.items():
        p = PROTOCOLS.index(protocol)
        latency_us = _BASE_LATENCY_US[algorithm][p] + steps * _HW_LATENCY_US[path][algorithm][p]
        ratio = gpus / steps if algorithm == "ring" else 0.5  # bus to algorithm bandwidth
        out.append(Choice(algorithm, protocol, latency_us * 1e-6, bus * ratio * 1e9))
    if fabric.nvls:
        nvls = _nvls_bus_gbs(total, gpus, gen)
        if nvls > 0:
            out.append(Choice("nvls", "Simple", _HW_LATENCY_US["nvlink"]["nvls"][2] * 1e-6, nvls * gpus / steps * 1e9))
    return tuple(out)


def size_correction(choice: Choice, payload_bytes):
    """The factor NCCL puts on a choice's bandwidth for a payload (a number or an array): a tree all-reduce of
    64 B to 512 MiB takes `treeCorrectionFactor[protocol][log2i(bytes >> 6)]`, anything else 1 (tuning.cc
    `ncclTopoGetAlgoTime`)."""
    payload = np.asarray(payload_bytes, dtype=np.float64)
    if choice.algorithm != "tree":
        return np.ones_like(payload)
    row = np.array(_TREE_CORRECTION[PROTOCOLS.index(choice.protocol)])
    # log2i exactly: frexp's exponent is floor(log2) + 1, and 0 for 0 (under 64 B), where log2i gives -1 too
    log_size = np.frexp(np.floor(payload / 64))[1] - 1
    inside = (log_size >= 0) & (log_size < row.size)
    return np.where(inside, row[np.clip(log_size, 0, row.size - 1)], 1.0)


def _cheapest(options: tuple[Choice, ...], payload_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each payload of a flat array, the option NCCL's model finds cheapest (src/enqueue.cc
    `topoGetAlgoInfo`: the least latency + bytes / size-corrected bandwidth, `ncclTopoGetAlgoTime`): its index
    in `options`, its latency (s) and its corrected algorithm bandwidth (bytes/s)."""
    latency_s = np.array([c.latency_s for c in options])
    bandwidth = np.stack([c.algorithm_bandwidth_bytes_per_s * size_correction(c, payload_bytes) for c in options])
    pick = np.argmin(latency_s[:, None] + payload_bytes / bandwidth, axis=0)
    return pick, latency_s[pick], bandwidth[pick, np.arange(payload_bytes.size)]


def all_reduce_s(fabric: Fabric, payload_bytes, gpus: int):
    """Wall time of one all-reduce of `payload_bytes` per GPU (a number or an array) over `gpus` GPUs of a
    node: the fixed call cost, plus the latency and the payload over the bandwidth (size-corrected for trees,
    scaled by the fabric's efficiency on NVLink) of the choice NCCL's own model finds cheapest. The correction
    decides whether trees run: without it tree/LL128 would win around 2 MB on 8 A100s and tree/Simple around
    1 MB on 8 PCIe GPUs; with it no GPU of the registry runs a tree on one node.

    NVLink SHARP (NVLS) runs at NCCL's own figure, which the fabric's efficiency does not scale: NCCL's model
    (a channel structure and nvlsEfficiency 0.85) puts it at 272 GB/s of algorithm bandwidth on 8 H100s (476
    GB/s of bus bandwidth), and nccl-tests measure ~480 GB/s of bus bandwidth there at its peak against
    365-370 for rings (NVIDIA/nccl-tests#212, a maintainer's figures; NVIDIA/nccl#2140: 370 -> 480 GB/s with
    NVLS on). Vidur's 2023 H100 profile (microsoft/vidur data/profiling/network/h100_dgx, its `size` in
    bytes as the A100 files have it) ran rings: 64 MiB on 8 GPUs in 0.322 ms, 365 GB/s of bus bandwidth."""
    payload = np.asarray(payload_bytes, dtype=np.float64)
    if gpus <= 1:
        return np.zeros_like(payload) if payload.ndim else 0.0
    flat = payload.reshape(-1)
    options = choices(fabric, gpus)
    pick, latency_s, bandwidth = _cheapest(options, flat)
    nccls_figure = np.array([c.algorithm == "nvls" for c in options])[pick] | (fabric.kind == "pcie")
    seconds = fabric.call_s + latency_s + flat / (bandwidth * np.where(nccls_figure, 1.0, fabric.efficiency))
    return seconds.reshape(payload.shape) if payload.ndim else float(seconds[0])


def chosen(fabric: Fabric, payload_bytes: float, gpus: int) -> Choice:
    """The algorithm and protocol NCCL would run for this payload."""
    options = choices(fabric, gpus)
    pick, _, _ = _cheapest(options, np.array([payload_bytes], dtype=np.float64))
    return options[pick[0]]
