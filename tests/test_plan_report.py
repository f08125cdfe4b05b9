"""The capacity-planning report shows plan.json's numbers and nothing else, says which candidate wins (or that
none does, and which comes closest), survives candidates that never ran, and renders in a real browser:
headless Chromium (Debian's package `chromium`) opens report.html, every plot loads and the ranking table
holds plan.json's values."""
import base64
import json
import re
import shutil
import struct
import subprocess
from itertools import dropwhile, takewhile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from infersim.plan_report import render_html, render_markdown, verdict, write_reports

FIXTURE = Path(__file__).parent / "data" / "plan_fixture.json"
PLOTS = {"latency_vs_load", "frontier", "cost", "operating_point", "roofline"}
# Ranking columns holding one number each: heading -> (plan.json field, the scale the report shows it at).
NUMBER_COLUMNS = {"rank": ("rank", 1), "GPUs": ("gpus", 1), "replicas": ("replicas", 1),
                  "roofline ceiling (req/s)": ("ceiling_rate_per_replica", 1), "$/h": ("cost_per_hour", 1),
                  "$/M output tokens": ("cost_per_million_output_tokens", 1),
                  "J/output token": ("energy_j_per_output_token", 1),
                  "memory headroom": ("memory_headroom_fraction", 100)}
NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def load_plan() -> dict:
    return json.loads(FIXTURE.read_text())


def by_name(plan: dict) -> dict:
    return {c["name"]: c for c in plan["candidates"]}


def markdown_table(text: str, section: str) -> list[dict]:
    """The pipe table under `## section` as a dict per row, keyed by heading."""
    lines = text.split(f"## {section}\n", 1)[1].splitlines()
    rows = list(takewhile(lambda line: line.startswith("|"), dropwhile(lambda line: not line.startswith("|"), lines)))
    split = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [dict(zip(split[0], cells)) for cells in split[2:]]


def assert_shows(cell: str, value: float) -> None:
    """`cell` shows `value` rounded to the digits it prints, and those are enough for 0.5% precision."""
    digits = NUMBER.search(cell).group().replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    half_unit = 0.5 * 10 ** -decimals
    assert abs(float(digits) - value) <= half_unit * (1 + 1e-9), (cell, value)
    assert value == int(value) and decimals == 0 or half_unit <= 0.005 * abs(value), (cell, value)


def test_every_number_in_the_markdown_ranking_is_plan_jsons_rounded():
    plan = load_plan()
    candidates = by_name(plan)
    rows = markdown_table(render_markdown(plan, {}), "Ranking")
    assert [row["candidate"] for row in rows] == ["a100-w4a16-tp1", "h100-fp8-tp1", "l40s-fp8-tp1", "l4-fp16-tp1"]
    for row in rows:
        cand = candidates[row["candidate"]]
        for heading, (field, scale) in NUMBER_COLUMNS.items():
            if cand.get(field) is None:
                assert row[heading] == "-"
            else:
                assert_shows(row[heading], cand[field] * scale)
        rate = cand.get("max_rate_per_replica")
        shown = NUMBER.findall(row["max rate per replica (req/s)"])
        if rate is None:
            assert row["max rate per replica (req/s)"] == "-"
        else:
            for cell, key in zip(shown, ("value", "low", "high"), strict=True):
                assert_shows(cell, rate[key])
        assert row["meets SLOs"] == ("yes" if cand["meets_slo"] else cand["status"])


def test_the_chosen_rows_figures_are_the_hand_worked_ones():
    # 40 req/s / 6.2 req/s per replica = 6.45 -> 7 replicas of one A100 at $1.79/GPU-h = $12.53/h; the target's
    # output is 40 req/s x 250 tokens x 3,600 s = 36 M tokens per hour, so $12.53 / 36 = $0.348 per million.
    row = markdown_table(render_markdown(load_plan(), {}), "Ranking")[0]
    assert (row["GPUs"], row["replicas"], row["$/h"], row["$/M output tokens"]) == ("7", "7", "$12.53", "$0.348")
    assert row["max rate per replica (req/s)"] == "6.20 (5.90–6.60)"  # seeds 5.9, 6.1, 6.6
    assert row["J/output token"] == "0.280"  # 7 GPUs x 400 W / (40 x 250 tokens/s) = 0.28 J
    assert row["why it loses"].startswith("chosen")


