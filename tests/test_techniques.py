"""The technique scenario pairs in scenarios/techniques/ (quantization, pruning, distillation, decoding): every file loads
and builds a run, every variant differs from its baseline only in the keys it is about, and each technique
changes the model's memory as worked out by hand below. No file is simulated here (each takes seconds; the
README in that folder quotes their results).

Shared hand values: an H100 SXM has 80e9 bytes; the vLLM V1 preset plans with 0.92 of them (73.6e9), a step
budget of 8192 tokens, 1024 sequences and 16-token blocks. Llama-3.1-8B's workspace is 8192 tokens x (28672
SwiGLU up + 14336 + 2 x 4096 residual) x 2 B = 838,860,800 plus 1024 sequences x 128256 logits x (2 + 3 x 4) B
= 1,838,678,016: 2,677,538,816 bytes.
"""
from pathlib import Path

import pytest
import yaml

from infersim.roofline import (Parallelism, SpecError, get_hardware, get_model, get_quant, kv_bytes_per_token_per_gpu,
                               plan_memory, weight_bytes_per_gpu)
from infersim.scenario import Scenario, build_run
from infersim.sim.run import total_kv_blocks

TECHNIQUES = Path(__file__).resolve().parent.parent / "scenarios" / "techniques"
FILES = sorted(p.stem for p in TECHNIQUES.glob("*.yaml"))
LABELS = {"name", "description"}  # every variant renames itself

# variant -> (its baseline, the keys it changes besides its name and description)
VARIANTS = {
    "quantization-w8a8": ("quantization-baseline", {"quantization"}),
    "quantization-w4a16": ("quantization-baseline", {"quantization"}),
    "quantization-llm-int8": ("quantization-baseline", {"quantization"}),
    "quantization-fp8": ("quantization-baseline", {"quantization"}),
    "quantization-kv8": ("quantization-baseline", {"quantization"}),
    "quantization-kv4": ("quantization-baseline", {"quantization"}),
    "pruning-sparse-2-4": ("pruning-baseline", {"quantization"}),
    "pruning-minitron-width": ("pruning-baseline", {"model"}),
    "pruning-minitron-depth": ("pruning-baseline", {"model"}),
    "distillation-8b": ("distillation-baseline", {"model", "parallelism"}),
    "decoding-eagle": ("decoding-baseline", {"speculative"}),
    "decoding-draft-model": ("decoding-baseline", {"speculative"}),
    "decoding-ngram": ("decoding-baseline", {"speculative"}),
    "decoding-early-exit": ("decoding-baseline", {"early_exit"}),
    "decoding-parallel-sampling": ("decoding-baseline", {"workload"}),
    "decoding-contrastive": ("decoding-baseline", {"contrastive"}),
    "cascade-8b-70b": ("cascade-baseline", {"cascade"}),
}
BASELINES = sorted({baseline for baseline, _ in VARIANTS.values()})

LLAMA8_FP16_WEIGHT_BYTES = 8_030_261_248 * 2  # Meta's safetensors total, 2 bytes each
# Linear weights of Llama-3.1-8B: 32 layers x (4096 x (4096 + 2 x 1024 QKV + 4096 O + 2 x 14336 gate/up)
# + 14336 x 4096 down) = 32 x 218,103,808 = 6,979,321,856 elements; norms 32 x 2 x 4096 x 2 B = 524,288 B;
# embedding and LM head 2 x 128256 x 4096 x 2 B plus the final norm's 8,192 B = 2,101,354,496 B, both kept fp16.
LLAMA8_LINEAR_ELEMENTS = 6_979_321_856
LLAMA8_UNQUANTIZED_BYTES = 524_288 + 2_101_354_496


def _load(stem: str) -> dict:
    return yaml.safe_load((TECHNIQUES / f"{stem}.yaml").read_text())


def _config(stem: str):
    cfg, _ = build_run(Scenario.model_validate(_load(stem)), TECHNIQUES)
    return cfg


