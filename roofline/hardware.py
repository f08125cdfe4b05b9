"""Hardware specs: peaks, bandwidths, capacities, GEMM tiling and the efficiency factors of the roofline.

Every registry figure is a datasheet number (source in the comment above each entry). The efficiency
factors are the only fitted numbers, and they are physical: the fraction of peak tensor-core FLOP/s a
large GEMM sustains, the fraction of DRAM bandwidth a GEMM or a typical elementwise kernel sustains (the
elementwise kernels measured apart carry their own, `roofline.ops.STREAM_SHARES`), how well a
kernel overlaps loads with math, the time a kernel takes however small it is. The defaults were fitted
on Vidur's A100 profiles (`infersim calibrate --from-profile`); the other GPUs reuse them until a profile
of theirs is fitted (README, "Assumptions").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .boundary import UNPRINTABLE_NAME, load_yaml, number, registry_or_file, unprintable
from .collectives import FABRICS, GENERATIONS, Fabric
from .custom_all_reduce import ALL_REDUCES
from .errors import HardwareLimit, SpecError, closest_name, errors_in, require_choice, require_positive

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "fp4", "int8", "int4")  # fp4: E2M1 with block scales (NVFP4, MXFP4)
GB = 1e9
TB = 1e12
GiB = 2**30
MiB = 2**20
KiB = 2**10

# cuBLAS/CUTLASS thread-block tile shapes (M x N) that the tile/wave model chooses among; the 16- and
# 32-row ones stand for the skinny kernels libraries use when few tokens are in flight (decode).
DEFAULT_GEMM_TILES = ((16, 128), (32, 128), (64, 64), (64, 128), (128, 64), (128, 128), (128, 256), (256, 128))
DEFAULT_SPLIT_K = (1, 2, 4, 8)


@dataclass(frozen=True)
class Link:
    """A data path between two memories (NVLink between GPUs, PCIe to the host, a network between nodes):
    its datasheet bandwidth per direction, the fraction of it a large copy sustains, and the fixed
    latency of one transfer."""

    bandwidth_bytes_per_s: float
    efficiency: float
    latency_s: float


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator (or the host CPU). Peak FLOP/s are dense (no sparsity) tensor-core figures."""

    name: str
    peak_flops_per_s: dict = field(hash=False)
    vector_flops_per_s: float
    memory_bytes: float
    memory_bandwidth_bytes_per_s: float
    l2_bytes: float
    sram_per_sm_bytes: float
    sm_count: int
    interconnect_bandwidth_bytes_per_s: float
    host_link_bandwidth_bytes_per_s: float
    l2_bandwidth_bytes_per_s: float | None = None
    # exp() per second (softmax's exponentials); None counts one as one vector FLOP. Calibrated on the host.
    special_function_per_s: float | None = None
    sparse_tensor_cores: bool = True
    gemm_tiles: tuple = DEFAULT_GEMM_TILES
    gemm_split_k: tuple = DEFAULT_SPLIT_K
    # Thread blocks of a cluster that share one operand tile through TMA multicast, each tile read from L2
    # once for all of them (Hopper and Blackwell; CUTLASS's sm90 GEMMs default to 2x1 clusters, NVIDIA
    # Hopper tuning guide "Thread Block Clusters" / "Tensor Memory Accelerator"); 1 where there are none.
    gemm_cluster_ctas: int = 1
    # The DRAM bandwidth one SM draws at most: the bytes its loads keep in flight over the DRAM latency
    # (Little's law), which caps a GEMM whose thread blocks occupy few SMs (roofline/timing.py). None: not
    # modelled (every kernel may reach the chip's bandwidth). Registry values: see _SM_IN_FLIGHT_BYTES.
    sm_dram_bandwidth_bytes_per_s: float | None = None
    attention_q_tile_tokens: int = 128
    # Efficiency factors: `infersim calibrate --from-profile` on Vidur's A100 Llama-2-7B profile, rounded
    # (see module docstring); they predict the held-out Llama-3-8B and Llama-2-70B profiles (README).
    compute_efficiency: float = 0.76
    # How much of compute_efficiency a GEMM in another tensor dtype sustains, where published paired figures
    # show it differs from fp16's: {"fp8": 0.875} runs fp8 GEMMs at 0.875 x compute_efficiency of the fp8
    # peak. A dtype left out sustains fp16's (the values per GPU are cited in the registry below).
    dtype_efficiency: dict = field(default_factory=dict, hash=False)
    memory_efficiency: float = 0.91
    vector_bandwidth_efficiency: float = 0.46  # a typical vector kernel's (RoPE's); ops.STREAM_SHARES for others
    overlap_exponent: float = 2.0
    launch_overhead_s: float = 4.6e-6
    interconnect_efficiency: float = 0.8
    interconnect_latency_s: float = 10e-6
    # PCIe copies between pinned host memory and the GPU (KV swap): nvbandwidth's host_to_device_memcpy_ce
    # measures ~24.8 GB/s on an A100-SXM4 behind PCIe 4.0 x16 (NVIDIA developer forums, "Asymmetric PCIe
    # bandwidth in bidirectional transfers", 2025): 0.78 of 32 GB/s; ~55.6 GB/s of 64 on PCIe 5.0 (0.87).
    # The latency is an order of magnitude for starting one copy, as for the interconnect.
    host_link_efficiency: float = 0.8
    host_link_latency_s: float = 10e-6
    # How the GPUs of a node reach each other for collectives (roofline/collectives.py): every GPU on an
    # NVSwitch, GPUs wired directly by NVLink (bridges, a mesh), or peers over PCIe; the generation whose
    # NCCL tuning tables apply; NVLink SHARP in the switches; and the fixed cost of one eager collective
    # call (30 us: NCCL all-reduces called from PyTorch on A100s, data/profiles/a100).
    gpu_fabric: str = "nvswitch"
    # The GPUs that fabric joins, tensor parallelism's limit (across nodes it would run over the network,
    # which is not modelled): an HGX board's NVSwitch or a PCIe host's slots, 8; a GB200 NVL72 rack's NVLink
    # domain, 72; the NVLink Switch System of DGX GH200, 256
    fabric_gpus: int = 8
    architecture: str = "ampere"
    nvlink_sharp: bool = False
    collective_call_s: float = 30e-6
    # Which all-reduce the tensor-parallel sums run (roofline/custom_all_reduce.py ALL_REDUCES): NCCL, or an
    # engine's own kernel where its rule picks it. The engine's choice, not the chip's: a kernel set
    # (roofline/kernel_set.py) sets it on the spec its timer sees; hardware files do not take it.
    all_reduce: str = "nccl"
    source: str = ""

    def __post_init__(self):
        peaks = {("fp16" if k == "bf16" else k): float(v) for k, v in dict(self.peak_flops_per_s).items()}
        unknown = sorted(set(peaks) - set(DTYPES))
        if unknown:
            raise SpecError(f"{self.name}.peak_flops_per_s", f"unknown dtype; allowed: {', '.join(DTYPES)}",
                            unknown[0])
        if "fp16" not in peaks:
            raise SpecError(f"{self.name}.peak_flops_per_s.fp16", "is required")
        object.__setattr__(self, "peak_flops_per_s", peaks)
        object.__setattr__(self, "gemm_tiles", tuple(tuple(int(x) for x in t) for t in self.gemm_tiles))
        object.__setattr__(self, "gemm_split_k", tuple(int(s) for s in self.gemm_split_k))
        for name in ("vector_flops_per_s", "memory_bytes", "memory_bandwidth_bytes_per_s", "sm_count",
                     "compute_efficiency", "memory_efficiency", "vector_bandwidth_efficiency",
                     "overlap_exponent", "interconnect_efficiency", "interconnect_bandwidth_bytes_per_s",
                     "host_link_efficiency",
                     "host_link_bandwidth_bytes_per_s", "attention_q_tile_tokens", "gemm_cluster_ctas", "fabric_gpus"):
            require_positive(f"{self.name}.{name}", getattr(self, name))
        for name in ("compute_efficiency", "memory_efficiency", "vector_bandwidth_efficiency",
                     "interconnect_efficiency", "host_link_efficiency"):
            if getattr(self, name) > 1:
                raise SpecError(f"{self.name}.{name}", "is a fraction of peak and must be <= 1", getattr(self, name))
        object.__setattr__(self, "dtype_efficiency", self._checked_dtype_efficiency())
        object.__setattr__(self, "_fabric", Fabric(  # which checks the fabric's kind, generation and SHARP
            self.gpu_fabric, self.architecture, self.interconnect_bandwidth_bytes_per_s, self.nvlink_sharp,
            self.interconnect_efficiency, self.collective_call_s))
        require_choice("engine.all_reduce", self.all_reduce, ALL_REDUCES)
        if self.launch_overhead_s < 0:
            raise SpecError(f"{self.name}.launch_overhead_s", "must be >= 0", self.launch_overhead_s)
        if self.sm_dram_bandwidth_bytes_per_s is not None:
            require_positive(f"{self.name}.sm_dram_bandwidth_bytes_per_s", self.sm_dram_bandwidth_bytes_per_s)

    def _checked_dtype_efficiency(self) -> dict:
        """`dtype_efficiency` with bf16 read as fp16's name, each dtype one with a peak here, fp16 itself left
        out (it is the reference) and every product with compute_efficiency a fraction of the peak."""
        factors = {}
        for dtype, factor in dict(self.dtype_efficiency).items():
            field_name = f"{self.name}.dtype_efficiency.{dtype}"
            key = "fp16" if dtype == "bf16" else dtype
            if key == "fp16":
                raise SpecError(field_name, "fp16 (bf16) is the reference: its efficiency is compute_efficiency")
            if key not in self.peak_flops_per_s:
                raise SpecError(field_name, f"names a dtype without a peak here; peaks: "
                                f"{', '.join(sorted(self.peak_flops_per_s))}", dtype)
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (
                    0 < factor * self.compute_efficiency <= 1):
                raise SpecError(field_name, f"must be > 0 and at most 1 / compute_efficiency "
                                f"({1 / self.compute_efficiency:.3g}): the dtype's share of its peak is "
                                f"compute_efficiency x this", factor)
            factors[key] = float(factor)
        return factors

    def __hash__(self):
        return hash((self.name, tuple(sorted(self.peak_flops_per_s.items())), self.memory_bandwidth_bytes_per_s,
                     self.compute_efficiency, tuple(sorted(self.dtype_efficiency.items())), self.memory_efficiency,
                     self.launch_overhead_s))

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for a compute dtype; a missing one is an error naming the ones it has."""
        key = "fp16" if dtype == "bf16" else dtype
        if key not in self.peak_flops_per_s:
            raise HardwareLimit("quantization", f"{self.name} has no {dtype} tensor-core peak, which this scheme's "
                                f"GEMMs run at; it has {', '.join(sorted(self.peak_flops_per_s))} (infersim hardware "
                                f"lists the peaks of each GPU)")
        return self.peak_flops_per_s[key]

    def dtype_efficiency_of(self, dtype: str) -> float:
        """How much of compute_efficiency a tensor-core op in `dtype` sustains (1 for fp16 and any dtype
        without a figure of its own)."""
        return self.dtype_efficiency.get("fp16" if dtype == "bf16" else dtype, 1.0)

    @property
    def interconnect(self) -> Link:
        """The GPU-to-GPU link (NVLink, or PCIe peer-to-peer)."""
        return Link(self.interconnect_bandwidth_bytes_per_s, self.interconnect_efficiency, self.interconnect_latency_s)

    @property
    def host_link(self) -> Link:
        """The GPU-to-host link (PCIe), over which KV blocks are swapped."""
        return Link(self.host_link_bandwidth_bytes_per_s, self.host_link_efficiency, self.host_link_latency_s)

    @property
    def fabric(self) -> Fabric:
        """The node's GPU fabric as NCCL sees it; transfers reach `interconnect_efficiency` of NCCL's
        modelled NVLink bandwidth (0.8 on the A100 measurements)."""
        return self._fabric

    def ridge_point_flops_per_byte(self, dtype: str = "fp16") -> float:
        """Arithmetic intensity where the effective compute and bandwidth roofs meet (Williams et al. 2009)."""
        return (self.peak(dtype) * self.compute_efficiency * self.dtype_efficiency_of(dtype)) / (
            self.memory_bandwidth_bytes_per_s * self.memory_efficiency)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["all_reduce"]  # the engine's choice, not a figure of the hardware file
        d["gemm_tiles"] = [list(t) for t in self.gemm_tiles]
        d["gemm_split_k"] = list(self.gemm_split_k)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Device memory as the driver reports it (nvidia-smi's total), which is what an engine sizes its KV cache
# from: a datasheet's "80 GB" is binary, 80 GiB of HBM (A100 80GB: 81920 MiB, all of it), of which some
# parts keep ~0.4% back (H100 80GB HBM3 81559 MiB, H200 143771 of 141 GiB, GH200 96GB and H20 97871, B200
# 183359 of 180 GiB, GB200 189471 of 186 GiB), except the B300, whose 275040 MiB (288.4e9 B) is the
# datasheet's "288 GB" read as decimal. GDDR6 with ECC on, the default on data-center Ada and Ampere cards,
# keeps its check bits in the same chips, 1/16 of them: the L40S reports 46068 MiB of 48 GiB, the L4 23034
# and A10G 23028 of 24 GiB; the RTX 4090 (no ECC) 24564. AMD parts: the datasheet's GB as GiB.
def _gpu(name, source, peaks, vector, mem_mib, bw_gbs, l2_mb, sram_kb, sms, link_gbs, host_gbs,
         l2_bw_tbs=None, sparse=True, **kw) -> HardwareSpec:
    return HardwareSpec(name=name, source=source, peak_flops_per_s={k: v * TB for k, v in peaks.items()},
                        vector_flops_per_s=vector * TB, memory_bytes=mem_mib * MiB,
                        memory_bandwidth_bytes_per_s=bw_gbs * GB, l2_bytes=l2_mb * MiB,
                        sram_per_sm_bytes=sram_kb * KiB, sm_count=sms,
                        interconnect_bandwidth_bytes_per_s=link_gbs * GB,
                        host_link_bandwidth_bytes_per_s=host_gbs * GB,
                        l2_bandwidth_bytes_per_s=None if l2_bw_tbs is None else l2_bw_tbs * TB,
                        sparse_tensor_cores=sparse, **kw)


_A100_PEAKS = dict(fp32=19.5, tf32=156, fp16=312, int8=624, int4=1248)
_H100_SXM_PEAKS = dict(fp32=67, tf32=494.7, fp16=989.4, fp8=1978.9, int8=1978.9)
_MI300X_PEAKS = dict(fp32=163.4, tf32=653.7, fp16=1307.4, fp8=2614.9, int8=2614.9)
_A100_SOURCE = ("NVIDIA A100 Tensor Core GPU datasheet (2021) and Ampere GA100 whitepaper: 108 SMs, "
                "192 KB L1/shared per SM, 40 MB L2, NVLink 600 GB/s (300 GB/s each way), PCIe Gen4 x16")
_H100_SOURCE = ("NVIDIA H100 Tensor Core GPU datasheet (2023) and Hopper whitepaper: 132 SMs (SXM) / 114 (PCIe), "
                "228 KB shared per SM, 50 MB L2, NVLink 900 GB/s (450 each way), PCIe Gen5 x16")

# FP8 GEMMs on GH100 (H100, H200, GH200) sustain a smaller share of their (doubled) peak than fp16 ones: NVIDIA's
# "Boosting Matrix Multiplication Speed and Flexibility with NVIDIA cuBLAS 12.9" (technical blog, 2025) measures
# Hopper's scaled FP8 matmuls at up to 1.75x the BF16 baseline on large shapes, 1.75 / 2 = 0.875 of BF16's share;
# DeepGEMM (README, 2025-04) reaches 1550 TFLOPS FP8 on an H800 (1979 dense): 0.78 of the peak, 0.88 of the
# 0.89 fp16 an 8192^3 GEMM reached on an H200 here, both best-shaped kernels timed in bursts (the share is a ratio
# of like to like, so it applies to the 0.76 a model's GEMMs sustain); FlashAttention-3 (Shah et al. 2024,
# abstract) 740 TFLOPS fp16 (0.75) and ~1.2 PFLOPS FP8 (0.61): 0.81 of fp16's share. Blackwell's shares are
# below; other GPUs' fp8 and fp4 keep fp16's share: no paired figure.
_GH100_DTYPE_EFFICIENCY = dict(fp8=0.875)

# The share of the bf16 tensor peak GH100 GPUs (H100, H200, GH200) sustain on a model's GEMMs, fitted as the
# A100's is: `infersim calibrate --from-profile data/profiles/h100/Llama-2-7b-hf_linear_ops.csv --hardware
# h100-sxm` finds 0.76 (0.758 from the 0.89 it started from, 0.762 from 0.76) on Vidur's H100 profile, whose
# large MLP GEMMs run at 0.75-0.76 of 989.4 TFLOP/s (4096 tokens x 4096 x 22016 in 0.987 ms: 748 TFLOP/s); the
# A100's profiles give 0.76. One 8192^3 GEMM timed for ~12 ms on an H200 (`calibrate --device gpu`,
# benchmarks/results/h200) reached 0.89: a single best-shaped GEMM in a burst, above what a model's GEMMs
# sustain over a run's steps (the held-out 70B profile's GEMM median error is 15.4% at 0.89, 7.4% at 0.76).
_GH100_COMPUTE_EFFICIENCY = 0.76

# Blackwell GEMMs reach a smaller share of their datasheet peaks than GH100's. cuBLAS on a B200, large square
# shapes timed in bursts (pytorch/ao PR #2427): bf16 at 0.631, 0.646 and 0.672 of its peak at 8192^3, 6144^3 and
# 3072^3 (1.42-1.51 PFLOPS), so compute_efficiency 0.65; NVFP4 at 0.597 and 0.611 at 8192^3 and 6144^3 (5.37
# and 5.50 PFLOPS), 0.946 of bf16's share at either shape, so fp4 0.95; MXFP8 at 8192^3 reaches 0.633
# (triton-lang/triton PR #9044, cuBLAS 13.1: 2,850 TFLOPS), bf16's share, so fp8 keeps it. The H200's bursts
# reached 0.89 where a model's GEMMs sustain 0.76 (0.85 of it); no Blackwell profile says whether the same
# holds. The GB200 and B300 take the B200's shares: none of their own is published.
_BLACKWELL_COMPUTE_EFFICIENCY = 0.65
_BLACKWELL_DTYPE_EFFICIENCY = dict(fp4=0.95)

# Per-SM DRAM bandwidth by Little's law: bytes in flight per SM / DRAM latency. In flight: a full SM's 2048
# resident threads (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability": 2048 per
# SM on 8.0 and 9.0) each with one 16-byte vector load outstanding, 32 KiB. Latency: what a streaming read
# sees, from the `read` column of te42kyfo/gpu-benches' stream benchmark (cuda-stream/a100_80.txt,
# cuda-stream/h100_pcie.txt, gpu-stream/h200.txt) at its lowest occupancy, where DRAM is far from busy:
# 2 blocks x 32 threads x 8 bytes in flight on every SM give 85 GB/s on an A100-SXM4-80GB (108 SMs, 55.3 KB
# in flight: 650 ns), 96 GB/s on an H100 PCIe (114 SMs: 610 ns), 123 GB/s on an H200 (132 SMs: 550 ns). The
# same repository's pointer chase measures 571 cycles at 1.41 GHz (405 ns) on the A100 and 650 at 1.755 GHz
# (370 ns) on the H100 PCIe (cuda-latency/a100_80.txt, gpu-latency/h100_pcie.txt), the rest being the
# threads' issue and retirement. So one SM draws 50 GB/s on an A100, 54 on GH100 parts with HBM3/HBM2e, 60
# on the H200: an A100-80GB needs 37 of its 108 SMs to reach 0.91 of 2039 GB/s, an H100 SXM 57 of 132, an
# H200 71 of 132 (BulletServe's authors see an H100 PCIe's bandwidth saturate near 40 SMs,
# zejia-lin/BulletServe#1; this gives 34). Not given for GPUs without such a measurement (Ada, Blackwell, AMD).
# It covers loads that threads issue; a Hopper GEMM's TMA pipeline keeps more in flight per SM (its stages'
# tiles, ~100-200 KB), so there the cap is conservative (it binds on no GEMM of the checked models).
_SM_IN_FLIGHT_BYTES = 2048 * 16
_AMPERE_SM_DRAM_BW = _SM_IN_FLIGHT_BYTES / 650e-9
_GH100_SM_DRAM_BW = _SM_IN_FLIGHT_BYTES / 610e-9
_H200_SM_DRAM_BW = _SM_IN_FLIGHT_BYTES / 550e-9

# Link figures are per direction. L2 bandwidth: measured figures from microbenchmark studies
# (A100 ~5 TB/s, Jia et al. style; H100 ~ 7.5 TB/s), used only by the GEMM tile model.
_REGISTRY = {h.name: h for h in (
    _gpu("a100-sxm-40gb", _A100_SOURCE, _A100_PEAKS, 19.5, 40960, 1555, 40, 192, 108, 300, 32, l2_bw_tbs=5.0,
         sm_dram_bandwidth_bytes_per_s=_AMPERE_SM_DRAM_BW),
    _gpu("a100-sxm-80gb", _A100_SOURCE, _A100_PEAKS, 19.5, 81920, 2039, 40, 192, 108, 300, 32, l2_bw_tbs=5.0,
         sm_dram_bandwidth_bytes_per_s=_AMPERE_SM_DRAM_BW),
    # HGX H100: 8 GPUs on NVSwitch 3, which reduces in the switch (NVLink SHARP)
    # Its compute efficiency is fitted on its own per-op profile (_GH100_COMPUTE_EFFICIENCY); its HBM3's
    # efficiency stays the A100-fitted one (the H200's HBM3e measured 0.87).
    _gpu("h100-sxm", _H100_SOURCE, _H100_SXM_PEAKS, 67, 81559, 3350, 50, 228, 132, 450, 64, l2_bw_tbs=7.5,
         compute_efficiency=_GH100_COMPUTE_EFFICIENCY, dtype_efficiency=_GH100_DTYPE_EFFICIENCY,
         architecture="hopper", nvlink_sharp=True, gemm_cluster_ctas=2, sm_dram_bandwidth_bytes_per_s=_GH100_SM_DRAM_BW),
    # H100 PCIe: NVLink bridges join pairs of cards (600 GB/s); collectives over more than two go over PCIe,
    # which this one fabric does not model
    _gpu("h100-pcie", _H100_SOURCE, dict(fp32=51, tf32=378, fp16=756, fp8=1513, int8=1513), 51, 81559, 2000,
         50, 228, 114, 300, 64, l2_bw_tbs=6.5, dtype_efficiency=_GH100_DTYPE_EFFICIENCY, architecture="hopper",
         gpu_fabric="nvlink", gemm_cluster_ctas=2, sm_dram_bandwidth_bytes_per_s=_GH100_SM_DRAM_BW),
    # NVIDIA H200 datasheet (2024): H100 SXM compute, 141 GB HBM3e at 4.8 TB/s. Memory efficiency and the exp
    # rate measured on an H200 by `infersim calibrate --device gpu` (benchmarks/results/h200): a 1 GiB device
    # copy at 0.87 of the bandwidth, 3.9e12 exp/s (MUFU); compute efficiency the GH100's sustained one (its
    # 8192^3 burst GEMM there: 0.89).
    _gpu("h200", "NVIDIA H200 Tensor Core GPU datasheet (2024); compute as H100 SXM; memory efficiency measured "
         "(benchmarks/results/h200)", _H100_SXM_PEAKS, 67, 143771, 4800, 50, 228, 132, 450, 64, l2_bw_tbs=7.5,
         compute_efficiency=_GH100_COMPUTE_EFFICIENCY, dtype_efficiency=_GH100_DTYPE_EFFICIENCY,
         memory_efficiency=0.87, special_function_per_s=3.9e12, architecture="hopper", nvlink_sharp=True, gemm_cluster_ctas=2,
         sm_dram_bandwidth_bytes_per_s=_H200_SM_DRAM_BW),
    # NVIDIA GH200 Grace Hopper Superchip datasheet (2023) and Grace Hopper whitepaper: the H100 SXM's GPU
    # (132 SMs, 50 MB L2, 228 KB shared per SM; dense = the datasheet's sparse fp8 3958 TFLOPS halved) with
    # 96 GB HBM3 at 4 TB/s (the 144 GB HBM3e part has 4.9 TB/s); NVLink 4 900 GB/s (450 each way) on the
    # NVLink Switch System of DGX GH200 (a quad-GH200 node wired directly is gpu_fabric: nvlink in a YAML);
    # KV swaps cross NVLink-C2C to the Grace CPU's memory, 900 GB/s (450 each way), not PCIe. Compute
    # efficiency as the H100 SXM's (the same die).
    _gpu("gh200", "NVIDIA GH200 Grace Hopper Superchip datasheet (2023) and Grace Hopper whitepaper: H100 GPU, "
         "96 GB HBM3 at 4 TB/s, NVLink 900 GB/s, NVLink-C2C 900 GB/s", _H100_SXM_PEAKS, 67, 97871, 4000, 50, 228, 132,
         450, 450, l2_bw_tbs=7.5, compute_efficiency=_GH100_COMPUTE_EFFICIENCY,
         dtype_efficiency=_GH100_DTYPE_EFFICIENCY,
         fabric_gpus=256, architecture="hopper", nvlink_sharp=True, gemm_cluster_ctas=2, sm_dram_bandwidth_bytes_per_s=_GH100_SM_DRAM_BW),
    # NVIDIA H20 (HGX H20, 2024): a cut-down Hopper for China with no public NVIDIA datasheet; figures from
    # NVIDIA's partner spec sheet as reported (SemiAnalysis, Nov 2023): dense fp16 148, fp8 and int8 296,
    # tf32 74, fp32 44 TFLOPS, 96 GB HBM3 at 4.0 TB/s, 60 MB L2, NVLink 900 GB/s (450 each way) on
    # NVSwitch, PCIe Gen5 x16; 78 SMs as the device reports them (Geekbench 6 listing).
    _gpu("h20", "NVIDIA HGX H20 partner spec sheet (2024, as reported by SemiAnalysis): 78 SMs, 60 MB L2, 96 GB "
         "HBM3 at 4.0 TB/s, NVLink 900 GB/s, PCIe Gen5 x16", dict(fp32=44, tf32=74, fp16=148, fp8=296, int8=296), 44,
         97871, 4000, 60, 228, 78, 450, 64, architecture="hopper", nvlink_sharp=True, gemm_cluster_ctas=2,
         sm_dram_bandwidth_bytes_per_s=_GH100_SM_DRAM_BW),
    # Blackwell: NVIDIA's datasheets print fp4-tf32 peaks with 2:4 sparsity; the dense ones here are half.
    # NVLink 5 gives each GPU 1.8 TB/s (900 GB/s each way) through NVSwitch, which reduces in the switch
    # (SHARP). SMs, L2 and shared memory per SM as cudaGetDeviceProperties reports them on each part
    # (OpenXLA's GPU specs, xla/backends/gpu/target_config/specs/{b200,gb200,b300}.txtpb).
    # HGX B200 (NVIDIA HGX B200 datasheet, 2024-25; per GPU of 8): fp4 144, fp8 and int8 72, fp16 36, tf32 18
    # PFLOPS sparse; fp32 600 TFLOPS; 1.44 TB HBM3e; PCIe Gen5 x16 to the host. Memory at 7.7 TB/s, the HGX
    # B200 figure per GPU (its earlier "8 TB/s" rounds it; the device reports a 7680-bit bus at 3996 MHz, 7.67
    # TB/s, pytorch/ao PR #4002), of which CCCL's DeviceTransform stream benchmark moves 7.087 TB/s
    # (NVIDIA/cccl PR #7391): 0.92.
    _gpu("b200", "NVIDIA HGX B200 datasheet (2024-25): 148 SMs, 126.5 MiB L2, 180 GB HBM3e at 7.7 TB/s, "
         "NVLink 5 1.8 TB/s (900 GB/s each way), PCIe Gen5 x16",
         dict(fp32=75, tf32=1125, fp16=2250, fp8=4500, fp4=9000, int8=4500), 75, 183359, 7700, 126.5, 228, 148, 900,
         64, architecture="blackwell", nvlink_sharp=True, gemm_cluster_ctas=2, memory_efficiency=0.92,
         compute_efficiency=_BLACKWELL_COMPUTE_EFFICIENCY, dtype_efficiency=_BLACKWELL_DTYPE_EFFICIENCY),
    # GB200 NVL72 (NVIDIA GB200 NVL72 datasheet, 2024; one GPU of 72): fp4 1,440, fp8 and int8 720, fp16 360,
    # tf32 180 PFLOPS sparse; fp32 5,760 TFLOPS; 13.4 TB HBM3e at 576 TB/s; NVLink 130 TB/s; 152 SMs at
    # the GB200's higher clocks; NVLink-C2C to its Grace CPU, 900 GB/s (450 each way), carries KV swaps.
    _gpu("gb200", "NVIDIA GB200 NVL72 datasheet (2024): one Blackwell GPU of 72, 152 SMs, 129 MiB L2, 186 GB HBM3e "
         "at 8 TB/s, NVLink 5 1.8 TB/s (900 GB/s each way), NVLink-C2C 900 GB/s",
         dict(fp32=80, tf32=1250, fp16=2500, fp8=5000, fp4=10000, int8=5000), 80, 189471, 8000, 129.25, 228, 152,
         900, 450, fabric_gpus=72, architecture="blackwell", nvlink_sharp=True, gemm_cluster_ctas=2,
         compute_efficiency=_BLACKWELL_COMPUTE_EFFICIENCY, dtype_efficiency=_BLACKWELL_DTYPE_EFFICIENCY),
    # HGX B300 (NVIDIA HGX B300 datasheet, 2025; per GPU of 8): Blackwell Ultra, whose fp4 rises to 105
    # PFLOPS dense (144 sparse) while int8 falls to 2 POPS sparse; fp8 72, fp16 36, tf32 18 PFLOPS sparse;
    # fp32 600 TFLOPS; up to 2.3 TB HBM3e; 8 TB/s per GPU ("Inside NVIDIA Blackwell Ultra", NVIDIA technical
    # blog, 2025). The GPU's PCIe Gen6 port runs at Gen5 x16 behind today's x86 hosts.
    _gpu("b300", "NVIDIA HGX B300 datasheet (2025) and \"Inside NVIDIA Blackwell Ultra\" (NVIDIA, 2025): 158 SMs, "
         "129 MiB L2, 288 GB HBM3e at 8 TB/s, NVLink 5 1.8 TB/s (900 GB/s each way)",
         dict(fp32=75, tf32=1125, fp16=2250, fp8=4500, fp4=13125, int8=125), 75, 275040, 8000, 129.25, 228, 158, 900,
         64, architecture="blackwell", nvlink_sharp=True, gemm_cluster_ctas=2,
         compute_efficiency=_BLACKWELL_COMPUTE_EFFICIENCY, dtype_efficiency=_BLACKWELL_DTYPE_EFFICIENCY),
    # NVIDIA L40S datasheet (2023): 142 SMs, 48 GB GDDR6 at 864 GB/s, 96 MB L2, no NVLink.
    _gpu("l40s", "NVIDIA L40S datasheet (2023), Ada AD102: 142 SMs, 96 MB L2, PCIe Gen4 only",
         dict(fp32=91.6, tf32=183, fp16=362, fp8=733, int8=733, int4=733), 91.6, 46068, 864, 96, 128, 142, 32, 32,
         gpu_fabric="pcie"),
    # NVIDIA L4 datasheet (2023): 58 SMs, 24 GB GDDR6 at 300 GB/s, 48 MB L2.
    _gpu("l4", "NVIDIA L4 Tensor Core GPU datasheet (2023), Ada AD104: 58 SMs, 48 MB L2, PCIe Gen4 only",
         dict(fp32=30.3, tf32=60, fp16=121, fp8=242.5, int8=242.5), 30.3, 23034, 300, 48, 128, 58, 32, 32,
         gpu_fabric="pcie"),
    # NVIDIA A10 datasheet (2021) tensor figures; A10G is AWS's variant: 80 SMs, 24 GB at 600 GB/s, 6 MB L2.
    _gpu("a10g", "NVIDIA A10 datasheet (2021) figures for AWS A10G: 80 SMs, 6 MB L2, 600 GB/s",
         dict(fp32=31.2, tf32=62.5, fp16=125, int8=250, int4=500), 31.2, 23028, 600, 6, 128, 80, 32, 32,
         gpu_fabric="pcie"),
    # NVIDIA Ada whitepaper (RTX 4090): fp16 tensor with fp32 accumulate 165.2 TFLOPS dense, 1008 GB/s.
    _gpu("rtx-4090", "NVIDIA Ada Lovelace architecture whitepaper v2.1, RTX 4090: 128 SMs, 72 MB L2",
         dict(fp32=82.6, tf32=82.6, fp16=165.2, fp8=330.3, int8=660.6, int4=1321.2), 82.6, 24564, 1008, 72, 128,
         128, 32, 32, gpu_fabric="pcie"),
    # AMD Instinct MI300X datasheet (2023): 304 CUs, 192 GB HBM3 at 5.3 TB/s, 256 MB Infinity Cache,
    # 7 Infinity Fabric links x 64 GB/s each way, 64 KB LDS per CU. Collectives: RCCL derives from NCCL; its
    # tuning tables are taken as NCCL's Hopper ones over the direct links of the 8-GPU mesh.
    _gpu("mi300x", "AMD Instinct MI300X accelerator datasheet (2023): 304 CUs, 256 MB Infinity Cache",
         _MI300X_PEAKS, 81.7, 196608, 5300, 256, 64, 304, 448, 64, architecture="hopper", gpu_fabric="nvlink"),
    # AMD Instinct MI325X datasheet (2024): the MI300X's compute (dense fp16 1307.4, fp8 2614.9 TFLOPS: the
    # datasheet's sparse 5229.8 halved) with 256 GB HBM3E at 6 TB/s; 304 CUs, 64 KB LDS per CU and 256 MB
    # Infinity Cache as ROCm's GPU specifications table lists them; the MI300X's Infinity Fabric mesh.
    _gpu("mi325x", "AMD Instinct MI325X accelerator datasheet (2024): 304 CUs, 256 GB HBM3E at 6 TB/s, 256 MB "
         "Infinity Cache, 7 Infinity Fabric links x 128 GB/s (64 each way), PCIe Gen5 x16", _MI300X_PEAKS, 81.7, 262144,
         6000, 256, 64, 304, 448, 64, architecture="hopper", gpu_fabric="nvlink"),
    # AMD Instinct MI355X datasheet (2025) and CDNA 4 whitepaper: 256 CUs at 2.4 GHz, dense fp16 2516.6, fp8
    # and int8 5033.2 (8,192 FP8 FLOP per CU per clock), MXFP4 10066.3 TFLOPS; CDNA 4 has no TF32 matrix math
    # (ROCm Compute Profiler's CDNA table). 288 GB HBM3E at 8 TB/s; 160 KB LDS per CU and 256 MB Infinity
    # Cache (ROCm GPU specifications); 7 Infinity Fabric links x 153.6 GB/s (76.8 each way). The vector rate
    # leaves out packed FP32 math, as for the MI300X: half the datasheet's 157.3 TFLOPS.
    _gpu("mi355x", "AMD Instinct MI355X accelerator datasheet (2025) and CDNA 4 whitepaper: 256 CUs, 288 GB "
         "HBM3E at 8 TB/s, 256 MB Infinity Cache, 7 Infinity Fabric links x 153.6 GB/s, PCIe Gen5 x16",
         dict(fp32=157.3, fp16=2516.6, fp8=5033.2, fp4=10066.3, int8=5033.2), 78.6, 294912, 8000, 256, 160, 256,
         537.6, 64, architecture="hopper", gpu_fabric="nvlink"),
)}


def hardware_names() -> list[str]:
    return sorted(_REGISTRY)


# The range of each figure a hardware file may give: wide enough for any real device (a CPU core to a
# rack-scale GPU), narrow enough that no step time comes out 0, inf or years. (whole, minimum, maximum)
_PER_S = (False, 1e6, 1e18)
_FRACTION = (False, 0.01, 1.0)
_LATENCY_S = (False, 0.0, 0.01)  # a kernel launch or a link hop: microseconds
_RANGES = {
    "vector_flops_per_s": _PER_S, "memory_bytes": (False, 1e6, 1e15), "memory_bandwidth_bytes_per_s": _PER_S,
    "l2_bytes": (False, 0.0, 1e12), "sram_per_sm_bytes": (False, 0.0, 1e9), "sm_count": (True, 1, 1 << 20),
    "interconnect_bandwidth_bytes_per_s": _PER_S, "host_link_bandwidth_bytes_per_s": _PER_S,
    "l2_bandwidth_bytes_per_s": _PER_S, "special_function_per_s": _PER_S, "sm_dram_bandwidth_bytes_per_s": _PER_S,
    "attention_q_tile_tokens": (True, 1, 1 << 16), "gemm_cluster_ctas": (True, 1, 16), "fabric_gpus": (True, 1, 1 << 16),
    "compute_efficiency": _FRACTION, "memory_efficiency": _FRACTION, "vector_bandwidth_efficiency": _FRACTION,
    "overlap_exponent": (False, 1.0, 100.0), "launch_overhead_s": _LATENCY_S, "interconnect_efficiency": _FRACTION,
    "interconnect_latency_s": _LATENCY_S, "host_link_efficiency": _FRACTION, "host_link_latency_s": _LATENCY_S,
    "collective_call_s": _LATENCY_S,
}
_DTYPE_SHARE = (False, 0.01, 100.0)  # of compute_efficiency; HardwareSpec caps the product at 1
_UNSET_BY_NULL = ("l2_bandwidth_bytes_per_s", "special_function_per_s",  # None: not modelled; 0 is an error
                  "sm_dram_bandwidth_bytes_per_s")
_TILE_SIDE = (True, 1, 4096)
_SPLIT_K = (True, 1, 1024)


def _figure(origin: str, field: str, value, allowed: tuple) -> float:
    """A figure within its range; YAML 1.1 reads 37.4e12 (no dot, no signed exponent) as text, which
    `number` takes as the number it spells."""
    whole, minimum, maximum = allowed
    x = number(value, field, origin, whole=whole, minimum=minimum, maximum=maximum)
    return int(x) if whole else x


def _file_value(origin: str, field: str, value):
    """One field of a hardware file, checked and converted."""
    if field in ("name", "source"):
        if not isinstance(value, str) or (field == "name" and not value.strip()):
            raise SpecError(field, "must be text" + (" (not empty)" if field == "name" else ""), value, file=origin)
        if unprintable(value, lines=field == "source"):
            raise SpecError(field, UNPRINTABLE_NAME, value, file=origin)
        return value
    if field in ("gpu_fabric", "architecture"):
        allowed = FABRICS if field == "gpu_fabric" else GENERATIONS
        if value not in allowed:
            raise SpecError(field, f"must be one of {', '.join(allowed)}", value, file=origin)
        return value
    if field in ("sparse_tensor_cores", "nvlink_sharp"):
        if not isinstance(value, bool):
            raise SpecError(field, "must be true or false", value, file=origin)
        return value
    if field == "peak_flops_per_s":
        return _peaks(origin, value)
    if field == "dtype_efficiency":
        return _dtype_efficiency(origin, value)
    if field == "gemm_tiles":
        return [[_figure(origin, f"{field}.{i}.{j}", side, _TILE_SIDE) for j, side in enumerate(tile)]
                for i, tile in enumerate(_list(origin, field, value, pairs=True))]
    if field == "gemm_split_k":
        return [_figure(origin, f"{field}.{i}", k, _SPLIT_K) for i, k in enumerate(_list(origin, field, value))]
    if value is None and field in _UNSET_BY_NULL:
        return None
    return _figure(origin, field, value, _RANGES[field])


def _peaks(origin: str, value) -> dict:
    if not isinstance(value, dict):
        raise SpecError("peak_flops_per_s", "must be a mapping of dtype to FLOP/s, e.g. {fp16: 312e12}", value,
                        file=origin)
    unknown = sorted(str(k) for k in value if k not in DTYPES)
    if unknown:
        raise SpecError(f"peak_flops_per_s.{unknown[0]}", f"unknown dtype; allowed: {', '.join(DTYPES)}",
                        file=origin)
    if "fp16" in value and "bf16" in value:  # bf16 runs at the fp16 rate: the spec keeps one peak for both
        raise SpecError("peak_flops_per_s.bf16", "is the fp16 peak under another name; give fp16 or bf16, not both",
                        file=origin)
    if "fp16" not in value and "bf16" not in value:
        raise SpecError("peak_flops_per_s", "needs fp16 (or bf16): the dense tensor-core peak every model uses",
                        file=origin)
    return {k: _figure(origin, f"peak_flops_per_s.{k}", v, _PER_S) for k, v in value.items()}


def _dtype_efficiency(origin: str, value) -> dict:
    """A mapping of tensor dtype to its share of compute_efficiency; `HardwareSpec` checks each dtype has a
    peak and each product with compute_efficiency is a fraction."""
    if not isinstance(value, dict):
        raise SpecError("dtype_efficiency", "must be a mapping of dtype to a share of compute_efficiency, "
                        "e.g. {fp8: 0.875}", value, file=origin)
    unknown = sorted(str(k) for k in value if k not in DTYPES)
    if unknown:
        raise SpecError(f"dtype_efficiency.{unknown[0]}", f"unknown dtype; allowed: {', '.join(DTYPES)}",
                        file=origin)
    return {k: _figure(origin, f"dtype_efficiency.{k}", v, _DTYPE_SHARE) for k, v in value.items()}


def _list(origin: str, field: str, value, pairs: bool = False) -> list:
    """A non-empty list (of [rows, columns] pairs if `pairs`); gemm_tiles may be empty (no tile model)."""
    items = value if isinstance(value, (list, tuple)) else None
    if items is None or (not items and not pairs) or (pairs and any(
            not isinstance(t, (list, tuple)) or len(t) != 2 for t in items)):
        shape = "a list of [rows, columns] tile shapes" if pairs else "a list of at least one whole number"
        raise SpecError(field, f"must be {shape}", value, file=origin)
    return list(items)


_FIELDS = {f.name for f in dataclasses.fields(HardwareSpec)} - {"all_reduce"}  # the engine's (engine.all_reduce)
_REQUIRED = {f.name for f in dataclasses.fields(HardwareSpec)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def hardware_from_dict(data: dict, origin: str = "hardware") -> HardwareSpec:
    """Build a spec from a mapping (a YAML file's contents); every error names `origin` and the field."""
    if not isinstance(data, dict):
        raise SpecError("", "must be a mapping of hardware fields (name, peak_flops_per_s, ...)",
                        type(data).__name__, file=origin)
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        close = closest_name(unknown[0], sorted(_FIELDS))
        hint = f"did you mean {close}?" if close else f"allowed: {', '.join(sorted(_FIELDS))}"
        raise SpecError(unknown[0], f"is not a known field; {hint}", file=origin)
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise SpecError(missing[0], "is required", file=origin)
    fields = {field: _file_value(origin, field, value) for field, value in data.items()}
    l2_bw = fields.get("l2_bandwidth_bytes_per_s")
    if l2_bw is not None and l2_bw < fields["memory_bandwidth_bytes_per_s"]:  # the L2 feeds the SMs from DRAM
        raise SpecError("l2_bandwidth_bytes_per_s", f"must be at least memory_bandwidth_bytes_per_s "
                        f"({fields['memory_bandwidth_bytes_per_s']:.3g}): every byte from DRAM passes through the L2 "
                        "(is it in another unit?)", data["l2_bandwidth_bytes_per_s"], file=origin)
    with errors_in(origin):
        return HardwareSpec(**fields)


def load_hardware_yaml(path: Path | str) -> HardwareSpec:
    path = Path(path)
    return hardware_from_dict(load_yaml(path, "hardware"), origin=path.name)


def get_hardware(name_or_path: str, base: Path | None = None, field: str = "hardware") -> HardwareSpec:
    """A registry name, or a path to a hardware YAML file (e.g. written by `infersim calibrate`; relative
    paths from `base` if given)."""
    found = registry_or_file(field, name_or_path, _REGISTRY, "hardware", "hardware YAML", (".yaml", ".yml"),
                             base)
    return found if isinstance(found, HardwareSpec) else load_hardware_yaml(found)
