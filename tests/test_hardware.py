"""Hardware YAML files: every figure is a finite number in a physical range, and every mistake is one line
naming the file and the field."""
import pytest
import yaml

from infersim.roofline import SpecError, decode_batch, get_hardware, get_model, step_cost

A100 = get_hardware("a100-sxm-80gb")


def write(tmp_path, **changes):
    fields = {**A100.to_dict(), **changes}
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in fields.items() if v != "<absent>"}))
    return path


def test_a_calibrated_spec_loads_back_unchanged(tmp_path):
    assert get_hardware(str(write(tmp_path))) == A100


def test_numbers_yaml_reads_as_text_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads 37.4e12 as the string '37.4e12': it needs a dot and a signed exponent
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(A100.to_dict()).replace("vector_flops_per_s: 19500000000000.0",
                                                           "vector_flops_per_s: 37.4e12"))
    assert get_hardware(str(path)).vector_flops_per_s == 37.4e12


PER_S = "must be a finite number from 1,000,000 to 1e+18"
FRACTION = "must be a finite number from 0.01 to 1"


@pytest.mark.parametrize("field,value,message", [
    ("memory_bandwidth_bytes_per_s", "fast", f"memory_bandwidth_bytes_per_s: {PER_S}, got 'fast'"),
    ("memory_bandwidth_bytes_per_s", 0, f"memory_bandwidth_bytes_per_s: {PER_S}, got 0"),
    ("vector_flops_per_s", -1e12, f"vector_flops_per_s: {PER_S}, got -1000000000000.0"),
    ("vector_flops_per_s", float("nan"), f"vector_flops_per_s: {PER_S}, got nan"),
    ("memory_bytes", float("inf"), "memory_bytes: must be a finite number from 1,000,000 to 1e+15, got inf"),
    ("peak_flops_per_s", {"fp16": 0}, f"peak_flops_per_s.fp16: {PER_S}, got 0"),
    ("peak_flops_per_s", {"fp32": 1e12}, "peak_flops_per_s: needs fp16 (or bf16)"),
    ("peak_flops_per_s", {"fp16": 1e14, "fp64": 1e13},
     "peak_flops_per_s.fp64: unknown dtype; allowed: fp32, tf32, fp16, bf16, fp8, fp4, int8, int4"),
    ("peak_flops_per_s", [1e14], "peak_flops_per_s: must be a mapping of dtype to FLOP/s"),
    ("sm_count", 0, "sm_count: must be a finite whole number from 1 to 1,048,576, got 0"),
    ("sm_count", 107.5, "sm_count: must be a finite whole number from 1 to 1,048,576, got 107.5"),
    ("sm_count", True, "sm_count: must be a finite whole number from 1 to 1,048,576, got True"),
    ("gemm_tiles", [[0, 128]], "gemm_tiles.0.0: must be a finite whole number from 1 to 4,096, got 0"),
    ("gemm_tiles", [[64]], "gemm_tiles: must be a list of [rows, columns] tile shapes, got [[64]]"),
    ("gemm_split_k", [], "gemm_split_k: must be a list of at least one whole number, got []"),
    ("gemm_split_k", [1, -2], "gemm_split_k.1: must be a finite whole number from 1 to 1,024, got -2"),
    ("launch_overhead_s", -1e-6, "launch_overhead_s: must be a finite number from 0 to 0.01, got -1e-06"),
    ("interconnect_latency_s", 5.0, "interconnect_latency_s: must be a finite number from 0 to 0.01, got 5.0"),
    ("compute_efficiency", 1.5, f"compute_efficiency: {FRACTION}, got 1.5"),
    ("memory_efficiency", 0, f"memory_efficiency: {FRACTION}, got 0"),
    ("host_link_efficiency", "high", f"host_link_efficiency: {FRACTION}, got 'high'"),
    ("overlap_exponent", 0.5, "overlap_exponent: must be a finite number from 1 to 100, got 0.5"),
    ("l2_bandwidth_bytes_per_s", 0, f"l2_bandwidth_bytes_per_s: {PER_S}, got 0"),
    ("special_function_per_s", 0, f"special_function_per_s: {PER_S}, got 0"),
    ("memory_bytes", None, "memory_bytes: is empty or missing"),
    ("sparse_tensor_cores", "yes", "sparse_tensor_cores: must be true or false, got 'yes'"),
    ("name", "", "name: must be text (not empty), got ''"),
    ("name", "<absent>", "name: is required"),
    ("warp_size", 32, "warp_size: is not a known field; allowed: architecture, attention_q_tile_tokens"),
])
def test_bad_fields_name_the_file_field_and_value(tmp_path, field, value, message):
    with pytest.raises(SpecError) as info:
        get_hardware(str(write(tmp_path, **{field: value})))
    assert str(info.value).startswith(f"hw.yaml: {message}")


def test_an_fp4_peak_loads_from_a_hardware_file(tmp_path):
    spec = get_hardware(str(write(tmp_path, peak_flops_per_s={"fp16": 2.25e15, "fp8": 4.5e15, "fp4": 9e15})))
    assert spec.peak("fp4") == 9e15


def test_absent_optional_figures_are_unset(tmp_path):
    spec = get_hardware(str(write(tmp_path, l2_bandwidth_bytes_per_s=None, special_function_per_s="<absent>")))
    assert spec.l2_bandwidth_bytes_per_s is None and spec.special_function_per_s is None


def test_the_smallest_accepted_figures_give_finite_step_times(tmp_path):
    slow = get_hardware(str(write(tmp_path, peak_flops_per_s={"fp16": 1e6}, vector_flops_per_s=1e6,
                                  memory_bandwidth_bytes_per_s=1e6, compute_efficiency=0.01, memory_efficiency=0.01,
                                  vector_bandwidth_efficiency=0.01, launch_overhead_s=0.01)))
    cost = step_cost(get_model("tiny-llama"), slow, decode_batch([100]))
    assert 0 < cost.time_s < 1e9


def test_unreadable_hardware_files_are_one_line(tmp_path):
    path = tmp_path / "hw.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(SpecError, match=r"^hw.yaml: is not UTF-8 text \(byte 0xff at offset 6\)"):
        get_hardware(str(path))
    path.write_text("name: a\nname: b\n")
    with pytest.raises(SpecError, match=r"^hw.yaml:2: name: appears twice in one mapping; keep one$"):
        get_hardware(str(path))
    path.write_text("- a100\n")
    with pytest.raises(SpecError, match=r"^hw.yaml: must be a mapping of hardware fields"):
        get_hardware(str(path))
    with pytest.raises(SpecError, match=r"^hardware: no such file, got 'gpus/h900.yaml'$"):
        get_hardware("gpus/h900.yaml")
