import json
import re
from pathlib import Path

import pytest
import yaml

from infersim.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_roofline_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "roofline", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--phase",
                       "decode", "--batch", "8", "--context", "1024", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"name", "flops", "bytes", "time_s", "bound"} <= set(data["ops"][0])
    assert {"flops", "bytes", "time_s", "weight_bytes", "kv_bytes"} <= set(data["totals"])
    # 8 sequences x 1025 tokens x 512 KiB read, plus 8 tokens written.
    assert data["totals"]["kv_bytes"] == 8 * 1025 * 524288 + 8 * 524288


def test_roofline_table_and_plot(capsys, tmp_path):
    plot = tmp_path / "r.png"
    code, out, _ = run(capsys, "roofline", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--phase",
                       "prefill", "--prompt", "1024", "--quant", "w4a16", "--kv-bits", "8", "--no-flash", "--tp",
                       "2", "--plot", str(plot))
    assert code == 0 and "attn_softmax" in out and "attn_all_reduce" in out
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("argv,message", [
    (["--model", "nope", "--hardware", "a100-sxm-80gb"], "model: unknown model"),
    (["--model", "llama-2-7b", "--hardware", "tpu"], "hardware: unknown hardware"),
    (["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--kv-bits", "5"], "--kv-bits: must be one of 16, 8, 4"),
    (["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--context", "9000"], "allows at most 4095"),
    (["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--quant", "w5"], "--quant: unknown scheme"),
    (["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--quant", "fp8"],
     "--quant: a100-sxm-80gb has no fp8 tensor-core peak"),
    (["--model", "llama-2-7b", "--hardware", "h100-sxm", "--quant", "nvfp4"],
     "--quant: h100-sxm has no fp4 tensor-core peak"),
    (["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--pp", "33"], "--pp: must be <= num_layers=32, got 33"),
])
def test_bad_input_is_one_line(capsys, argv, message):
    code, _, err = run(capsys, "roofline", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_batch_zero_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["roofline", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--batch", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--batch: must be >= 1" in err and len(err.strip().splitlines()) == 1


def test_listings(capsys):
    assert "llama-3.1-405b" in run(capsys, "models")[1]
    hardware = run(capsys, "hardware")[1].splitlines()
    assert hardware[0].split()[:5] == ["hardware", "fp16", "int8", "fp8", "fp4"]
    rows = {line.split()[0]: line for line in hardware[2:]}
    assert {"mi300x", "gh200", "h20", "b200", "gb200", "b300", "mi325x", "mi355x"} <= set(rows)
    assert "9 PFLOP/s" in rows["b200"] and rows["h100-sxm"].split()[7] == "-"  # HGX B200: 18 sparse / 2; H100: no fp4


def test_compare_profile_json(capsys, profile_dir):
    code, out, _ = run(capsys, "compare-profile", str(profile_dir / "Llama-2-7b-hf_linear_ops.csv"), "--model",
                       "llama-2-7b", "--hardware", "a100-sxm-80gb", "--json")
    data = json.loads(out)
    assert set(data) == {"ops", "gemm_median_abs_err", "gemm_p90_abs_err", "all_median_abs_err"}
    assert data["ops"]["mlp_up_proj"]["n"] == 1044


def test_calibrate_from_profile_writes_a_loadable_yaml(capsys, tmp_path, profile_dir):
    out = tmp_path / "hw.yaml"
    code, text, _ = run(capsys, "calibrate", "--from-profile", str(profile_dir / "Llama-2-7b-hf_linear_ops.csv"),
                        "--hardware", "a100-sxm-80gb", "--out", str(out))
    assert code == 0 and "compute_efficiency" in text
    assert yaml.safe_load(out.read_text())["name"] == "a100-sxm-80gb-fitted"
    code, _, _ = run(capsys, "roofline", "--model", "llama-2-7b", "--hardware", str(out))
    assert code == 0


def test_calibrate_host_measures_this_machine(capsys, tmp_path):
    out = tmp_path / "cpu.yaml"
    code, _, err = run(capsys, "calibrate", "--out", str(out))
    spec = yaml.safe_load(out.read_text())
    assert code == 0 and "STREAM triad" in err
    assert spec["memory_bandwidth_bytes_per_s"] > 1e9 and spec["peak_flops_per_s"]["fp32"] > 1e9
    code, text, _ = run(capsys, "roofline", "--model", "tiny-llama", "--hardware", str(out), "--context", "100")
    assert code == 0 and "step time" in text


def test_hardware_yaml_errors_name_the_field(capsys, tmp_path):
    bad = tmp_path / "hw.yaml"
    bad.write_text("name: x\nwarp_size: 32\n")
    code, _, err = run(capsys, "roofline", "--model", "llama-2-7b", "--hardware", str(bad))
    assert code == 2 and "hw.yaml: warp_size: is not a known field" in err
    bad.write_text("name: [unclosed\n")
    code, _, err = run(capsys, "roofline", "--model", "llama-2-7b", "--hardware", str(bad))
    assert code == 2 and "not valid YAML" in err


def one_line_error(capsys, *argv) -> str:
    """The one line a refused command prints (exit status 2), without its 'infersim ...: error: ' prefix."""
    try:
        code = main(list(argv))
    except SystemExit as exit_info:  # argparse refuses a flag's value before running anything
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    return err.split("error: ", 1)[1].strip()


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"infersim {version('infersim')}\n"


@pytest.mark.parametrize("argv,message", [
    (["roofline", "--model", "llama-2-7b", "--hardware", "l4", "--batch", "1000000000"],
     "argument --batch: must be <= 65,536, got 1,000,000,000"),
    (["roofline", "--model", "llama-2-7b", "--hardware", "l4", "--plot", "x.xyz"], "argument --plot: must end in one "
                                                                                    "of .eps, .gif"),
    (["roofline", "--model", "llama-2-7b", "--hardware", "l4", "--plot", "x.pgf"], "argument --plot: must end in one "
                                                                                    "of .eps, .gif"),  # needs LaTeX
    (["roofline", "--model", "llama-2-7b", "--hardware", "l4", "--plot", "nowhere/x.png"],
     "argument --plot: its folder does not exist: 'nowhere/x.png'"),
    (["compare-profile", "p.csv", "--hardware", "l4", "--plot", "x"], "argument --plot: must end in one of"),
    (["calibrate", "--out", "cpu.txt"], "argument --out: must end in .yaml or .yml, got 'cpu.txt'"),
    (["roofline", "--model", "nowhere.json", "--hardware", "l4"], "--model: no such file, got 'nowhere.json'"),
    (["roofline", "--model", "llama-2-7b", "--hardware", "l4", "--tp", "3"], "--tp: must divide num_heads=32, got 3"),
    (["run", "s.yaml", "--out", ""], "argument --out: must name a folder (it is empty)"),
    (["calibrate", "--from-profile", "p.csv", "--hardware", "l4", "--device", "gpu"],
     "--device: does not apply with --from-profile (which fits a profile measured already; --hardware names its "
     "GPU), got 'gpu'"),
    (["calibrate", "--hardware", "l4"], "--hardware: applies with --from-profile only"),
])
def test_bad_flags_are_refused_up_front_in_one_line(capsys, argv, message):
    assert one_line_error(capsys, *argv).startswith(message)


def test_an_output_folder_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "taken").write_text("")
    assert one_line_error(capsys, "run", "s.yaml", "--out", str(tmp_path / "taken")).startswith(
        "argument --out: is a file, not a folder")


def test_an_output_folder_that_cannot_be_written_is_refused_before_simulating(capsys, tmp_path, monkeypatch):
    import infersim.sim.run
    monkeypatch.setattr(infersim.sim.run, "simulate", lambda *args, **kw: pytest.fail("simulated first"))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(model="tiny-llama", hardware="l4", source=GENERATED))
    (tmp_path / "file").write_text("")
    assert one_line_error(capsys, "run", str(scenario), "--out", str(tmp_path / "file" / "out")) == (
        f"--out: cannot be written (Not a directory), got '{tmp_path / 'file' / 'out'}'")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be created")