def test_the_verdict_names_the_cheapest_candidate_its_cost_and_gpus():
    assert verdict(load_plan()).startswith("Cheapest meeting the SLOs: a100-w4a16-tp1 at $12.53/h, 7 GPUs")


def infeasible_plan() -> dict:
    plan = load_plan()
    plan.update(chosen=None, feasible=False, closest="h100-fp8-tp1")
    for cand in plan["candidates"]:
        cand.update(meets_slo=False, rank=None)
    by_name(plan)["h100-fp8-tp1"]["reason"] = "p99 TPOT 115 ms > 100 ms at 10.6 req/s per replica"
    return plan


def test_an_infeasible_plan_says_so_and_names_the_closest_candidate_and_why():
    plan = infeasible_plan()
    assert verdict(plan) == ("No candidate meets the SLOs; closest: h100-fp8-tp1, because p99 TPOT 115 ms > 100 ms "
                             "at 10.6 req/s per replica.")
    md = render_markdown(plan, {})
    assert "closest configuration" not in md  # no plot here, hence no caption naming the focus
    assert '<p class="verdict infeasible">No candidate meets the SLOs; closest: h100-fp8-tp1' in render_html(plan, {})


def test_candidates_that_never_ran_leave_dashes_and_no_plots(tmp_path):
    plan = load_plan()
    keep = ("name", "model", "hardware", "tensor_parallel", "pipeline_parallel", "quantization", "engine", "mode",
            "gpus_per_replica", "price_per_gpu_hour", "power_w", "reason")
    plan["candidates"] = [{**{k: c[k] for k in keep}, "status": status}
                          for c, status in zip(plan["candidates"], ("infeasible", "error", "infeasible", "error"))]
    plan.update(chosen=None, closest=None, feasible=False)
    paths = write_reports(plan, tmp_path)
    assert set(paths) == {"html", "md"} and not list(tmp_path.glob("*.png"))
    rows = markdown_table(paths["md"].read_text(), "Ranking")
    assert {row["$/h"] for row in rows} == {row["max rate per replica (req/s)"] for row in rows} == {"-"}
    assert [row["meets SLOs"] for row in rows] == ["infeasible", "error", "infeasible", "error"]
    assert verdict(plan).startswith("No candidate meets the SLOs, and none comes close: h100-fp8-tp1: costs")


def test_only_the_plots_the_plan_has_data_for_are_drawn(tmp_path):
    plan = load_plan()
    chosen = by_name(plan)["a100-w4a16-tp1"]
    for key in ("load_curve", "frontier", "operating_point", "roofline"):
        chosen.pop(key)
    plan["candidates"] = [chosen]
    assert set(write_reports(plan, tmp_path)) == {"html", "md", "cost"}


def test_text_from_the_plan_is_escaped_in_html():
    plan = load_plan()
    by_name(plan)["h100-fp8-tp1"]["reason"] = "<b>TTFT</b> & co"
    page = render_html(plan, {})
    assert "&lt;b&gt;TTFT&lt;/b&gt; &amp; co" in page and "<b>TTFT</b>" not in page


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return write_reports(load_plan(), tmp_path_factory.mktemp("plan_report"))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which must follow the 8-byte signature (PNG spec, 5.2-5.3)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_write_reports_writes_and_returns_the_report_and_every_plot(report):
    assert set(report) == {"html", "md"} | PLOTS
    assert {p.name for p in report["html"].parent.iterdir()} == {p.name for p in report.values()}
    for name in PLOTS:
        width, height = png_size(report[name].read_bytes())
        assert width > 0 and height > 0
    for name in PLOTS:
        assert f"]({name}.png)" in report["md"].read_text()


