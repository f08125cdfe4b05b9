"""The roofline against real A100 measurements (Vidur's profiles, data/profiles/a100/LICENSE.md)."""
import dataclasses

import pytest

from infersim.roofline import SpecError, get_hardware, get_model, ops
from infersim.roofline.profile import compare, fit_factors, model_from_profile, read_profile

A100 = get_hardware("a100-sxm-80gb")
FILES = {"llama-2-7b": "Llama-2-7b-hf_linear_ops.csv", "llama-3-8b": "Meta-Llama-3-8B_linear_ops.csv",
         "llama-2-70b": "Llama-2-70b-hf_linear_ops.csv"}


@pytest.mark.parametrize("model", FILES)
def test_default_factors_meet_the_accuracy_targets(profile_dir, model):
    # Targets of the roofline issue: GEMM median <= 8%, p90 <= 15%; all ops median <= 20%.
    result = compare(read_profile(profile_dir / FILES[model], get_model(model)), A100)
    assert result["gemm_median_abs_err"] <= 0.08
    assert result["gemm_p90_abs_err"] <= 0.15
    assert result["all_median_abs_err"] <= 0.20
    assert set(result["ops"]) >= {"attn_pre_proj", "mlp_up_proj", "add", "emb"}


def test_tile_and_wave_quantization_is_what_fixes_the_tail(profile_dir):
    samples = read_profile(profile_dir / FILES["llama-2-7b"], get_model("llama-2-7b"))
    plain = dataclasses.replace(A100, gemm_tiles=(), overlap_exponent=50.0)
    assert compare(samples, plain)["gemm_p90_abs_err"] > 0.2
    assert compare(samples, A100)["gemm_p90_abs_err"] < 0.15


def test_factors_fitted_on_one_model_predict_another(profile_dir):
    start = dataclasses.replace(A100, compute_efficiency=0.5, memory_efficiency=0.5, launch_overhead_s=1e-5,
                                vector_bandwidth_efficiency=0.9)
    fitted = fit_factors(read_profile(profile_dir / FILES["llama-2-7b"], get_model("llama-2-7b")), start)
    assert 0.6 < fitted.compute_efficiency <= 1 and 0.6 < fitted.memory_efficiency <= 1
    held_out = compare(read_profile(profile_dir / FILES["llama-2-70b"], get_model("llama-2-70b")), fitted)
    assert held_out["gemm_median_abs_err"] <= 0.08
    assert held_out["gemm_p90_abs_err"] <= 0.15


def test_model_shape_is_read_from_profile_columns(profile_dir):
    spec = model_from_profile(profile_dir / FILES["llama-3-8b"])
    assert (spec.num_heads, spec.num_kv_heads, spec.hidden_size, spec.ffn_size) == (32, 8, 4096, 14336)


def test_profile_of_another_model_is_refused(profile_dir):
    with pytest.raises(SpecError, match="n_kv_head=8 but llama-2-7b has num_kv_heads=32"):
        read_profile(profile_dir / FILES["llama-3-8b"], get_model("llama-2-7b"))


def test_file_without_profile_columns_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="^bad.csv: num_tokens: missing column"):
        read_profile(path, get_model("llama-2-7b"))


def test_profile_predictions_are_the_roofline_op_times_row_by_row(profile_dir):
    # one cost path: the vectorised prediction equals timing each row's op on its own
    from infersim.roofline.timing import time_op
    samples = read_profile(profile_dir / FILES["llama-2-7b"], get_model("llama-2-7b"))
    for name in ("mlp_up_proj", "input_layernorm", "attn_rope"):
        work = samples[name].work
        rows = [dataclasses.replace(work, gemm=work.gemm and type(work.gemm)(*(float(getattr(work.gemm, f.name)[i])
                                     for f in dataclasses.fields(work.gemm))),
                                    **{f: float(getattr(work, f)[i]) for f in ops.per_instance_fields(work)})
                for i in range(0, len(samples[name].measured_s), 7)]
        assert samples[name].predict_s(A100)[::7] == pytest.approx([time_op(A100, op).time_s for op in rows], rel=1e-12)


def profile_with(profile_dir, tmp_path, rows: int, column: str, value: str):
    """The first `rows` rows of the Llama-2-7B profile with one cell of the last one replaced."""
    lines = (profile_dir / FILES["llama-2-7b"]).read_text().splitlines()[:rows + 1]
    cells = lines[-1].split(",")
    cells[lines[0].split(",").index(column)] = value
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines[:-1] + [",".join(cells)]) + "\n")
    return path


MEDIAN = "must be a finite number from 1e-06 to 1,000,000"


