"""What a run writes and prints holds no NaN or inf, and claims nothing about an SLO that was not set."""
import json
from types import SimpleNamespace

import numpy as np

from infersim.report import figure, run_summary_table, write_run

NAN = float("nan")
EMPTY_STATS = {"mean": NAN, "p50": NAN, "p90": NAN, "p99": NAN}


def summary(**changes) -> dict:
    base = {key: dict(EMPTY_STATS) for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queueing_s")}
    base.update(requests_completed=0, requests_rejected=3, requests_unfinished=0, preemptions=0, simulated_time_s=0.0,
                throughput_tokens_per_s=0.0, throughput_requests_per_s=0.0, goodput_requests_per_s=None,
                slo_attainment=None, batch_size_mean=0.0, kv_utilization_mean=0.0, kv_utilization_peak=0.0,
                model_flops_utilization=0.0, model_bandwidth_utilization=0.0)
    return {**base, **changes}


def test_a_figure_without_a_value_is_a_dash():
    assert [figure(v, ".1f", 1e3) for v in (None, NAN, float("inf"), 0.0123)] == ["-", "-", "-", "12.3"]


def test_without_an_slo_the_summary_says_so_instead_of_a_percentage():
    text = run_summary_table(summary())
    assert "requests/s; no SLO set" in text and "within SLO" not in text and "nan" not in text


def test_with_an_slo_the_summary_gives_goodput_and_attainment():
    text = run_summary_table(summary(goodput_requests_per_s=1.5, slo_attainment=0.75))
    assert "goodput 1.50 requests/s (75.0% within SLO)" in text


def test_write_run_writes_strict_json_and_leaves_missing_times_empty(tmp_path):
    result = SimpleNamespace(summary=summary(), table={"id": np.array([0, 1]), "ttft_s": np.array([0.25, NAN])},
                             timeline={"start_s": np.zeros(0)})
    paths = write_run(result, tmp_path)
    data = json.loads(paths["summary"].read_text(), parse_constant=lambda name: 1 / 0)
    assert data["ttft_s"]["p50"] is None and data["slo_attainment"] is None
    assert paths["requests"].read_text().splitlines() == ["id,ttft_s", "0,0.25", "1,"]
    assert paths["timeline"].read_text().splitlines() == ["start_s"]
