"""A run that cannot fit in this machine's memory is refused before anything is allocated."""
import pytest

from infersim import budget
from infersim.cli import main
from infersim.roofline.errors import SpecError


def test_ten_million_requests_do_not_fit_in_24_gb():
    # 250 MB to start + 10,000,000 x 8 KB + 1 replica x 8 KB = 80.25 GB
    with pytest.raises(SpecError) as info:
        budget.check_memory(10_000_000, 1, available_bytes=24e9)
    assert str(info.value) == ("workload.num_requests: 10,000,000 requests x 1 replica need ~80 GB, more than this "
                               "machine's 24 GB available; simulate fewer requests")


def test_a_thousand_requests_fit():
    budget.check_memory(1000, 1, available_bytes=1e9)  # 258 MB


def test_when_replicas_dominate_the_estimate_the_replicas_are_named():
    # 250 MB + 10 x 8 KB + 10,000 x 8 KB = 330.08 MB
    with pytest.raises(SpecError, match=r"^cluster.replicas: 10 requests x 10,000 replicas need ~0.33 GB, more than "
                                        r"this machine's 0.3 GB"):
        budget.check_memory(10, 10_000, available_bytes=0.3e9)


def test_the_machine_has_some_memory_available():
    assert budget.available_memory_bytes() > 0


def test_infersim_run_refuses_a_run_too_large_for_the_machine_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 1e9)
    scenario = tmp_path / "big.yaml"
    scenario.write_text("model: tiny-llama\nhardware: a100-sxm-80gb\nworkload:\n  num_requests: 1e6\n"
                        "  arrival: {process: poisson, rate_per_s: 5}\n  prompt_tokens: 100\n  output_tokens: 20\n")
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    # 250 MB + 1,000,000 x 8 KB + 1 replica x 8 KB = 8.250008 GB
    assert capsys.readouterr().err == ("infersim: error: big.yaml: workload.num_requests: 1,000,000 requests x 1 "
                                       "replica need ~8.3 GB, more than this machine's 1 GB available; simulate "
                                       "fewer requests\n")
    assert not (tmp_path / "out").exists()