def test_the_html_is_self_contained_with_every_plot_a_valid_embedded_png(report):
    page = report["html"].read_text()
    assert "http:" not in page and "https:" not in page and "<link" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(PLOTS)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        width, height = png_size(base64.b64decode(src.split(",", 1)[1]))
        assert width > 0 and height > 0


class Tables(HTMLParser):
    """The body's attributes and each <table id=...>'s rows: a row's attributes and its cells' attributes and
    text."""

    def __init__(self):
        super().__init__()
        self.body, self.tables, self.heading = {}, {}, ""
        self._table = self._row = self._cell = None
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "h1":
            self._in_h1 = True
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None and "data-candidate" in attrs:
            self._row = {"attrs": attrs, "cells": []}
            self._table.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = {"attrs": attrs, "text": ""}
            self._row["cells"].append(self._cell)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_h1:
            self.heading += data


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("headless Chromium is not installed: on Debian or Ubuntu `sudo apt-get install -y chromium` "
                "(.ci/run installs it)")


@pytest.fixture(scope="module")
def dom(report, tmp_path_factory) -> Tables:
    """report.html as headless Chromium leaves it after the load event (its DOM, dumped)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the budget lets onload run
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                           "--dump-dom", report["html"].as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    tables = Tables()
    tables.feed(done.stdout)
    return tables


def test_chromium_renders_the_report(dom):
    assert dom.heading == "Capacity plan: llama-3.1-8b chat at 40 req/s"
    assert set(dom.tables) == {"ranking", "configurations"}


def test_chromium_loads_every_image(dom):
    assert dom.body["data-images-total"] == str(len(PLOTS))
    assert dom.body.get("data-images-loaded") == str(len(PLOTS))  # set on load: images with naturalWidth > 0


def test_chromiums_ranking_table_holds_plan_jsons_values(dom):
    plan = load_plan()
    candidates = by_name(plan)
    rows = dom.tables["ranking"]
    assert [row["attrs"]["data-candidate"] for row in rows] == ["a100-w4a16-tp1", "h100-fp8-tp1", "l40s-fp8-tp1",
                                                                 "l4-fp16-tp1"]  # ranks 1, 2, 3, then no rank
    assert "chosen" in rows[0]["attrs"]["class"].split()
    for row in rows:
        cand = candidates[row["attrs"]["data-candidate"]]
        fields = [cell["attrs"]["data-field"] for cell in row["cells"]]
        assert {"rank", "name", "gpus", "replicas", "max_rate_per_replica", "ceiling_rate_per_replica",
                "cost_per_hour", "cost_per_million_output_tokens", "energy_j_per_output_token",
                "memory_headroom_fraction", "meets_slo", "reason"} <= set(fields)
        for cell in row["cells"]:
            assert json.loads(cell["attrs"]["data-value"]) == cand.get(cell["attrs"]["data-field"])
        text = {cell["attrs"]["data-field"]: cell["text"] for cell in row["cells"]}
        assert text["name"] == cand["name"]
        if cand.get("cost_per_hour") is None:
            assert text["cost_per_hour"] == "-"
        else:
            assert_shows(text["cost_per_hour"], cand["cost_per_hour"])


def test_the_inputs_say_how_long_each_simulation_ran():
    from infersim.plan_report import facts
    plan = {"target_rate_per_s": 10, "slo": {}, "workload": {"description": "poisson arrivals", "num_requests": 300,
                                                             "min_duration_s": 300.0, "max_requests": 20000}}
    assert facts(plan)[2] == ("workload: poisson arrivals, 300 requests per simulation, or as many as arrive in "
                              "300 s (at most 20,000)")
    trace = plan | {"workload": plan["workload"] | {"description": "trace t.csv", "min_duration_s": 0.0}}
    assert facts(trace)[2] == "workload: trace t.csv, 300 requests per simulation"
