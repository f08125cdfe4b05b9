"""The validation harness: its explanations by hand, and `infersim validate` end to end on the CPU."""
import csv
import dataclasses
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from infersim.kernels import validate as sweeps
from infersim.kernels.launch import Launch
from infersim.kernels.validate import Case, explain, family_errors, linear_work, predict, validate, widen, write_csv
from infersim.roofline import ops
from infersim.roofline.hardware import HardwareSpec
from infersim.roofline.quant import QuantSpec

CPU = HardwareSpec(name="test-cpu", peak_flops_per_s={"fp32": 1e11, "fp16": 1e10, "int8": 2e11},
                   vector_flops_per_s=1e10, memory_bytes=8e9, memory_bandwidth_bytes_per_s=1e10, l2_bytes=1e6,
                   sram_per_sm_bytes=1e6, sm_count=2, interconnect_bandwidth_bytes_per_s=1e10,
                   host_link_bandwidth_bytes_per_s=1e10, gemm_tiles=(), gemm_split_k=(1,), compute_efficiency=1.0,
                   memory_efficiency=1.0, vector_bandwidth_efficiency=1.0, launch_overhead_s=1e-6)


def test_explanation_names_the_dominant_term_and_the_implied_efficiency():
    row = {"compute_s": 1.0, "memory_s": 0.5, "launch_s": 0.01, "measured_s": 2.0, "error": 1.0}
    assert explain(row) == "compute-dominated; measured time implies 0.50x the spec's effective compute rate"
    assert explain({**row, "error": 0.2}) == ""  # within the 25% band


def test_family_errors_by_hand():
    rows = [{"family": "quant", "error": e} for e in (0.1, -0.3, 0.5)] + [{"family": "sampling", "error": 2.0}]
    out = family_errors(rows)
    assert out["quant"]["median_abs_err"] == pytest.approx(0.3) and out["quant"]["kernels"] == 3
    assert out["sampling"]["p90_abs_err"] == pytest.approx(2.0) and "attention" not in out


def test_widened_fp32_work_moves_twice_the_bytes_at_the_fp32_peak():
    op = ops.linear("x", 4, 64, 32, QuantSpec())[0]
    (wide,) = widen([op], 2, "fp32")
    assert wide.act_read_bytes == 2 * op.act_read_bytes and wide.dtype == "fp32"
    p = predict(CPU, [wide])
    assert p["compute_s"] == pytest.approx(2 * 4 * 64 * 32 / 1e11)
    assert p["memory_s"] == pytest.approx(wide.bytes / 1e10)


def test_validate_rows_and_csv_columns(tmp_path):
    case = Case("quant_fp32_numpy", "m4 k64 n32", lambda: None, ops.linear("x", 4, 64, 32, QuantSpec()))
    rows = validate([case], CPU, measure=lambda fns: [2e-6] * len(fns))
    assert rows[0]["measured_s"] == 2e-6 and rows[0]["family"] == "quant"
    assert rows[0]["error"] == pytest.approx(2e-6 / rows[0]["predicted_s"] - 1)
    write_csv(rows, tmp_path / "v.csv")
    header = next(csv.reader(open(tmp_path / "v.csv")))
    assert header[:7] == ["kernel", "family", "shape", "flops", "bytes", "dtype", "predicted_s"]
    assert "measured_s" in header and "explanation" in header


def test_infersim_validate_on_the_cpu(tmp_path):
    spec = tmp_path / "cpu.yaml"
    spec.write_text(CPU.to_yaml())
    out = tmp_path / "val"
    proc = subprocess.run([sys.executable, "-m", "infersim.cli", "validate", "--device", "cpu", "--quick",
                           "--hardware", str(spec), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out / "validation.csv")))
    assert {r["kernel"].split("_")[0] for r in rows} == {"attention", "quant", "sampling"}
    assert all(float(r["measured_s"]) > 0 and float(r["predicted_s"]) > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["families"]) == {"attention", "quant", "sampling"}
    assert summary["quantization_error"]["w8a8 per-tensor"] > summary["quantization_error"]["llm.int8 decomposition"]
    assert (out / "measured_vs_predicted.png").stat().st_size > 10_000 and (out / "roofline.png").exists()