def test_every_file_is_a_baseline_or_a_listed_variant_and_the_readme_names_it():
    assert sorted(BASELINES + list(VARIANTS)) == FILES
    readme = (TECHNIQUES / "README.md").read_text()
    assert [stem for stem in FILES if f"{stem}.yaml" not in readme] == []


@pytest.mark.parametrize("stem", FILES)
def test_scenario_loads_validates_and_builds_its_run(stem):
    data = _load(stem)
    assert data["name"] == stem
    cfg, requests = build_run(Scenario.model_validate(data), TECHNIQUES)
    assert len(requests) == data["workload"]["num_requests"]
    assert cfg.model.name == data["model"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_differs_from_its_baseline_only_in_the_technique_keys(variant):
    baseline, keys = VARIANTS[variant]
    base, var = _load(baseline), _load(variant)
    changed = {key for key in base.keys() | var.keys() if base.get(key) != var.get(key)}
    assert changed == keys | LABELS


def test_kv_bits_8_doubles_and_kv_bits_4_nearly_quadruples_the_kv_blocks():
    # KV cache: 0.92 x the H100's 81,559 MiB (78,679,145,185 B) - 16,060,522,496 weights - 5,108,898,202
    # workspace (the sampler's 1024 x 128,256 logits x 38.9 B, above the forward's 838,860,800) =
    # 57,509,724,488 B. Per token 2 x 32 layers x 8 KV heads x 128 x bytes: fp16 131,072 B -> 438,764 tokens
    # -> 27,422 blocks; 8-bit 65,536 B -> 877,528 tokens -> 54,845 blocks; 4-bit 0.5 B + a 2 B scale and 2 B
    # zero per 128-wide head (0.53125 B) = 34,816 B -> 1,651,818 tokens -> 103,238 blocks (3.76x: 2 / 0.53125).
    blocks = {stem: total_kv_blocks(_config(stem)) for stem in ("quantization-baseline", "quantization-kv8",
                                                                "quantization-kv4")}
    assert blocks == {"quantization-baseline": 27_422, "quantization-kv8": 54_845, "quantization-kv4": 103_238}


def test_fp8_halves_the_weights_and_the_kv_bytes_together():
    # fp8 weights, one fp16 scale per weight tensor (qkv, o, gate-up, down): 6,979,321,856 B + 32 x 4 x 2 B
    # = 256 B of scales, plus the fp16 rest: 9,081,200,896 B. KV: 78,679,145,185 (as above) - 9,081,200,896
    # - 5,108,898,202 = 64,489,046,088 B over 65,536 B per token -> 984,024 tokens -> 61,501 blocks.
    cfg = _config("quantization-fp8")
    assert weight_bytes_per_gpu(cfg.model, cfg.options.quant, Parallelism()) == 9_081_200_896
    assert total_kv_blocks(cfg) == 61_501


def test_w4a16_weights_are_a_quarter_of_fp16_plus_group_scales():
    # Asymmetric int4 in groups of 128 along K: 0.5 B per weight + (2 B scale + 2 B zero) / 128 = 0.53125 B,
    # against fp16's 2 B: the linears take 0.265625 of their fp16 bytes (every K here is a multiple of 128).
    # 6,979,321,856 x 0.53125 = 3,707,764,736 B, plus the unquantized 2,101,878,784 B: 5,809,643,520 B.
    model, w4a16 = get_model("llama-3.1-8b"), get_quant("w4a16")
    w4_bytes = weight_bytes_per_gpu(model, w4a16, Parallelism())
    assert w4_bytes == 5_809_643_520
    fp16_bytes = weight_bytes_per_gpu(model, get_quant("fp16"), Parallelism())
    assert fp16_bytes == LLAMA8_FP16_WEIGHT_BYTES
    assert (w4_bytes - LLAMA8_UNQUANTIZED_BYTES) / (fp16_bytes - LLAMA8_UNQUANTIZED_BYTES) == 0.265625


def test_sparse_2_4_stores_half_the_weights_plus_a_2_bit_index_each():
    # Per four weights: two kept at 2 B each and a 2-bit index for each kept one (NVIDIA Ampere whitepaper),
    # 4.5 B: 1.125 B per weight, 0.5625 of fp16. 6,979,321,856 x 1.125 = 7,851,737,088 B, plus the
    # unquantized 2,101,878,784 B: 9,953,615,872 B.
    cfg = _config("pruning-sparse-2-4")
    assert weight_bytes_per_gpu(cfg.model, cfg.options.quant, Parallelism()) == 9_953_615_872


def test_minitron_width_keeps_the_8b_kv_per_token_and_depth_halves_it():
    # Width pruning keeps 32 layers x 8 KV heads x head_dim 128: 2 x 32 x 8 x 128 x 2 B = 131,072 B per token,
    # Llama-3.1-8B's; depth pruning keeps 16 layers: 65,536 B.
    fp16 = get_quant("fp16")
    kv_bytes = {name: kv_bytes_per_token_per_gpu(get_model(name), fp16, Parallelism())
                for name in ("llama-3.1-8b", "llama-3.1-minitron-4b-width", "llama-3.1-minitron-4b-depth")}
    assert kv_bytes == {"llama-3.1-8b": 131_072, "llama-3.1-minitron-4b-width": 131_072,
                        "llama-3.1-minitron-4b-depth": 65_536}


def test_minitron_blocks_come_from_freed_weights_for_width_and_halved_kv_for_depth():
    # Width: weights 4,512,746,496 x 2 = 9,025,492,992 B; workspace the 8B's sampler, 5,108,898,202 B (the
    # vocabulary unchanged; the forward's 8192 x (18432 + 9216 + 6144) x 2 = 553,648,128 B is less); KV (of 0.92
    # x the H100's 81,559 MiB, 78,679,145,185 B) 64,544,753,992 B / 131,072 = 492,437 tokens -> 30,777 blocks
    # (1.12x the 8B's 27,422). Depth: weights 4,540,469,248 x 2 = 9,080,938,496 B, the same workspace, KV
    # 64,489,308,488 B / 65,536 = 984,028 tokens -> 61,501 blocks.
    assert total_kv_blocks(_config("pruning-minitron-width")) == 30_777
    assert total_kv_blocks(_config("pruning-minitron-depth")) == 61_501


def test_the_teacher_needs_four_gpus_where_the_student_needs_one():
    # Llama-3.1-70B's 141 GB of fp16 weights exceed one 80 GB H100. At TP4, per GPU: 80 layers x ((8192 x
    # (2560 QKV + 2048 O + 14336 gate/up) + 7168 x 8192 down) x 2 B + 32,768 B of norms) = 34,228,142,080 B;
    # vocabulary 32064 of 128256 rows x 8192 x 2 B, twice (embedding, head), + 16,384 B final norm =
    # 1,050,689,536 B: 35,278,831,616 B. Workspace: the sampler's, 1024 x 128,256 (the whole vocabulary, each
    # rank sampling) x 38.9 B = 5,108,898,202 B, above the forward's 8192 x (14336 + 7168 + 16384) x 2 =
    # 620,756,992 B; KV (of 0.92 x 81,559 MiB = 78,679,145,185 B) 38,291,415,368 B / (2 x 80 x 2 KV heads
    # x 128 x 2 B = 81,920) = 467,424 tokens -> 29,214 blocks per replica.
    with pytest.raises(SpecError, match="does not fit"):
        plan_memory(get_model("llama-3.1-70b"), get_hardware("h100-sxm"))
    teacher, student = _config("distillation-baseline"), _config("distillation-8b")
    assert (teacher.options.parallel.tensor_parallel, student.options.parallel.tensor_parallel) == (4, 1)
    assert total_kv_blocks(teacher) == 29_214
    assert total_kv_blocks(student) == 27_422
