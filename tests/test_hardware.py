"""Hardware YAML files: every figure is a finite number in a physical range, and every mistake is one line
naming the file and the field."""
import pytest
import yaml

from infersim.roofline import SpecError, decode_batch, get_hardware, get_model, step_cost
from infersim.roofline.hardware import GB, TB, GiB, MiB

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
    ("memory_bandwith_bytes_per_s", 2.0e12, "memory_bandwith_bytes_per_s: is not a known field; did you mean "
     "memory_bandwidth_bytes_per_s?"),
    # every byte read from DRAM passes through the L2: 1 MB/s (a unit slip) is below the A100's 2.04 TB/s
    ("l2_bandwidth_bytes_per_s", 1e6, "l2_bandwidth_bytes_per_s: must be at least memory_bandwidth_bytes_per_s "
     "(2.04e+12)"),
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


# Each figure worked from the datasheet the registry entry cites; NVIDIA prints its Blackwell and Hopper
# tensor peaks with 2:4 sparsity, so the dense peak is half the printed one, and NVLink "900 GB/s" or
# "1.8 TB/s" is both directions together. Memory is the capacity nvidia-smi reports (MiB): the datasheets'
# GB read as GiB, some ~0.4% kept back by the driver, but for the B300's, whose 288 GB is decimal.
@pytest.mark.parametrize("name,dtype,dense_flops_per_s,memory_bytes,bandwidth_bytes_per_s,link_bytes_per_s", [
    # GH200 datasheet: FP8 3,958 TFLOPS with sparsity; 96 GB HBM3 at 4 TB/s; NVLink 900 GB/s
    ("gh200", "fp8", 3958e12 / 2, 97871 * MiB, 4 * TB, 900 * GB / 2),
    # HGX H20: FP16 148 TFLOPS dense; 96 GB HBM3 at 4.0 TB/s; NVLink 900 GB/s
    ("h20", "fp16", 148e12, 97871 * MiB, 4 * TB, 900 * GB / 2),
    # HGX B200: FP4 144 PFLOPS with sparsity and 1.44 TB for 8 GPUs; 7.7 TB/s and NVLink 1.8 TB/s per GPU
    ("b200", "fp4", 144e15 / 8 / 2, 183359 * MiB, 7.7 * TB, 1.8 * TB / 2),
    # GB200 NVL72: FP4 1,440 PFLOPS with sparsity, 13.4 TB at 576 TB/s, NVLink 130 TB/s for 72 GPUs
    ("gb200", "fp4", 1440e15 / 72 / 2, 189471 * MiB, 576 * TB / 72, 130 * TB / 72 / 2),
    # HGX B300: FP4 105 PFLOPS dense and 2.3 TB for 8 GPUs; 8 TB/s and NVLink 1.8 TB/s per GPU
    ("b300", "fp4", 105e15 / 8, 275040 * MiB, 8 * TB, 1.8 * TB / 2),
    # MI325X datasheet: FP8 5,229.8 TFLOPS with sparsity; 256 GB HBM3E at 6 TB/s; 7 links x 128 GB/s
    ("mi325x", "fp8", 5229.8e12 / 2, 256 * GiB, 6 * TB, 7 * 128 * GB / 2),
    # MI355X (CDNA 4 whitepaper, ISSCC 2026): 256 CUs x 8,192 FP8 FLOP per clock x 2.4 GHz; 288 GB HBM3E at
    # 8 TB/s; 7 links x 153.6 GB/s
    ("mi355x", "fp8", 256 * 8192 * 2.4e9, 288 * GiB, 8 * TB, 7 * 153.6 * GB / 2),
])
def test_new_registry_gpus_carry_their_datasheet_figures(name, dtype, dense_flops_per_s, memory_bytes,
                                                         bandwidth_bytes_per_s, link_bytes_per_s):
    hw = get_hardware(name)
    assert hw.peak(dtype) == pytest.approx(dense_flops_per_s, rel=0.01)
    assert hw.memory_bytes == pytest.approx(memory_bytes, rel=0.01)
    assert hw.memory_bandwidth_bytes_per_s == pytest.approx(bandwidth_bytes_per_s, rel=0.01)
    assert hw.interconnect_bandwidth_bytes_per_s == pytest.approx(link_bytes_per_s, rel=0.01)


def test_fp4_runs_at_twice_fp8_on_blackwell_and_cdna4_but_not_at_all_on_hopper():
    # HGX B200 and GB200 NVL72: FP4 = 2 x FP8; MI355X: MXFP4 10.1 PFLOPS = 2 x FP8 5.0
    for name in ("b200", "gb200", "mi355x"):
        assert get_hardware(name).peak("fp4") == pytest.approx(2 * get_hardware(name).peak("fp8"), rel=1e-3)
    # Blackwell Ultra: 105 PFLOPS dense FP4 against 72 sparse FP8 for 8 GPUs, ~2.9x
    assert get_hardware("b300").peak("fp4") / get_hardware("b300").peak("fp8") == pytest.approx(105 / 36)
    for name in ("gh200", "h20", "mi325x"):
        with pytest.raises(SpecError, match=f"^quantization: {name} has no fp4 tensor-core peak"):
            get_hardware(name).peak("fp4")


