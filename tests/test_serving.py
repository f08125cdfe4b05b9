"""Measured serving runs against the simulator (infersim compare-serving)."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infersim.roofline import SpecError
from infersim.serving import (Comparison, ServingRun, error_summary, highest_rate_within, read_csv_runs,
                              read_vllm_bench_json, simulate_run)

RUNS = Path(__file__).resolve().parent.parent / "data" / "serving" / "trtllm-v0.14-online-h100.csv"


def run_at(rate, ttft_ms, model="m"):
    return ServingRun("f.csv:2", model, "h100-sxm", 1, 100, 10, 50, rate, ttft_ms, 10.0, 100.0)


def test_nvidias_published_table_reads_as_36_runs_with_unbounded_rates():
    runs = read_csv_runs(RUNS)
    assert len(runs) == 36 and sum(math.isinf(r.request_rate_per_s) for r in runs) == 6
    first = runs[0]
    assert (first.model, first.tensor_parallel, first.input_tokens, first.output_tokens, first.mean_ttft_ms) == \
        ("llama-3.1-70b", 4, 467, 256, 62.0)


def test_errors_are_relative_to_the_measurement():
    c = Comparison(run_at(2.0, 50.0), ttft_ms=60.0, itl_ms=8.0, output_tokens_per_s=110.0)
    assert c.errors() == pytest.approx({"ttft": 0.2, "itl": -0.2, "output_tokens_per_s": 0.1})
    summary = error_summary([c, Comparison(run_at(4.0, 50.0), 45.0, 10.0, 100.0)])
    assert summary["ttft"]["median_abs_err"] == pytest.approx(0.15)  # |+0.2| and |-0.1|


def test_the_highest_sustainable_rate_is_read_per_configuration():
    comparisons = [Comparison(run_at(rate, measured), simulated, 10.0, 100.0) for rate, measured, simulated in
                   ((2, 50, 60), (8, 150, 250), (16, 400, 900), (math.inf, 5000, 6000))]
    assert highest_rate_within(comparisons, 200.0, measured=True) == {"m h100-sxm TP1 100/10": 8}
    assert highest_rate_within(comparisons, 200.0, measured=False) == {"m h100-sxm TP1 100/10": 2}


def test_a_light_load_run_is_simulated_close_to_what_tensorrt_llm_measured():
    # Llama-3.1-8B, 467/16 tokens at 2 requests/s on the engine measured (0.14's C++ executor): measured TTFT
    # 19 ms, ITL 7 ms. Decode is right within 10%; TTFT comes out ~4 ms low, as for every light-load row of
    # both models: NVIDIA's TTFT includes Triton's front end (tokenizing, the ensemble, gRPC streaming),
    # which the simulator does not model (README, "Checking against measured serving runs")
    run = next(r for r in read_csv_runs(RUNS) if r.model == "llama-3.1-8b" and r.output_tokens == 16
               and r.request_rate_per_s == 2)
    c = simulate_run(run, "trtllm-cpp")
    assert abs(c.errors()["itl"]) < 0.1
    assert -0.3 < c.errors()["ttft"] < 0


def test_bad_measurement_files_get_one_line(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text(RUNS.read_text().replace(",2,2.0,62.0,", ",fast,2.0,62.0,", 1))
    with pytest.raises(SpecError, match=r"runs.csv:2: request_rate_per_s: must be a finite number"):
        read_csv_runs(bad)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"completed": 100, "total_input_tokens": 51200, "total_output_tokens": 12800,
                                 "request_rate": 4, "mean_ttft_ms": 30.0, "mean_itl_ms": 9.0,
                                 "mean_tpot_ms": 9.5, "output_throughput": 480.0}))
    (run,) = read_vllm_bench_json(bench, "llama-3.1-8b", "h100-sxm", 1)
    assert (run.input_tokens, run.output_tokens, run.request_rate_per_s) == (512, 128, 4.0)
    assert run.mean_itl_ms == 9.5  # the per-request mean (TPOT), as GenAI-Perf's ITL and the simulator's TPOT
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "compare-serving", str(bench)], capture_output=True,
                         text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--model" in out.stderr


def test_calibrate_from_serving_fits_the_host_time_and_writes_an_engine_block(tmp_path):
    import yaml
    lines = RUNS.read_text().splitlines()
    runs = tmp_path / "runs.csv"
    runs.write_text("\n".join([lines[0], lines[19], lines[25]]) + "\n")  # 8B at 2 req/s, two shapes
    out = tmp_path / "engine.yaml"
    done = subprocess.run([sys.executable, "-m", "infersim.cli", "calibrate", "--from-serving", str(runs),
                           "--engine", "trtllm", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    engine = yaml.safe_load(out.read_text())["engine"]
    assert engine["preset"] == "trtllm" and 1e-4 <= engine["overhead_fixed_s"] <= 3e-2 and engine["frontend_s"] >= 0
    # the fit never predicts worse than the preset it started from (the mean of the TTFT and ITL medians)
    medians = {line.split()[0]: [float(x) for x in re.findall(r"median \|error\| ([\d.]+)% -> ([\d.]+)%", line)[0]]
               for line in done.stdout.splitlines() if line.startswith(("ttft", "itl"))}
    assert medians["ttft"][1] + medians["itl"][1] <= medians["ttft"][0] + medians["itl"][0] + 1e-9
    assert "note: three values fitted to 2 runs: they describe them, not the engine" in done.stdout


def test_a_run_at_a_finite_rate_sends_its_requests_at_exactly_that_rate():
    from dataclasses import replace

    from infersim.serving import arrivals_of
    run = read_csv_runs(RUNS)[0]  # 500 requests at 2 requests/s
    arrivals = arrivals_of(run, seed=0)
    # the first at 0, then 499 gaps of 0.5 s on average: the last at 249.5 s
    assert arrivals[-1] == pytest.approx(249.5, rel=1e-12) and arrivals[0] == 0 and np.all(np.diff(arrivals) >= 0)
    assert not np.any(arrivals_of(replace(run, request_rate_per_s=float("inf")), seed=0))


def test_99th_percentiles_are_compared_where_a_run_measured_them(tmp_path):
    lines = RUNS.read_text().splitlines()
    with_p99 = tmp_path / "runs.csv"
    with_p99.write_text("\n".join([lines[0] + ",p99_ttft_ms,p99_itl_ms", lines[19] + ",40,", lines[25] + ",,"]) + "\n")
    first, second = read_csv_runs(with_p99)
    assert (first.p99_ttft_ms, first.p99_itl_ms, second.p99_ttft_ms) == (40.0, None, None)
    # predicted p99 TTFT 50 ms against 40 measured: +25%; a run that did not measure it adds no error
    measured = Comparison(first, 20.0, 7.0, 500.0, p99_ttft_ms=50.0, p99_itl_ms=9.0)
    assert measured.errors()["p99_ttft"] == pytest.approx(0.25) and "p99_itl" not in measured.errors()
    summary = error_summary([measured, Comparison(second, 20.0, 7.0, 30.0, p99_ttft_ms=90.0, p99_itl_ms=9.0)])
    assert summary["p99_ttft"] == {"median_abs_err": pytest.approx(0.25), "p90_abs_err": pytest.approx(0.25), "runs": 1}
    assert "p99_itl" not in summary  # no run measured it


def bench_json(tmp_path, **fields):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"completed": 3, "total_input_tokens": 350, "total_output_tokens": 45,
                                 "request_rate": 2, "mean_ttft_ms": 30.0, "mean_tpot_ms": 9.5,
                                 "output_throughput": 480.0, **fields}))
    return bench


def test_vllm_bench_percentiles_and_burstiness_are_read(tmp_path):
    (run,) = read_vllm_bench_json(bench_json(tmp_path, p99_ttft_ms=80.0, p99_tpot_ms=12.0, burstiness=0.5),
                                  "llama-3.1-8b", "h100-sxm", 1)
    assert (run.p99_ttft_ms, run.p99_itl_ms, run.burstiness, run.requests) == (80.0, 12.0, 0.5, None)


def test_burstiness_sends_gamma_gaps_of_its_shape():
    from dataclasses import replace

    from infersim.serving import arrivals_of
    run = replace(read_csv_runs(RUNS)[0], request_rate_per_s=10.0, num_requests=20001, burstiness=4.0)
    gaps = np.diff(arrivals_of(run, seed=0))
    # vllm bench serve draws Gamma(shape=burstiness) gaps: coefficient of variation 1/sqrt(4) = 0.5; the gaps
    # are scaled to average exactly 1/rate = 0.1 s
    assert gaps.mean() == pytest.approx(0.1, rel=1e-12)
    assert gaps.std() / gaps.mean() == pytest.approx(0.5, rel=0.03)


def test_a_detailed_vllm_bench_run_is_simulated_with_its_own_requests(tmp_path):
    from infersim.serving import workload_of
    # four requests; the second failed (0 output tokens); sent out of list order at 12.0, 12.5, 13.25, 12.25 s
    bench = bench_json(tmp_path, input_lens=[100, 300, 200, 50], output_lens=[10, 0, 30, 5],
                       start_times=[12.0, 12.5, 13.25, 12.25])
    (run,) = read_vllm_bench_json(bench, "llama-3.1-8b", "h100-sxm", 1)
    w = workload_of(run, seed=0)
    # the three completed, by send time: 100/10 at 0 s, 50/5 at 0.25 s, 200/30 at 1.25 s
    assert w.arrival_s.tolist() == [0.0, 0.25, 1.25]
    assert (w.prompt_tokens.tolist(), w.output_tokens.tolist()) == ([100, 50, 200], [10, 5, 30])
    # the replay serves exactly those three: 10 + 5 + 30 = 45 output tokens over the simulated run, whose
    # output tokens/s is that over its length (the last request's completion, after 1.25 s)
    from infersim.roofline import Parallelism, StepOptions, get_hardware, get_model
    from infersim.sim.engines import preset_config
    from infersim.sim.run import requests_from, simulate
    cfg = preset_config("vllm-v1", get_model("llama-3.1-8b"), get_hardware("h100-sxm"), StepOptions(parallel=Parallelism()), 230)
    summary = simulate(cfg, requests_from(w)).summary
    assert summary["requests_completed"] == 3
    assert simulate_run(run, "vllm-v1").output_tokens_per_s == pytest.approx(45 / summary["simulated_time_s"])
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "compare-serving", str(bench), "--model",
                          "llama-3.1-8b", "--hardware", "h100-sxm"], capture_output=True, text=True)
    assert out.returncode == 0 and "(own)" in out.stdout, out.stderr
    # without send times, the lengths are sent at the run's rate (2/s): 0, 0.5, 1.0 s on average
    (unsent,) = read_vllm_bench_json(bench_json(tmp_path, input_lens=[100, 50, 200], output_lens=[10, 5, 30]),
                                     "llama-3.1-8b", "h100-sxm", 1)
    assert workload_of(unsent, seed=0).arrival_s[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("fields, message", [
    ({"input_lens": [100, 200], "output_lens": [10]}, r"output_lens: must list as many requests as input_lens \(2\)"),
    ({"input_lens": [1e30, 100], "output_lens": [10, 5]}, r"input_lens: must hold whole numbers from 0 to 16,777,216"),
    ({"input_lens": [100, 100], "output_lens": [1, 1]}, r"output_lens: has no completed request of 2 or more"),
    ({"input_lens": [100, 100], "output_lens": [5, 5], "start_times": [0, 1e300]}, r"start_times: 2 arrivals span 1e\+300 s"),
    ({"input_lens": [100, "x"], "output_lens": [10, 5]}, r"input_lens: must hold whole numbers from 0 to 16,777,216 only \(request 1"),
    ({"input_lens": [100, 2.5], "output_lens": [10, 5]}, r"input_lens: must hold whole numbers"),
    ({"input_lens": [100], "output_lens": [0]}, r"output_lens: lists no completed request"),
    ({"input_lens": [100], "output_lens": [3], "start_times": [None]}, r"start_times: must hold finite numbers only"),
    ({"ramp_up_strategy": "linear"}, r"ramp_up_strategy: sends at a changing rate"),
    ({"burstiness": "high"}, r"burstiness: must be a finite number"),
    ({"p99_ttft_ms": -1}, r"p99_ttft_ms: must be a finite number"),
])
def test_bad_detailed_vllm_bench_files_get_one_line(tmp_path, fields, message):
    with pytest.raises(SpecError, match=r"bench.json: " + message):
        read_vllm_bench_json(bench_json(tmp_path, **fields), "llama-3.1-8b", "h100-sxm", 1)


def test_the_plot_draws_99th_percentiles_where_runs_measured_them(tmp_path):
    from dataclasses import replace

    from infersim.plots import plot_serving
    comparisons = [Comparison(replace(run_at(rate, 50.0), p99_ttft_ms=120.0), 60.0, 8.0, 100.0, 130.0, 11.0)
                   for rate in (2.0, 4.0, math.inf)]
    plot_serving(comparisons, tmp_path / "serving.png", "runs")
    assert (tmp_path / "serving.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rate_sweep_of_vllm_bench_files_is_compared_as_one_series(tmp_path):
    # vllm bench serve writes one JSON per request rate: given together they make one configuration's series
    files = []
    for rate, ttft_ms, achieved in ((2, 20.0, 2.0), (8, 40.0, 5.0)):
        path = tmp_path / f"rate{rate}.json"
        path.write_text(json.dumps({"completed": 40, "total_input_tokens": 40 * 200, "total_output_tokens": 40 * 20,
                                    "request_rate": rate, "mean_ttft_ms": ttft_ms, "mean_tpot_ms": 8.0,
                                    "output_throughput": 20.0 * rate, "request_throughput": achieved}))
        files.append(str(path))
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "compare-serving", *files, "--model", "llama-3.1-8b",
                          "--hardware", "h100-sxm", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [r["request_rate_per_s"] for r in result["runs"]] == [2.0, 8.0]
    assert list(result["rate_within_ttft"]["measured"].values()) == [8.0]  # one configuration, both under 200 ms
    # at 8 requests/s, 40 requests sent over 39 / 8 = 4.9 s end by 4.9 + 0.04 + 19 x 0.008 = 5.1 s with fixed
    # 20-token outputs, but the run lasted 40 / 5 = 8 s; at 2 requests/s 20 s against 19.7 s is as expected
    assert len(result["notes"]) == 1 and result["notes"][0].startswith(
        "rate8.json: it lasted 8 s (40 requests at 5 requests/s), but requests sent over 5 s with 20-token outputs")


def test_a_burstiness_so_low_that_every_gap_rounds_to_zero_sends_all_at_once():
    from dataclasses import replace

    from infersim.serving import arrivals_of
    # Gamma shape 1e-3: almost every gap is 0.0 in float64, so with two requests the draw is often all zeros
    run = replace(read_csv_runs(RUNS)[0], num_requests=2, burstiness=1e-3)
    for seed in range(20):
        arrivals = arrivals_of(run, seed)
        assert np.all(np.isfinite(arrivals)) and arrivals[0] == 0


def test_a_throughput_only_row_is_compared_on_tokens_per_second_in_its_precision(tmp_path):
    # NVIDIA's max-throughput table gives output tokens/s alone, and FP8 rows: no TTFT or ITL to compare, and
    # the run simulated in FP8
    runs = tmp_path / "runs.csv"
    runs.write_text("model,hardware,tensor_parallel,precision,input_tokens,output_tokens,num_requests,"
                    "request_rate_per_s,output_tokens_per_s\n"
                    "llama-3.1-8b,h100-sxm,1,fp8,128,128,60,inf,28836.77\n")
    (run,) = read_csv_runs(runs)
    assert (run.quantization, run.mean_ttft_ms, run.mean_itl_ms) == ("fp8", None, None)
    c = Comparison(run, 30.0, 8.0, 28836.77 * 1.1)
    assert c.errors() == pytest.approx({"output_tokens_per_s": 0.1})
    assert set(error_summary([c])) == {"output_tokens_per_s"} and highest_rate_within([c], 200.0, measured=True) == {}
    bad = tmp_path / "bad.csv"
    bad.write_text(runs.read_text().replace(",fp8,", ",fp9,"))
    with pytest.raises(SpecError, match=r"bad.csv:2: precision: must be a quantization preset: fp16, bf16"):
        read_csv_runs(bad)


def test_no_rate_to_compare_says_why(tmp_path):
    # a finite-rate run that measured throughput alone has no TTFT to judge a rate by: the line says that,
    # not that every run sent its requests at once
    runs = tmp_path / "runs.csv"
    runs.write_text("model,hardware,tensor_parallel,input_tokens,output_tokens,num_requests,request_rate_per_s,"
                    "output_tokens_per_s\nllama-3.1-8b,h100-sxm,1,128,16,20,2,30.0\n")
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "compare-serving", str(runs)], capture_output=True,
                         text=True, check=True).stdout
    assert "none to compare: no run sent at a finite rate measured a mean TTFT (mean_ttft_ms left out)" in out


def test_calibrate_says_which_fitted_values_the_runs_leave_loose(tmp_path):
    # one open-loop run that measured ITL alone: the front end's time moves only TTFT, so the fit cannot
    # pin it down, and says so instead of writing a number as if it were measured
    from infersim.serving import fit_host_overhead
    runs = tmp_path / "runs.csv"
    runs.write_text("model,hardware,tensor_parallel,input_tokens,output_tokens,num_requests,request_rate_per_s,"
                    "mean_itl_ms,output_tokens_per_s\nllama-3.1-8b,h100-sxm,1,128,16,4,1,9.0,30.0\n")
    fit = fit_host_overhead(read_csv_runs(runs), "trtllm")
    assert fit.loose["frontend_s"] == ("the runs do not pin it down (the error moves less than 0.2 points over "
                                       "0.0005-0.05 s)")


def test_spread_lengths_keep_the_runs_mean_and_deviation():
    from infersim.serving import spread_lengths
    rng = np.random.default_rng(0)
    assert np.array_equal(spread_lengths(202, 0.0, 3, rng), [202, 202, 202])
    x = spread_lengths(214, 185, 400_000, rng)
    assert x.dtype == np.int64 and x.min() >= 1
    assert x.mean() == pytest.approx(214, rel=0.005) and x.std() == pytest.approx(185, rel=0.02)
    # lognormal of cv 185/214: sigma^2 = ln(1 + 0.8645^2) = 0.5603, so the median is 214 / e^(0.5603/2) = 161.8
    assert np.median(x) == pytest.approx(161.8, abs=1.5)


def test_a_run_with_length_spreads_is_simulated_with_drawn_lengths_and_the_same_arrivals(tmp_path):
    from dataclasses import replace

    from infersim.serving import workload_of
    rows = RUNS.read_text().splitlines()
    spread = tmp_path / "runs.csv"
    spread.write_text("\n".join([rows[0] + ",input_tokens_stddev,output_tokens_stddev"] +
                                [row + ",60,80" for row in rows[1:3]] + [rows[3] + ",,"]) + "\n")
    first, second, fixed = read_csv_runs(spread)
    assert (first.input_tokens_stddev, first.output_tokens_stddev, fixed.output_tokens_stddev) == (60, 80, 0)
    assert first.config_key == "llama-3.1-70b h100-sxm TP4 467+-60/256+-80"
    drawn, plain = workload_of(first, seed=3), workload_of(replace(first, input_tokens_stddev=0.0,
                                                                   output_tokens_stddev=0.0), seed=3)
    assert np.array_equal(drawn.arrival_s, plain.arrival_s) and np.all(plain.output_tokens == 256)
    assert drawn.output_tokens.std() == pytest.approx(80, rel=0.15) and drawn.output_tokens.min() >= 1
    bad = tmp_path / "bad.csv"
    bad.write_text(rows[0] + ",output_tokens_stddev\n" + rows[1] + ",-5\n")
    with pytest.raises(SpecError, match=r"bad.csv:2: output_tokens_stddev: must be a finite number from 0 to"):
        read_csv_runs(bad)
    typo = tmp_path / "typo.csv"
    typo.write_text(rows[0] + ",output_token_stddev\n" + rows[1] + ",5\n")
    with pytest.raises(SpecError, match="did you mean output_tokens_stddev"):
        read_csv_runs(typo)


def test_a_spread_that_draws_beyond_the_models_context_names_the_spread(tmp_path):
    rows = RUNS.read_text().splitlines()
    # Llama-3.1-8B's context is 131,072 tokens: 50 prompts of 60,000 +- 60,000 reach past it (their lognormal's
    # median is 42,426 and sigma 0.83; the largest of 50 lies ~2.3 sigma up, near 290,000)
    wide = tmp_path / "wide.csv"
    wide.write_text(rows[0] + ",input_tokens_stddev\n" + rows[19].replace(",467,256,500,", ",60000,256,50,", 1)
                    + ",60000\n")
    (run,) = read_csv_runs(wide)
    with pytest.raises(SpecError, match=r"^wide.csv:2: input_tokens_stddev: draw a request of [0-9,]+ tokens, "
                                        r"beyond llama-3.1-8b's context of 131,072: lower the spread, got '60000'$"):
        simulate_run(run, "trtllm-cpp")


def test_a_run_that_lasted_longer_than_fixed_lengths_allow_is_noted():
    from dataclasses import replace

    from infersim.serving import lengths_note
    runs = read_csv_runs(RUNS)
    # 70B 202/214 at 32 requests/s: 500 / 14 = 35.7 s, where 499 / 32 = 15.6 s of sending plus the last
    # request's 116 ms + 213 x 42 ms = 9.1 s end by 24.7 s (1.45x): its outputs vary
    late = next(r for r in runs if r.model == "llama-3.1-70b" and r.input_tokens == 202 and r.request_rate_per_s == 32)
    assert late.achieved_requests_per_s == 14.0
    note = lengths_note(late)
    assert note.startswith("trtllm-v0.14-online-h100.csv:18: it lasted 36 s (500 requests at 14 requests/s), but "
                           "requests sent over 16 s with 214-token outputs at its 42 ms ITL end by 25 s")
    # the fix a CSV row allows; a vllm bench serve file's is --save-detailed
    assert note.endswith("give their spread (output_tokens_stddev) or each request's (a vllm bench serve "
                         "--save-detailed file)")
    assert lengths_note(replace(late, where="bench.json")).endswith(
        "save the run with --save-detailed, which lists each request's lengths")
    # 70B 467/256 at 2 requests/s: 250 s against 249.5 + 0.062 + 255 x 0.021 = 254.9 s: nothing to say
    first = runs[0]
    assert lengths_note(first) is None
    # nor where the spread is given, the rate is unbounded, or no achieved rate was measured
    assert lengths_note(replace(late, output_tokens_stddev=107.0)) is None
    assert lengths_note(replace(late, achieved_requests_per_s=None)) is None
    # across NVIDIA's H100 table only the 202/214 runs at 16 and 32 requests/s are noted
    noted = [(r.model, r.input_tokens, r.request_rate_per_s) for r in runs if lengths_note(r)]
    assert noted == [("llama-3.1-70b", 202, 16.0), ("llama-3.1-70b", 202, 32.0), ("llama-3.1-8b", 202, 16.0),
                     ("llama-3.1-8b", 202, 32.0)]


def test_appended_results_and_sglangs_json_lines_are_a_run_a_line(tmp_path):
    # vllm bench serve --append-result writes one result a line into the same .json; SGLang's bench_serving.py
    # appends one a line to a .jsonl, its request rate inf as JSON's Infinity
    line = {"completed": 3, "total_input_tokens": 350, "total_output_tokens": 45, "mean_ttft_ms": 30.0,
            "mean_tpot_ms": 9.5, "output_throughput": 480.0}
    for name in ("appended.json", "sglang.jsonl"):
        path = tmp_path / name
        path.write_text(json.dumps({**line, "request_rate": 2}) + "\n\n" + json.dumps({**line, "request_rate": math.inf})
                        + "\n")
        runs = read_vllm_bench_json(path, "llama-3.1-8b", "h100-sxm", 1)
        assert [(r.where, r.request_rate_per_s) for r in runs] == [(f"{name}:1", 2.0), (f"{name}:3", math.inf)]
    path.write_text(json.dumps(line) + "\n{\"completed\": 3,\n")
    with pytest.raises(SpecError, match=r"^sglang.jsonl:2: is not valid JSON \(Expecting property name enclosed in "
                                        r"double quotes: column 17\); a JSON Lines file holds one value a line"):
        read_vllm_bench_json(path, "llama-3.1-8b", "h100-sxm", 1)


def test_figures_a_client_did_not_measure_are_left_uncompared(tmp_path):
    # --percentile-metrics ttft,itl writes no TPOT; a backend that does not stream gives vLLM no TTFT samples,
    # whose mean it writes as 0.0; --max-concurrency 0 is no limit; the first releases spelt the achieved rate
    # request_inthroughput
    (run,) = read_vllm_bench_json(bench_json(tmp_path, mean_tpot_ms=None, mean_ttft_ms=0.0, p99_ttft_ms=0.0,
                                             max_concurrency=0, request_rate="inf", request_inthroughput=1.5),
                                  "llama-3.1-8b", "h100-sxm", 1)
    assert (run.mean_ttft_ms, run.mean_itl_ms, run.p99_ttft_ms, run.max_concurrency) == (None, None, None, None)
    assert run.achieved_requests_per_s == 1.5


def test_an_infinite_burstiness_sends_at_even_gaps(tmp_path):
    from infersim.serving import arrivals_of
    (run,) = read_vllm_bench_json(bench_json(tmp_path, burstiness=math.inf), "llama-3.1-8b", "h100-sxm", 1)
    # vllm bench serve with --burstiness inf waits 1 / rate between sends: 3 requests at 2/s at 0, 0.5 and 1 s
    assert run.burstiness == math.inf and list(arrivals_of(run, seed=0)) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("data, message", [
    ({"time_to_first_token": {"unit": "ms", "avg": 29.4}, "request_throughput": {"avg": 3.5}},
     "x.json: is a GenAI-Perf or AIPerf profile export, which compare-serving does not read"),
    ([{"benchmark": {"name": "vLLM benchmark"}, "model": {"name": "m"}, "metric": {"name": "median_ttft_ms"}}],
     "x.json: is vLLM's copy of a result in the PyTorch benchmark format"),
    ([1, 2], "x.json: must hold the JSON object vllm bench serve --save-result writes (or one a line"),
    ({"completed": 3, "total_input_tokens": 350, "total_output_tokens": 45, "mean_ttft_ms": 30.0,
      "output_throughput": 480.0}, "x.json: request_rate: is empty or missing"),
    ({"completed": 3, "total_input_tokens": 350, "total_output_tokens": 45, "request_rate": 2, "best_of": 2,
      "output_throughput": 480.0}, "x.json: best_of: samples several sequences a request, which compare-serving "
                                   "simulates as one: compare a run of one, got 2"),
])
def test_what_is_not_a_vllm_bench_result_is_named(tmp_path, data, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as info:
        read_vllm_bench_json(path, "llama-3.1-8b", "h100-sxm", 1)
    assert str(info.value).startswith(message)


def test_a_sweeps_runs_a_few_tokens_apart_are_one_series():
    from dataclasses import replace

    from infersim.serving import series_keys
    base = run_at(2.0, 20.0)
    # outputs ending on EOS average 206 then 205 tokens: one series, named by its first run; 10% longer is another
    runs = [replace(base, output_tokens=206), replace(base, output_tokens=205, request_rate_per_s=8.0),
            replace(base, output_tokens=227)]
    assert series_keys(runs) == ["m h100-sxm TP1 100/206", "m h100-sxm TP1 100/206", "m h100-sxm TP1 100/227"]


def test_a_run_on_sglangs_random_dataset_is_simulated_with_its_spread_of_lengths(tmp_path):
    # bench_serving.py draws each length uniformly from int(L x ratio) to L: input 1024 at ratio 0.5 takes the
    # 513 whole numbers 512..1024, deviation sqrt((513^2 - 1) / 12) = 148.09; output 128 the 65 from 64,
    # sqrt((65^2 - 1) / 12) = 18.76
    (run,) = read_vllm_bench_json(bench_json(tmp_path, dataset_name="random", random_input_len=1024,
                                             random_output_len=128, random_range_ratio=0.5),
                                  "llama-3.1-8b", "h100-sxm", 1)
    assert run.input_tokens_stddev == pytest.approx(148.09, abs=0.01)
    assert run.output_tokens_stddev == pytest.approx(18.76, abs=0.01)
    # ratio 1 is fixed lengths; another dataset (sharegpt) records the random arguments unused
    for fields in ({"random_range_ratio": 1.0}, {"dataset_name": "sharegpt"}):
        (run,) = read_vllm_bench_json(bench_json(tmp_path, **{"dataset_name": "random", "random_input_len": 1024,
                                                              "random_output_len": 128, **fields}),
                                      "llama-3.1-8b", "h100-sxm", 1)
        assert (run.input_tokens_stddev, run.output_tokens_stddev) == (0.0, 0.0)