def test_calibrate_refuses_an_output_it_cannot_write_before_measuring(capsys):
    assert one_line_error(capsys, "calibrate", "--out", "/proc/hw.yaml") == (
        "--out: cannot be written (No such file or directory), got '/proc/hw.yaml'")


def test_validate_names_the_flag_of_a_hardware_file_without_an_fp32_peak(capsys, tmp_path):
    from infersim.roofline import get_hardware
    spec = {**get_hardware("l4").to_dict(), "peak_flops_per_s": {"fp16": 1e14}}
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(spec))
    assert one_line_error(capsys, "validate", "--hardware", str(tmp_path / "hw.yaml"), "--out", str(tmp_path / "v")) \
        == (f"--hardware: has no fp32 tensor-core peak (peak_flops_per_s.fp32), which the validating kernels compute "
            f"at; it has fp16, got '{tmp_path / 'hw.yaml'}'")
    assert not (tmp_path / "v").exists()


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "infersim.cli", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # as `infersim models | head -0` would, before anything is printed
    assert proc.stderr.read() == b"" and proc.wait() == 1


def test_calibrating_on_a_profile_with_negative_times_is_refused(capsys, tmp_path, profile_dir):
    lines = (profile_dir / "Llama-2-7b-hf_linear_ops.csv").read_text().splitlines()[:3]
    column = lines[0].split(",").index("time_stats.mlp_up_proj.median")
    cells = lines[2].split(",")
    cells[column] = "-0.5"
    path = tmp_path / "neg.csv"
    path.write_text("\n".join(lines[:2] + [",".join(cells)]) + "\n")
    assert one_line_error(capsys, "calibrate", "--from-profile", str(path), "--hardware", "a100-sxm-80gb", "--out",
                          str(tmp_path / "hw.yaml")).startswith("neg.csv:3: time_stats.mlp_up_proj.median: must be")
    assert not (tmp_path / "hw.yaml").exists()


