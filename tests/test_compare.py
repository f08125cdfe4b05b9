"""`infersim compare`: scenarios simulated side by side, each figure with its ratio to the first scenario's."""
import json
import re

import pytest
import yaml

from infersim.cli import main


def scenario(folder, file, name, **sections):
    """A tiny scenario (tiny-llama on an L4, 60 requests) with `sections` replacing its defaults."""
    spec = {"name": name, "model": "tiny-llama", "hardware": "l4",
            "workload": {"num_requests": 60, "arrival": {"process": "poisson", "rate_per_s": 50},
                         "prompt_tokens": {"kind": "uniform", "low": 20, "high": 200},
                         "output_tokens": {"kind": "uniform", "low": 5, "high": 40}},
            "slo": {"ttft_s": 0.5, "tpot_s": 0.05}, "seed": 1, **sections}
    path = folder / file
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def compare(capsys, *argv):
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> dict:
    """The printed table's rows by scenario name: its cells, split where two spaces or more separate them."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario "))
    return {cells[0]: cells[1:] for cells in (re.split(r"  +", line.strip()) for line in lines[start + 2:])}


def test_a_renamed_copy_of_the_first_scenario_has_every_ratio_one(capsys, tmp_path):
    a = scenario(tmp_path, "a.yaml", "first")
    b = scenario(tmp_path, "b.yaml", "copy")
    code, out, _ = compare(capsys, a, b, "--jobs", "1", "--json", "--no-plot", "--out", str(tmp_path / "o"))
    rows = json.loads(out)["scenarios"]
    assert code == 0 and [r["name"] for r in rows] == ["first", "copy"]
    for row in rows:  # the first's ratios are to itself; the copy simulates the same requests with the same seed
        assert {key: f["ratio"] for key, f in row["figures"].items()} == {key: 1.0 for key in row["figures"]}
    assert rows[0]["figures"] == rows[1]["figures"]


def test_kv_capacity_is_blocks_times_block_size_and_tp2_doubles_the_gpus(capsys, tmp_path):
    small = scenario(tmp_path, "small.yaml", "blocks16", kv_cache={"num_blocks": 500, "block_size": 16})
    big = scenario(tmp_path, "big.yaml", "blocks32-tp2", kv_cache={"num_blocks": 500, "block_size": 32},
                   parallelism={"tensor_parallel": 2})
    code, out, _ = compare(capsys, small, big, "--jobs", "1", "--no-plot", "--out", str(tmp_path / "o"))
    rows = table_rows(out)
    # 500 blocks x 16 tokens = 8,000 tokens; 500 x 32 = 16,000 tokens, twice as many; TP2 is 2 GPUs to 1.
    assert code == 0 and rows["blocks16"][-3:][0] == "8,000" and rows["blocks16"][-1] == "1"
    assert rows["blocks32-tp2"][-3] == "16,000 (2.00x)" and rows["blocks32-tp2"][-1] == "2 (2.00x)"


def test_parallel_workers_give_the_numbers_of_serial_runs(capsys, tmp_path):
    paths = [scenario(tmp_path, "a.yaml", "a"),
             scenario(tmp_path, "b.yaml", "b", seed=7, scheduler={"name": "sarathi", "chunk_tokens": 64}),
             scenario(tmp_path, "c.yaml", "c", parallelism={"tensor_parallel": 2})]
    _, serial, _ = compare(capsys, *paths, "--jobs", "1", "--json", "--no-plot", "--out", str(tmp_path / "s"))
    code, parallel, _ = compare(capsys, *paths, "--jobs", "3", "--json", "--no-plot", "--out", str(tmp_path / "p"))
    assert code == 0 and json.loads(parallel) == json.loads(serial)
    assert len({json.dumps(s["figures"]) for s in json.loads(serial)["scenarios"]}) == 3  # three different runs


def test_out_writes_json_markdown_and_plot_whose_numbers_are_the_tables(capsys, tmp_path):
    a = scenario(tmp_path, "a.yaml", "rate50")
    b = scenario(tmp_path, "b.yaml", "rate100", workload={
        "num_requests": 60, "arrival": {"process": "poisson", "rate_per_s": 100},
        "prompt_tokens": {"kind": "uniform", "low": 20, "high": 200}, "output_tokens": 30})
    out_dir = tmp_path / "out"
    code, out, err = compare(capsys, a, b, "--jobs", "2", "--out", str(out_dir))
    assert code == 0 and sorted(p.name for p in out_dir.iterdir()) == ["compare.json", "compare.md", "compare.png"]
    assert (out_dir / "compare.png").stat().st_size > 10_000 and "wrote " in err
    data = json.loads((out_dir / "compare.json").read_text())
    assert data["scenarios"][0]["summary"]["requests_completed"] == 60 and data["scenarios"][1]["path"] == b
    printed = table_rows(out)
    for scenario_json in data["scenarios"]:
        cells = printed[scenario_json["name"]]
        assert len(cells) == len(data["columns"])
        for column, cell in zip(data["columns"], cells):
            figure = scenario_json["figures"][column["key"]]
            shown = re.fullmatch(r"([\d,.]+)(?: \(([\d.]+)x\))?", cell)
            decimals = len(shown[1].split(".")[1]) if "." in shown[1] else 0
            assert float(shown[1].replace(",", "")) == pytest.approx(figure["value"], abs=0.51 * 10 ** -decimals)
            if scenario_json["name"] == "rate50":
                assert shown[2] is None and figure["ratio"] == 1.0
            else:
                assert float(shown[2]) == pytest.approx(figure["ratio"], abs=0.0051)
    markdown = (out_dir / "compare.md").read_text()
    assert "| rate100 | " + " | ".join(printed["rate100"]) + " |" in markdown


def test_a_scenario_without_slo_has_no_goodput_and_no_ratio_to_it(capsys, tmp_path):
    a = scenario(tmp_path, "a.yaml", "no-slo", slo={})
    b = scenario(tmp_path, "b.yaml", "slo")
    code, out, _ = compare(capsys, a, b, "--jobs", "1", "--no-plot", "--out", str(tmp_path / "o"))
    goodput = table_rows(out)["slo"][7]
    assert code == 0 and table_rows(out)["no-slo"][7] == "-" and re.fullmatch(r"[\d.]+", goodput)


def test_progress_counts_scenarios_done(capsys, tmp_path):
    paths = [scenario(tmp_path, "a.yaml", "a"), scenario(tmp_path, "b.yaml", "b")]
    code, _, err = compare(capsys, *paths, "--jobs", "1", "--progress", "--no-plot", "--out", str(tmp_path / "o"))
    assert code == 0 and "1 of 2 scenarios done" in err and "2 of 2 scenarios done\n" in err


def one_line_error(capsys, *argv) -> str:
    code, out, err = compare(capsys, *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip().removeprefix("infersim: error: ")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_missing_scenario_file_is_named_in_one_line(capsys, tmp_path, jobs):
    a = scenario(tmp_path, "a.yaml", "a")
    message = one_line_error(capsys, a, str(tmp_path / "missing.yaml"), "--jobs", jobs, "--out", str(tmp_path / "o"))
    assert message == f"scenario: no such file, got '{tmp_path / 'missing.yaml'}'"


def test_a_bad_key_is_refused_before_any_run(capsys, tmp_path, monkeypatch):
    import infersim.compare
    monkeypatch.setattr(infersim.compare, "simulate_file", lambda path: pytest.fail("simulated first"))
    a = scenario(tmp_path, "a.yaml", "a")
    bad = scenario(tmp_path, "bad.yaml", "bad", parallelism={"tensor_parallel": 0})
    assert one_line_error(capsys, a, bad, "--jobs", "2", "--out", str(tmp_path / "o")).startswith(
        "bad.yaml: parallelism.tensor_parallel: ")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_error_inside_a_worker_process_is_reported_as_a_serial_run_reports_it(capsys, tmp_path, jobs):
    a = scenario(tmp_path, "a.yaml", "a")
    traced = scenario(tmp_path, "traced.yaml", "traced", workload={"trace": {"path": "nowhere.csv"}})
    assert one_line_error(capsys, a, traced, "--jobs", jobs, "--out", str(tmp_path / "o")) == (
        f"traced.yaml: workload.trace.path: no such file, got '{tmp_path / 'nowhere.csv'}'")


def test_one_scenario_is_not_a_comparison(capsys, tmp_path):
    a = scenario(tmp_path, "a.yaml", "a")
    assert one_line_error(capsys, a, "--out", str(tmp_path / "o")) == (
        f"SCENARIO.yaml: compare needs at least 2 scenario files (the first is the baseline), got '{a}'")


def test_scenarios_sharing_a_name_are_told_apart_by_their_files():
    from infersim.compare import ScenarioResult, distinct_names
    results = [ScenarioResult(path, name, "", {}, 16) for path, name in
               (("a/x.yaml", "probe"), ("b/y.yaml", "probe"), ("c.yaml", "base"), ("c.yaml", "base"))]
    assert [r.name for r in distinct_names(results)] == ["probe (a/x.yaml)", "probe (b/y.yaml)", "base (c.yaml) #3",
                                                         "base (c.yaml) #4"]