def test_the_sweep_on_cupy_arrays_times_the_cuda_kernels_and_cublas_fp16(monkeypatch):
    # NumPy stands in for CuPy (building the cases runs no kernel), at small shapes, the weights left on
    # the host
    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)
    small = dataclasses.replace(sweeps.SHAPES["cupy"][True], prefill_tokens=(64,), decode_batches=((2, 64),),
                                features=256, linear_tokens=(1, 16), vocab=1000, sampling_batches=(2,),
                                gemm_models=(("tiny", "tiny-llama", 1),), gemm_tokens=(8,))
    monkeypatch.setitem(sweeps.SHAPES["cupy"], True, small)
    monkeypatch.setattr(sweeps, "to_device", lambda w_q: w_q)
    cases = sweeps.sweep(CPU, cupy, quick=True)
    assert [(c.kernel, c.shape) for c in cases] == [
        ("attention_mma_cupy", "b1 h32 kv8 s64 d128 causal"), ("attention_paged_cupy", "b2 h32 kv8 ctx64 d128"),
        *[(kernel, f"m{m} k256 n256") for m in (1, 16)
          for kernel in ("quant_fp32_cupy", "quant_fp16_cublas", "quant_w8a8_cupy", "quant_w4a16_cupy")],
        # tiny-llama: 64 hidden, 4 query and 2 KV heads of 16, 128 FFN (gate and up as one, 256 wide)
        ("gemm_fp16_cublas", "tiny_qkv m8 k64 n128"), ("gemm_fp16_cublas", "tiny_o m8 k64 n64"),
        ("gemm_fp16_cublas", "tiny_up m8 k64 n256"), ("gemm_fp16_cublas", "tiny_down m8 k128 n64"),
        ("sampling_top_p_cupy", "batch2 vocab1000")]
    # W4A16 above 8 rows is cuBLAS's fp16 GEMM on dequantized weights; the fused kernel computes in fp32
    assert [c.work[0].dtype for c in cases if c.kernel == "quant_w4a16_cupy"] == ["fp32", "fp16"]
    launches = {c.kernel: c.launch for c in cases}
    # 64 query rows: one 64-row block per head, 32 heads, fp16 products on tensor cores, the roofline's fp16 bytes
    assert launches["attention_mma_cupy"] == Launch(32, tensor_cores=True, blocks_per_sm=3)
    assert cases[0].work[0].dtype == "fp16" and cases[0].work[0].act_read_bytes == 32 * 64 * 128 * 2
    # 2 sequences x 32 heads in blocks of 4 (a GQA group) x 1 span of 512 tokens; then the merging launch
    assert launches["attention_paged_cupy"] == Launch(16, tensor_cores=False, launches=2, blocks_per_sm=8)
    # 2 rows on the test spec's 2 SMs fill them: a block a row; the copy of the logits and the kernel
    assert launches["sampling_top_p_cupy"] == Launch(2, tensor_cores=False, launches=2, blocks_per_sm=2)
    assert launches["quant_fp16_cublas"] is None  # cuBLAS: the roofline's own tile model


def test_a_batch_1_top_p_on_an_h200_splits_its_row_over_every_sm():
    from infersim.kernels.cuda.sampling import top_p_grid
    # 132 slices of 972 tokens, launched 7 times (zeroing, row max, 4 levels, mask); 256 rows: a block each
    # (8 of its 256-thread blocks fit an SM; 2 of top_p.cu's 1024-thread ones)
    assert top_p_grid(1, 128256, 132) == (132, 7, 8)
    assert top_p_grid(16, 128256, 132) == (16 * 9, 7, 8)
    assert top_p_grid(256, 128256, 132) == (256, 1, 2)


def test_the_sweep_on_numpy_arrays_times_the_numpy_references_beside_the_numba_kernels():
    kernels = {c.kernel for c in sweeps.sweep(CPU, np, quick=True)}
    assert kernels == {"attention_tiled_numba", "attention_tiled_numpy", "attention_naive_numpy",
                       "attention_paged_numba", "quant_fp32_numpy", "quant_w8a8_numba", "quant_w4a16_numba",
                       "sampling_top_p_numba", "sampling_greedy_numpy"}


def test_validate_on_a_gpu_less_machine_says_so_in_one_line(tmp_path):
    from infersim.kernels import device
    if device.available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "infersim.cli", "validate", "--device", "gpu"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("infersim: error: --device gpu: needs CuPy and a CUDA GPU")
    assert proc.stderr.count("\n") == 1


def test_idle_blas_threads_are_asked_to_sleep_unless_the_user_chose(monkeypatch):
    from infersim.kernels.pools import quiet_idle_blas_threads
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    quiet_idle_blas_threads()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "4"  # OpenBLAS's shortest spin, 2^4 cycles
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")
    quiet_idle_blas_threads()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "20"  # the user's setting stands


def test_interleaved_timing_takes_every_function_once_per_round():
    from infersim.kernels.measure import interleaved_median_times_s
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    times = interleaved_median_times_s(fns, rounds=3, warmup=1, sample_s=0.0)  # one call per sample
    assert len(times) == 2 and all(t > 0 for t in times)
    # warm-up and sizing each, then three rounds of (an untimed warming call, one timed call) each
    assert calls == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] * 3


def test_fp16_linear_work_is_the_roofline_linear_itself():
    (op,) = linear_work("fp16", 2, 3, 4)
    assert op.flops == 2 * 2 * 3 * 4  # 2 m k n
    assert op.weight_bytes == 3 * 4 * 2  # fp16 weights
    assert op.act_read_bytes == 2 * 3 * 2 and op.act_write_bytes == 2 * 4 * 2
    assert op.dtype == "fp16"