@pytest.mark.parametrize("column,value,message", [
    ("time_stats.mlp_up_proj.median", "fast", f"p.csv:3: time_stats.mlp_up_proj.median: {MEDIAN}, got 'fast'"),
    ("time_stats.mlp_up_proj.median", "", "p.csv:3: time_stats.mlp_up_proj.median: is empty or missing"),
    ("time_stats.mlp_up_proj.median", "nan", f"p.csv:3: time_stats.mlp_up_proj.median: {MEDIAN}, got 'nan'"),
    ("time_stats.mlp_up_proj.median", "0", f"p.csv:3: time_stats.mlp_up_proj.median: {MEDIAN}, got '0'"),
    ("time_stats.add.median", "-0.01", f"p.csv:3: time_stats.add.median: {MEDIAN}, got '-0.01'"),
    ("num_tokens", "1.5", "p.csv:3: num_tokens: must be a finite whole number from 1 to 16,777,216, got '1.5'"),
    ("num_tensor_parallel_workers", "3", "p.csv:3: num_tensor_parallel_workers: must divide num_heads=32, got 3"),
])
def test_bad_profile_cells_name_the_file_line_and_column(profile_dir, tmp_path, column, value, message):
    with pytest.raises(SpecError) as info:
        read_profile(profile_with(profile_dir, tmp_path, 2, column, value), get_model("llama-2-7b"))
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("column,value,message", [
    ("n_head", "0", "p.csv:2: n_head: must be a finite whole number from 1 to 16,777,216, got '0'"),
    ("n_head", "30", "p.csv:2: n_head: must divide n_embd=4096, got 30"),
    ("n_kv_head", "5", "p.csv:2: n_kv_head: must divide n_head=32, got 5"),
    ("use_gated_mlp", "maybe", "p.csv:2: use_gated_mlp: must be True or False, got 'maybe'"),
])
def test_a_bad_model_shape_in_a_profile_is_named(profile_dir, tmp_path, column, value, message):
    with pytest.raises(SpecError) as info:
        model_from_profile(profile_with(profile_dir, tmp_path, 1, column, value))
    assert str(info.value).startswith(message)


def test_short_rows_empty_files_and_other_encodings_are_named(profile_dir, tmp_path):
    header, row = (profile_dir / FILES["llama-2-7b"]).read_text().splitlines()[:2]
    path = tmp_path / "p.csv"
    path.write_text(header + "\n" + ",".join(row.split(",")[:20]) + "\n")
    with pytest.raises(SpecError, match=r"^p.csv:2: .*: is empty or missing$"):
        read_profile(path, get_model("llama-2-7b"))
    path.write_text("")
    with pytest.raises(SpecError, match=r"^p.csv: holds no rows$"):
        model_from_profile(path)
    path.write_bytes(header.encode() + b"\n\x80\n")
    with pytest.raises(SpecError, match=r"^p.csv: is not UTF-8 text \(byte 0x80"):
        model_from_profile(path)


def test_the_h100_sustains_its_own_profiles_compute_efficiency_and_a_held_out_model_is_predicted(profile_dir):
    # Vidur's H100 profile of Llama-2-7B (data/profiles/h100): the MLP up-projection of 4096 tokens, 4096 ->
    # 2 x 11008, in 0.987 ms: 2 x 4096 x 4096 x 22016 = 738.7 GFLOP at 748 TFLOP/s, 0.757 of 989.4: the
    # spec's 0.76, not the 0.89 an 8192^3 GEMM reached in a burst on an H200
    import csv
    h100 = get_hardware("h100-sxm")
    assert h100.compute_efficiency == 0.76
    path = profile_dir.parent / "h100" / FILES["llama-2-7b"]
    with path.open() as f:
        row = next(i for i, r in enumerate(csv.DictReader(f))
                   if r["num_tokens"] == "4096" and r["num_tensor_parallel_workers"] == "1")
    up = read_profile(path, get_model("llama-2-7b"))["mlp_up_proj"]
    assert up.measured_s[row] == pytest.approx(0.987e-3, rel=0.01)
    assert 2 * 4096 * 4096 * 22016 / up.measured_s[row] / h100.peak("fp16") == pytest.approx(0.757, abs=0.002)
    assert up.predict_s(h100)[row] == pytest.approx(up.measured_s[row], rel=0.05)
    # Llama-2-70B at TP 1-8 set nothing: GEMM median 15.4% and p90 26.1% at 0.89
    held_out = compare(read_profile(profile_dir.parent / "h100" / FILES["llama-2-70b"], get_model("llama-2-70b")), h100)
    assert held_out["gemm_median_abs_err"] <= 0.08
    assert held_out["gemm_p90_abs_err"] <= 0.20


def test_a_misspelt_op_column_is_refused_and_an_unknown_op_noted(profile_dir, tmp_path, capsys):
    from infersim.cli import main
    text = (profile_dir / "Llama-2-7b-hf_linear_ops.csv").read_text()
    (tmp_path / "typo.csv").write_text(text.replace("time_stats.mlp_up_proj.", "time_stats.mlp_upproj."))
    with pytest.raises(SpecError, match=r"^typo.csv: time_stats.mlp_upproj.median: is not an op infersim compares: "
                                        r"did you mean time_stats.mlp_up_proj.median\?$"):
        read_profile(tmp_path / "typo.csv", get_model("llama-2-7b"))
    (tmp_path / "extra.csv").write_text(text.replace("time_stats.mlp_up_proj.", "time_stats.moe_gate."))
    assert main(["compare-profile", str(tmp_path / "extra.csv"), "--hardware", "a100-sxm-80gb"]) == 0
    assert "note: time_stats.moe_gate is not compared: infersim models no such op" in capsys.readouterr().err


def test_a_profile_in_seconds_is_noted(profile_dir, tmp_path, capsys):
    # every median / 1000: the ops would run ~1000x faster than the A100's peaks allow
    import csv
    from infersim.cli import main
    with open(profile_dir / "Llama-2-7b-hf_linear_ops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "s.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows({k: f"{float(v) / 1000:.6g}" if k.startswith("time_stats.") else v for k, v in r.items()}
                      for r in rows)
    assert main(["compare-profile", str(tmp_path / "s.csv"), "--hardware", "a100-sxm-80gb"]) == 0
    note = capsys.readouterr().err
    assert "x below the roofline's on a100-sxm-80gb: profiles give milliseconds" in note