def test_a_simulator_refusal_names_the_scenario_file(capsys, tmp_path):
    scenario = tmp_path / "tp3.yaml"
    scenario.write_text("model: tiny-llama\nhardware: l4\nparallelism: {tensor_parallel: 3}\nworkload:\n"
                        "  arrival: {rate_per_s: 5}\n  prompt_tokens: 10\n  output_tokens: 2\n")
    assert one_line_error(capsys, "run", str(scenario), "--no-plot", "--out", str(tmp_path / "o")) == \
        "tp3.yaml: parallelism.tensor_parallel: must divide num_heads=4, got 3"


@pytest.mark.filterwarnings("error")  # nor any warning (an empty legend in run.png)
def test_a_run_where_nothing_completes_writes_strict_json_and_prints_no_nan(capsys, tmp_path):
    scenario = tmp_path / "short.yaml"
    scenario.write_text("model: tiny-llama\nhardware: l4\nscheduler: {max_model_len: 50}\nworkload:\n"
                        "  num_requests: 5\n  arrival: {rate_per_s: 5}\n  prompt_tokens: 100\n  output_tokens: 2\n")
    assert main(["run", str(scenario), "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"summary.json holds {name}"))
    assert summary["requests_completed"] == 0 and summary["ttft_s"]["p50"] is None
    assert not re.search(r"\bnan\b", out.lower()) and re.search(r"^TTFT +- +- +- +-$", out, re.MULTILINE)
    assert "warning: 5 of 5 requests rejected" in err and len(err.splitlines()) == 1


SCENARIO = ("model: {model}\nhardware: {hardware}\nworkload:\n  num_requests: 5\n{source}")
GENERATED = "  arrival: {rate_per_s: 5}\n  prompt_tokens: 10\n  output_tokens: 2\n"


@pytest.mark.parametrize("kind", ["scenario", "trace", "lengths", "config", "hardware", "profile"])
def test_files_that_are_not_utf8_are_named_in_one_line(capsys, tmp_path, profile_dir, kind):
    latin1 = "caf\xe9".encode("latin-1")
    files = {"scenario": "s.yaml", "trace": "t.csv", "lengths": "l.csv", "config": "config.json",
             "hardware": "hw.yaml", "profile": "p.csv"}
    fields = {"model": "tiny-llama", "hardware": "l4", "source": GENERATED}
    if kind == "trace":
        fields["source"] = "  trace: {path: t.csv}\n"
    if kind == "lengths":
        fields["source"] = "  arrival: {rate_per_s: 5}\n  lengths_file: l.csv\n"
    if kind == "config":
        fields["model"] = "config.json"
    if kind == "hardware":
        fields["hardware"] = "hw.yaml"
    (tmp_path / "s.yaml").write_text(SCENARIO.format(**fields))
    (tmp_path / files[kind]).write_bytes(b"# " + latin1 + b"\n")
    argv = ["run", str(tmp_path / "s.yaml"), "--no-plot", "--out", str(tmp_path / "o")]
    if kind == "profile":
        argv = ["compare-profile", str(tmp_path / "p.csv"), "--hardware", "l4"]
    message = one_line_error(capsys, *argv)
    assert message.endswith(f"{files[kind]}: is not UTF-8 text (byte 0xe9 at offset 5); save it as UTF-8"), message


def test_a_run_too_long_for_a_timeline_writes_its_summary_and_plot_without_one(tmp_path):
    """A run past sim.metrics.STREAM_AFTER_ROWS steps keeps no per-step timeline (RunResult.timeline is None):
    write_run leaves out timeline.csv and plot_run says so in the panels over time."""
    import dataclasses

    from infersim.plots import plot_run
    from infersim.report import write_run
    from infersim.scenario import load_run
    from infersim.sim.run import simulate
    path = tmp_path / "s.yaml"
    path.write_text("model: tiny-llama\nhardware: l4\nworkload: {num_requests: 20, arrival: {process: poisson, "
                    "rate_per_s: 5}, prompt_tokens: 32, output_tokens: 8}\n")
    _, cfg, requests = load_run(path)
    result = dataclasses.replace(simulate(cfg, requests), timeline=None)
    paths = write_run(result, tmp_path / "out")
    assert sorted(paths) == ["requests", "summary"] and not (tmp_path / "out" / "timeline.csv").exists()
    plot_run(result, tmp_path / "out" / "run.png", "no timeline")
    assert (tmp_path / "out" / "run.png").stat().st_size > 0


def test_roofline_defaults_fit_a_short_context_model(capsys):
    # gpt2's context is 1024 tokens: the default decode context is 1023 cached tokens, the default prompt 1024
    code, out, _ = run(capsys, "roofline", "--model", "gpt2", "--hardware", "h100-sxm")
    assert code == 0 and "decode, batch 1, context 1023" in out
    code, out, _ = run(capsys, "roofline", "--model", "gpt2", "--hardware", "h100-sxm", "--phase", "prefill")
    assert code == 0 and "prefill, batch 1, prompt 1024" in out
