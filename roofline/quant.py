"""Quantization and sparsity of weights, activations and the KV cache: bytes per element and which peak.

Scales and zero points are fp16 (2 bytes each) per group; a weight matrix of K inputs x N outputs has
ceil(K / group) x N groups (group-wise, GPTQ/AWQ), N groups (per-channel) or 1 (per-tensor). The
microscaling FP4 formats keep one 8-bit scale per block of 16 or 32 elements instead.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import SpecError, require_choice

WEIGHT_BITS = (16, 8, 4, 3, 2)
ACT_BITS = (16, 8, 4)
KV_BITS = (16, 8, 4)
GRANULARITIES = ("tensor", "channel", "group")
ACT_GRANULARITIES = ("tensor", "token")
WEIGHT_FORMATS = ("int", "float", "codebook")
SPARSITY_PATTERNS = ("none", "unstructured", "2:4")
ATTENTION_DTYPES = ("fp16", "fp8")
SCALE_BYTES = 2  # fp16 scales and zero points (GPTQ/AWQ, KIVI)
SCALE_SIZES_BYTES = (2, 1)  # fp16, or an 8-bit block scale (FP8 E4M3 for NVFP4, E8M0 for MXFP4)


@dataclass(frozen=True)
class QuantSpec:
    """How weights, activations and KV cache are stored and which tensor-core peak a GEMM uses.

    `outlier_fraction` is LLM.int8()'s mixed-precision decomposition (Dettmers et al. 2022, §3.2): that
    fraction of input features stays fp16. `smoothing` is SmoothQuant's difficulty migration (Xiao et al.
    2023, §4): folded into the weights offline, free at run time, it is what makes per-tensor/per-token
    W8A8 accurate on models with activation outliers. `scale_bytes` is the size of one weight scale (and zero
    point): fp16, or the 8-bit block scale of the microscaling formats, which scale 4-bit activations too.
    `attention_dtype` is the tensor-core dtype of attention's QK^T and PV: fp8 where the engine quantizes Q
    and runs them on the FP8 K/V it reads (TensorRT-LLM's FP8 context FMHA and XQA, FlashAttention-3's FP8
    path), which needs the FP8 KV cache.
    """

    weight_bits: int = 16
    weight_granularity: str = "channel"
    weight_group_size: int = 128
    weight_symmetric: bool = True
    weight_format: str = "int"
    scale_bytes: int = SCALE_BYTES
    act_bits: int = 16
    act_granularity: str = "token"
    kv_bits: int = 16
    outlier_fraction: float = 0.0
    smoothing: bool = False
    sparsity: float = 0.0
    sparsity_pattern: str = "none"
    attention_dtype: str = "fp16"

    def __post_init__(self):
        require_choice("quantization.weight_bits", self.weight_bits, WEIGHT_BITS)
        require_choice("quantization.act_bits", self.act_bits, ACT_BITS)
        require_choice("quantization.kv_bits", self.kv_bits, KV_BITS)
        require_choice("quantization.weight_granularity", self.weight_granularity, GRANULARITIES)
        require_choice("quantization.act_granularity", self.act_granularity, ACT_GRANULARITIES)
        require_choice("quantization.weight_format", self.weight_format, WEIGHT_FORMATS)
        require_choice("quantization.scale_bytes", self.scale_bytes, SCALE_SIZES_BYTES)
        require_choice("quantization.sparsity_pattern", self.sparsity_pattern, SPARSITY_PATTERNS)
        require_choice("quantization.attention_dtype", self.attention_dtype, ATTENTION_DTYPES)
        if self.attention_dtype == "fp8" and self.kv_bits != 8:
            raise SpecError("quantization.attention_dtype", "fp8 attention reads an FP8 KV cache (kv_bits 8)",
                            self.attention_dtype)
        if self.weight_group_size <= 0:
            raise SpecError("quantization.weight_group_size", "must be > 0", self.weight_group_size)
        if not 0 <= self.outlier_fraction < 1:
            raise SpecError("quantization.outlier_fraction", "must be in [0, 1)", self.outlier_fraction)
        if self.act_bits == 8 and self.weight_bits != 8:
            raise SpecError("quantization.act_bits", "8-bit activations need 8-bit weights (W8A8)",
                            self.act_bits)
        block_scaled_fp4 = (self.weight_bits, self.weight_format, self.weight_granularity) == (4, "float", "group")
        if self.act_bits == 4 and not block_scaled_fp4:
            raise SpecError("quantization.act_bits", "4-bit activations need FP4 weights with block scales "
                            "(weight_bits 4, weight_format float, weight_granularity group: NVFP4, MXFP4)",
                            self.act_bits)
        if self.outlier_fraction and self.act_bits != 8:
            raise SpecError("quantization.outlier_fraction", "applies to W8A8 only (LLM.int8())",
                            self.outlier_fraction)
        if not 0 <= self.sparsity < 1:
            raise SpecError("quantization.sparsity", "must be in [0, 1)", self.sparsity)
        if self.sparsity_pattern == "2:4" and self.sparsity not in (0.0, 0.5):
            raise SpecError("quantization.sparsity", "2:4 structured sparsity is 0.5 by definition",
                            self.sparsity)
        if self.sparsity_pattern == "unstructured" and self.sparsity == 0:
            raise SpecError("quantization.sparsity", "unstructured sparsity needs a fraction > 0", self.sparsity)

    @property
    def kept_fraction(self) -> float:
        """Fraction of weights stored: 1 - sparsity (2:4 keeps half)."""
        if self.sparsity_pattern == "2:4":
            return 0.5
        return 1.0 - self.sparsity

    def gemm_dtype(self) -> str:
        """The tensor-core peak a GEMM runs at: W8A8 -> int8 (fp8 for float weights); FP4 weights and
        activations with block scales (NVFP4, MXFP4) -> fp4, the scales applied inside the tensor core
        (Blackwell's block-scaled MMA, CDNA 4's scaled MFMA); else fp16.

        Weight-only schemes (W4A16, W8A16) dequantize to fp16 and use the fp16 peak.
        """
        if self.act_bits == 4:
            return "fp4"
        if self.act_bits == 8:
            return "fp8" if self.weight_format == "float" else "int8"
        return "fp16"

    def weight_bytes(self, in_features: int, out_features: int) -> float:
        """Bytes of one K x N weight matrix: values, scales/zero points, sparsity metadata.

        Unstructured sparsity stores a 1-bit mask per element (bitmap format, as Flash-LLM does);
        2:4 stores a 2-bit index per kept value (NVIDIA Ampere whitepaper, sparse tensor cores).
        """
        elements = in_features * out_features
        value_bytes = elements * self.kept_fraction * self.weight_bits / 8
        if self.weight_bits == 16:
            scale_groups = 0
        elif self.weight_granularity == "tensor":
            scale_groups = 1
        elif self.weight_granularity == "channel":
            scale_groups = out_features
        else:
            scale_groups = math.ceil(in_features / self.weight_group_size) * out_features
        per_group = self.scale_bytes * (1 if self.weight_symmetric else 2)
        if self.sparsity_pattern == "unstructured":
            meta = elements / 8
        elif self.sparsity_pattern == "2:4":
            meta = elements * 0.5 * 2 / 8
        else:
            meta = 0
        return value_bytes + scale_groups * per_group + meta

    def dequant_flops_per_weight(self) -> float:
        """Vector FLOPs to turn one stored weight into fp16: (q - z) * s, or a table lookup and a scale; none
        when the tensor cores take the quantized weights (W8A8, FP4)."""
        if self.weight_bits == 16 or self.act_bits < 16:
            return 0.0
        return 1.0 if (self.weight_symmetric or self.weight_format == "codebook") else 2.0

    def act_bytes_per_element(self) -> float:
        """Bytes per activation element a GEMM reads; FP4 activations carry a block scale per group, as the
        weights do."""
        if self.act_bits == 4:
            return 0.5 + self.scale_bytes / self.weight_group_size
        return self.act_bits / 8

    def kv_bytes_per_element(self, head_dim: int) -> float:
        """KV-cache bytes per element. 8-bit uses one scale per tensor (FP8 KV as vLLM stores it); 4-bit
        adds an fp16 scale and zero point per token and head (KIVI-style groups of head_dim)."""
        if self.kv_bits == 4:
            return 0.5 + 2 * SCALE_BYTES / head_dim
        return self.kv_bits / 8

    def accuracy_notes(self) -> list[str]:
        """Warnings a user should see: schemes known to lose accuracy on LLMs with activation outliers."""
        notes = []
        if (self.act_bits == 8 and not self.smoothing and not self.outlier_fraction
                and self.weight_format == "int"):
            notes.append("W8A8 int8 without smoothing or outlier decomposition loses accuracy on models "
                         "over ~6.7B parameters (LLM.int8() §3; SmoothQuant §3): use w8a8 (smoothed) or llm-int8")
        if self.weight_bits <= 3 and self.weight_granularity != "group":
            notes.append("2- and 3-bit weights need group-wise scales to stay usable (GPTQ §5)")
        return notes


def _microscaled_fp4(block_elements: int) -> QuantSpec:
    """FP4 (E2M1) weights and activations with one 8-bit scale per `block_elements`, GEMMs at the fp4 peak;
    the KV cache and attention stay fp8, as NVFP4/MXFP4 checkpoints are served (TensorRT-LLM, vLLM)."""
    return QuantSpec(weight_bits=4, weight_format="float", weight_granularity="group",
                     weight_group_size=block_elements, scale_bytes=1, act_bits=4, kv_bits=8, attention_dtype="fp8")


PRESETS = {
    "fp16": QuantSpec(),
    "bf16": QuantSpec(),
    "w8a16": QuantSpec(weight_bits=8),
    "w4a16": QuantSpec(weight_bits=4, weight_granularity="group", weight_symmetric=False),
    "w3a16": QuantSpec(weight_bits=3, weight_granularity="group", weight_symmetric=False),
    "w2a16": QuantSpec(weight_bits=2, weight_granularity="group", weight_symmetric=False),
    "nf4": QuantSpec(weight_bits=4, weight_granularity="group", weight_group_size=64, weight_format="codebook"),
    "w8a8": QuantSpec(weight_bits=8, act_bits=8, smoothing=True),
    "w8a8-naive": QuantSpec(weight_bits=8, act_bits=8, act_granularity="tensor"),
    "llm-int8": QuantSpec(weight_bits=8, act_bits=8, outlier_fraction=0.001),
    # FP8 (E4M3) checkpoints as TensorRT-LLM and vLLM serve them (NVIDIA ModelOpt's, vLLM's `fp8`): one scale per
    # weight tensor and one static scale per activation tensor, the FP8 KV cache, and attention in fp8 on it
    # (`trtllm-bench build --quantization FP8` sets use_fp8_context_fmha, tensorrt_llm/bench/build/build.py).
    "fp8": QuantSpec(weight_bits=8, weight_granularity="tensor", act_bits=8, act_granularity="tensor",
                     weight_format="float", kv_bits=8, attention_dtype="fp8"),
    "sparse-2:4": QuantSpec(sparsity_pattern="2:4"),
    # NVIDIA's NVFP4 (Blackwell): an FP8 E4M3 scale per 16 values (and one FP32 scale per tensor, 4 bytes,
    # left out); OCP Microscaling Formats (MX) v1.0 MXFP4: a power-of-two E8M0 scale per 32 values.
    "nvfp4": _microscaled_fp4(16),
    "mxfp4": _microscaled_fp4(32),
}


def get_quant(name: str, kv_bits: int | None = None) -> QuantSpec:
    """A preset by name, with an optional KV-cache bit width on top; a KV cache other than FP8 turns FP8
    attention back to fp16, as TensorRT-LLM's builder does ("FP8 Paged Context FMHA is disabled because it
    must be used together with fp8 KV Cache", tensorrt_llm/builder.py)."""
    if name not in PRESETS:
        raise SpecError("quant", f"unknown scheme; allowed: {', '.join(PRESETS)}", name)
    spec = PRESETS[name]
    if kv_bits is not None:
        spec = dataclasses.replace(spec, kv_bits=kv_bits,
                                   attention_dtype=spec.attention_dtype if kv_bits == 8 else "fp16")
    return spec


def check_runs_on(quant: QuantSpec, hw, field: str, name: str) -> None:
    """The scheme's GEMMs have a tensor-core peak on `hw` (a HardwareSpec); if not, one error naming the
    field and the preset `name` as the user wrote them (nvfp4, not the fp4 its GEMMs run in)."""
    try:
        hw.peak(quant.gemm_dtype())
    except SpecError as err:
        raise type(err)(field, err.problem, name) from None  # a HardwareLimit stays one
