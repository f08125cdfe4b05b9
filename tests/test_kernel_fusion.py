"""Ops an engine runs as one kernel (roofline.step.FUSIONS, StepOptions.fusions): their traffic less the
intermediate's round trip, one launch; which each engine preset fuses; the scenario knob."""
import pytest

from infersim.roofline import SpecError, StepOptions, decode_batch, get_hardware, get_model, step_cost
from infersim.roofline.step import dense_layer_ops
from infersim.sim.engines import preset_config

LLAMA7, A100 = get_model("llama-2-7b"), get_hardware("a100-sxm-80gb")


def _ops(fusions, tokens=16):
    before, after = dense_layer_ops(LLAMA7, tokens, StepOptions(fusions=frozenset(fusions)))
    return {op.name: op for op in before + after}


def test_a_residual_add_fused_into_the_norm_reads_the_sum_once_less():
    # 16 tokens x 4096 wide, fp16: the add reads x and the residual (2 x 131,072 B) and writes the sum
    # (131,072 B); the norm reads the sum again and writes its output (131,072 B each) and reads its 8,192 B
    # of weights. Fused: 262,144 B read, 262,144 B written, 8,192 B of weights, 1 + 4 FLOPs an element.
    op = _ops({"add_norm"})["add_post_attn_norm"]
    assert (op.act_read_bytes, op.act_write_bytes, op.weight_bytes) == (262_144, 262_144, 8_192)
    assert op.vector_flops == 5 * 16 * 4096
    unfused = _ops(())
    assert unfused["residual_add"].act_read_bytes + unfused["post_attn_norm"].act_read_bytes == 262_144 + 131_072


def test_rope_fused_with_the_cache_write_neither_writes_nor_rereads_the_rotated_k():
    # Llama-2-7B (32 heads of 128, no GQA): Q and K are 4096 wide each. 16 tokens: RoPE reads Q and K (2 x
    # 131,072 B) and cos/sin (16 x 128 x 2 = 4,096 B) and writes them back (262,144 B); the cache write reads
    # K and V (262,144 B) and writes 262,144 B of fp16 cache. Fused, the rotated K (131,072 B) is neither
    # written out nor read back: 266,240 + 262,144 - 131,072 = 397,312 B read, 262,144 - 131,072 = 131,072 B
    # of activations and 262,144 B of cache written.
    op = _ops({"rope_kv_write"})["rope_kv_write"]
    assert (op.act_read_bytes, op.act_write_bytes, op.kv_write_bytes) == (397_312, 131_072, 262_144)


def test_fusions_take_kernels_out_of_a_step():
    # 12 kernels a layer unfused (test_step); add_norm makes the two adds part of the two norms (10), and
    # rope_kv_write RoPE part of the cache write (9); plus embedding, final norm, LM head and sampling
    def kernels(fusions):
        options = StepOptions(fusions=frozenset(fusions))
        return sum(r.count for r in step_cost(LLAMA7, A100, decode_batch([16]), options).rows)
    assert (kernels(()), kernels({"add_norm"}), kernels({"add_norm", "rope_kv_write"})) == (388, 324, 292)


def test_each_engine_preset_fuses_what_its_kernels_do():
    h100, options = get_hardware("h100-sxm"), StepOptions()
    fusions = {name: preset_config(name, LLAMA7, h100, options, 4096).options.fusions
               for name in ("vllm-v1", "vllm-v0", "sglang", "trtllm", "trtllm-cpp")}
    assert fusions == {"vllm-v1": {"add_norm"}, "vllm-v0": {"add_norm"}, "sglang": {"add_norm"},
                       "trtllm": {"add_norm", "rope_kv_write"}, "trtllm-cpp": {"rope_kv_write"}}


def test_an_unknown_fusion_is_one_clear_error():
    from infersim.roofline.step import check_options
    with pytest.raises(SpecError, match=r"engine\.fusions.*add_norm, rope_kv_write.*swiglu_gemm"):
        check_options(LLAMA7, StepOptions(fusions=frozenset({"swiglu_gemm"})))


def test_a_scenario_sets_the_fusions_and_names_a_wrong_one(engine_scenario):
    from infersim.scenario import load_run
    assert load_run(engine_scenario(""))[1].options.fusions == {"add_norm"}
    assert load_run(engine_scenario(", fusions: []"))[1].options.fusions == frozenset()
    assert load_run(engine_scenario(", fusions: [add_norm, rope_kv_write]"))[1].options.fusions == {
        "add_norm", "rope_kv_write"}
    with pytest.raises(SpecError, match=r"engine\.fusions.*'swiglu_gemm' is not a fusion; the fusions are add_norm"):
        load_run(engine_scenario(", fusions: [swiglu_gemm]"))


def test_a_fused_step_is_faster_by_its_launches_and_saved_traffic():
    # what fusing changes at decode on an A100 (4.6 us a kernel): 64 launches fewer and a little traffic
    plain = step_cost(LLAMA7, A100, decode_batch([16]), StepOptions())
    fused = step_cost(LLAMA7, A100, decode_batch([16]), StepOptions(fusions=frozenset({"add_norm"})))
    saved_s = plain.time_s - fused.time_s
    assert 64 * A100.launch_overhead_s < saved_s < 64 * A100.launch_overhead_s + 20e-6