def test_a_failing_kernel_keeps_its_row_and_the_sweep_goes_on(tmp_path):
    def broken():
        raise RuntimeError("no kernel image is available for execution on the device\nmore detail")
    work = ops.linear("x", 4, 64, 32, QuantSpec())
    cases = [Case("quant_w8a8_cupy", "m4", broken, work), Case("quant_fp16_cublas", "m4", lambda: None, work)]
    timed = []
    rows = validate(cases, CPU, measure=lambda fns: timed.extend(fns) or [3e-6] * len(fns))
    assert len(timed) == 1  # only the kernel that runs is timed
    assert rows[0]["explanation"] == "failed: RuntimeError: no kernel image is available for execution on the device"
    assert np.isnan(rows[0]["measured_s"]) and rows[1]["measured_s"] == 3e-6
    assert family_errors(rows)["quant"]["kernels"] == 1
    assert rows[1]["dtype"] == "fp16"  # the linear's matrix product runs at the fp16 peak
    from infersim.plots import plot_validation
    paths = plot_validation(rows, CPU, tmp_path, "one failed")
    assert all(p.stat().st_size > 5_000 for p in paths)


@pytest.mark.parametrize("call", ["attention", "paged", "w8a8", "w4a16", "logits"])
def test_the_cupy_backend_without_a_gpu_says_so_in_one_line(call):
    from infersim.kernels import attention as att
    from infersim.kernels import device
    from infersim.kernels import quant as qk
    from infersim.kernels import sampling as smp
    if device.available():
        pytest.skip("this machine has a GPU")
    x = np.ones((2, 128), dtype=np.float32)
    calls = {"attention": lambda: att.attention(np.ones((1, 1, 2, 32)), np.ones((1, 1, 2, 32)), np.ones((1, 1, 2, 32)),
                                                backend="cupy"),
             "paged": lambda: att.paged_decode_attention(np.ones((1, 2, 32)), np.ones((1, 16, 1, 32)),
                                                         np.ones((1, 16, 1, 32)), np.zeros((1, 1), dtype=int),
                                                         np.ones(1, dtype=int), backend="cupy"),
             "w8a8": lambda: qk.w8a8_matmul(x, qk.quantize(x.T, 8, True, "channel"), backend="cupy"),
             "w4a16": lambda: qk.w4a16_matmul(x, qk.quantize(x.T, 4, False, "group", 64), backend="cupy"),
             "logits": lambda: smp.process_logits(x, top_p=0.9, backend="cupy")}
    with pytest.raises(ValueError, match=r"^backend 'cupy' needs CuPy and a CUDA GPU .*use backend 'numba'"):
        calls[call]()


def test_the_gpu_sweep_times_cublas_on_the_llama_layers_shapes_against_the_tile_model():
    full, quick = sweeps.SHAPES["cupy"][False], sweeps.SHAPES["cupy"][True]
    assert full.gemm_tokens[0] == 1 and full.gemm_tokens[-1] == 8192
    assert sweeps.SHAPES["numpy"][False].gemm_models == ()  # the CPU has no cuBLAS fp16 to time
    # the layers of Llama-3.1-8B and of Llama-3.1-70B on one of four GPUs, as config.json gives them
    one_token = dataclasses.replace(full, gemm_tokens=(1,))
    labels = [c.shape for c in sweeps.llama_gemm_cases(one_token, lambda *shape: np.zeros((1, 1), np.float32),
                                                       "cublas")]
    assert labels == ["8b_qkv m1 k4096 n6144", "8b_o m1 k4096 n4096", "8b_up m1 k4096 n28672",
                      "8b_down m1 k14336 n4096", "70b-tp4_qkv m1 k8192 n2560", "70b-tp4_o m1 k2048 n8192",
                      "70b-tp4_up m1 k8192 n14336", "70b-tp4_down m1 k7168 n8192"]
    small = dataclasses.replace(quick, gemm_models=(("8b", "llama-3.1-8b", 1),), gemm_tokens=(512,))
    rng = np.random.default_rng(0)
    case, *_ = sweeps.llama_gemm_cases(small, lambda *shape: rng.standard_normal(shape, dtype=np.float32), "numpy")
    assert (case.kernel, case.shape) == ("gemm_fp16_numpy", "8b_qkv m512 k4096 n6144")
    # Llama-3.1-8B's QKV projection of 512 tokens: 2 x 512 x 4096 x 6144 = 25,769,803,776 FLOPs, its fp16
    # weights 4096 x 6144 x 2 B = 50,331,648 B
    (op,) = case.work
    assert (op.flops, op.weight_bytes, op.dtype) == (25_769_803_776, 50_331_648, "fp16")
    assert case.run().shape == (512, 6144)