@pytest.mark.parametrize("name,fabric,architecture,sharp,host_link_bytes_per_s", [
    ("gh200", "nvswitch", "hopper", True, 450 * GB),  # NVLink-C2C 900 GB/s to the Grace CPU
    ("h20", "nvswitch", "hopper", True, 64 * GB),  # PCIe Gen5 x16
    ("b200", "nvswitch", "blackwell", True, 64 * GB),
    ("gb200", "nvswitch", "blackwell", True, 450 * GB),
    ("b300", "nvswitch", "blackwell", True, 64 * GB),
    ("mi325x", "nvlink", "hopper", False, 64 * GB),  # xGMI mesh on NCCL's Hopper tables, as mi300x
    ("mi355x", "nvlink", "hopper", False, 64 * GB),
])
def test_new_registry_gpus_reach_each_other_and_the_host_as_their_systems_do(name, fabric, architecture, sharp,
                                                                             host_link_bytes_per_s):
    hw = get_hardware(name)
    assert (hw.gpu_fabric, hw.architecture, hw.nvlink_sharp) == (fabric, architecture, sharp)
    assert hw.host_link_bandwidth_bytes_per_s == host_link_bytes_per_s


def test_hopper_clusters_multicast_an_operand_so_a_large_gemm_is_compute_bound():
    """An 8192^3 fp16 GEMM on the H200 spec. Best plan: 128 x 256 tiles, 64 x 32 = 2,048 tiles, split-K 8:
    16,384 work units in ceil(16,384 / 132) = 125 waves, so 16,384 / (125 x 132) = 0.993 of the SMs' time
    does work. Per step of k a unit multiplies 2 x 128 x 256 = 65,536 FLOPs at 989e12 x 0.89 / 132 =
    6.67e12 FLOP/s per SM: 9.83 ns. Its operands, 128 x 2 B of A and 256 x 2 B of B, come from L2 at
    7.5e12 / 132 = 56.8 GB/s per SM: 768 B take 13.5 ns (L2-bound), but a 2-CTA cluster multicasting B reads
    256 + 512 / 2 = 512 B per CTA, 9.0 ns: compute-bound. So 0.89 x 0.993 = 0.8837 of the peak, as
    `infersim calibrate --device gpu` measured 0.89 on an H200 for this GEMM in a burst (benchmarks/results/h200;
    the spec's 0.76 is what a model's GEMMs sustain, roofline/hardware.py); without clusters the L2 bound would
    hold it near 0.64."""
    import dataclasses

    from infersim.roofline.timing import gemm_tensor_time_s
    h200 = dataclasses.replace(get_hardware("h200"), compute_efficiency=0.89)
    peak = h200.peak("fp16")
    seconds = float(gemm_tensor_time_s(h200, 8192, 8192, 8192, 1, peak_flops_per_s=peak))
    assert 2 * 8192 ** 3 / seconds / peak == pytest.approx(0.89 * 16384 / (125 * 132))
    unclustered = dataclasses.replace(h200, gemm_cluster_ctas=1)
    seconds = float(gemm_tensor_time_s(unclustered, 8192, 8192, 8192, 1, peak_flops_per_s=peak))
    assert 2 * 8192 ** 3 / seconds / peak < 0.7


def test_device_memory_is_binary_and_gddr_ecc_keeps_a_sixteenth():
    # "80GB" of HBM is 80 GiB (the driver keeps ~0.4%: 81559 MiB on an H100), not 80e9 bytes
    assert get_hardware("h100-sxm").memory_bytes == pytest.approx(80 * GiB, rel=0.005)
    assert get_hardware("a100-sxm-80gb").memory_bytes == 80 * GiB
    # GDDR6 with ECC on stores check bits in 1/16 of the chips: 48 GiB x 15/16 = 46080 MiB (nvidia-smi: 46068)
    assert get_hardware("l40s").memory_bytes == pytest.approx(48 * GiB * 15 / 16, rel=1e-3)
    assert get_hardware("rtx-4090").memory_bytes == pytest.approx(24 * GiB, rel=1e-3)  # no ECC


def test_tensor_parallelism_stays_within_one_fabric():
    from infersim.roofline import Parallelism, StepOptions
    # an HGX H100 board's NVSwitch joins 8 GPUs; a GB200 NVL72 rack's NVLink domain 72; DGX GH200's NVLink
    # Switch System 256
    assert [get_hardware(n).fabric_gpus for n in ("h100-sxm", "gb200", "gh200", "l40s")] == [8, 72, 256, 8]
    model, batch = get_model("llama-3.1-70b"), decode_batch([1024] * 4)
    with pytest.raises(SpecError, match="^parallelism.tensor_parallel: spans more GPUs than one h100-sxm nvswitch "
                                        "fabric joins \\(8\\)"):
        step_cost(model, get_hardware("h100-sxm"), batch, StepOptions(parallel=Parallelism(16)))
    assert step_cost(model, get_hardware("gb200"), batch, StepOptions(parallel=Parallelism(16))).stage_time_s > 0


def test_no_registry_gpu_has_an_l2_slower_than_its_dram():
    # every byte read from DRAM passes through the L2: a file giving less is refused, and the registry holds
    # itself to the same rule
    from infersim.roofline.hardware import hardware_names
    for name in hardware_names():
        spec = get_hardware(name)
        assert spec.l2_bandwidth_bytes_per_s is None or spec.l2_bandwidth_bytes_per_s >= spec.memory_bandwidth_bytes_per_s, name
