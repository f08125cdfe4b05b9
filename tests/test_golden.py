"""Golden summaries: every shipped scenario, and variants that reach the simulator's other paths (swap
preemption, orca over paged blocks, pipeline parallelism, materialised attention, routers), must give the
`summary.json` committed under tests/golden/. A change that moves a number on purpose regenerates them in
the same commit and says why:

    INFERSIM_UPDATE_GOLDEN=1 pytest tests/test_golden.py
"""
import copy
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from infersim.scenario import Scenario, build_run
from infersim.sim.run import simulate

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SCENARIOS = sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))

# name -> (shipped scenario, keys overridden on it)
VARIANTS = {
    "overloaded-swap": ("overloaded", {"scheduler": {"preemption": "swap"}, "workload": {"num_requests": 300}}),
    "overloaded-sarathi-swap": ("overloaded", {"scheduler": {"name": "sarathi", "preemption": "swap"},
                                               "workload": {"num_requests": 300}}),
    "orca-paged": ("paged-vs-contiguous", {"scheduler": {"name": "orca"}, "kv_cache": {"allocator": "paged"},
                                           "workload": {"num_requests": 300}}),
    "default-pp2": ("default", {"parallelism": {"pipeline_parallel": 2}, "workload": {"num_requests": 500}}),
    "default-no-flash": ("default", {"engine": {"flash_attention": False}, "workload": {"num_requests": 300}}),
    "default-least-kv": ("default", {"cluster": {"replicas": 2, "router": "least_kv"},
                                     "workload": {"num_requests": 1000}}),
    "shared-prefix-uncached": ("shared-prefix", {"kv_cache": {"prefix_caching": False},
                                                 "workload": {"num_requests": 300}}),
    "chunked-prefill-vllm": ("chunked-prefill", {"scheduler": {"name": "vllm"}}),
    "static-small-batches": ("static-vs-continuous", {"scheduler": {"max_num_seqs": 8},
                                                      "workload": {"num_requests": 300}}),
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _summary(name: str) -> dict:
    stem, over = VARIANTS.get(name, (name, {}))
    path = REPO / "scenarios" / f"{stem}.yaml"
    data = _merge(yaml.safe_load(path.read_text()), over)
    cfg, requests = build_run(Scenario.model_validate(data), path.parent)
    return json.loads(json.dumps(simulate(cfg, requests).summary))


def _assert_same(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys differ"
        for key in want:
            _assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), f"{where}: {got} != NaN"
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-15), where
    else:
        assert got == want, where


@pytest.mark.parametrize("name", SCENARIOS + sorted(VARIANTS))
def test_summary_matches_its_golden_file(name):
    got = _summary(name)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("INFERSIM_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert path.is_file(), f"no golden summary for {name}: run INFERSIM_UPDATE_GOLDEN=1 pytest {__file__}"
    _assert_same(got, json.loads(path.read_text()), name)
