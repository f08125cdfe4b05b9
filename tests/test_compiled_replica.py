"""The compiled replica loop (sim/compiled_replica.py) tells a run exactly as the SimPy replicas do: the same
request table, timeline and summary, where it applies; where it does not, the SimPy replicas run."""
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infersim.roofline import StepOptions, get_hardware, get_model
from infersim.roofline.kernel_set import KernelSet
from infersim.roofline.speculative import AcceptanceModel, SpeculativeSpec
from infersim.sim import compiled_replica
from infersim.sim.cluster import Colocated
from infersim.sim.engines import preset_config
from infersim.sim.replica import EngineOverhead
from infersim.sim.run import KVCacheSpec, RunConfig, requests_from, simulate
from infersim.sim.schedulers import SchedulerLimits
from infersim.sim.workload import Workload

MODEL, GPU = get_model("llama-3.1-8b"), get_hardware("h100-sxm")


def _workload(n: int, rate: float, seed: int = 0, prompt: float = 800, output: float = 200) -> Workload:
    rng = np.random.default_rng(seed)
    return Workload(np.cumsum(rng.exponential(1 / rate, n)),
                    np.clip(rng.lognormal(np.log(prompt), 0.8, n), 16, 6000).astype(int),
                    np.clip(rng.lognormal(np.log(output), 0.8, n), 1, 1500).astype(int))


def _vllm_v1(**fields):
    return dataclasses.replace(preset_config("vllm-v1", MODEL, GPU, StepOptions(), 8192), **fields)


def _kv(cfg, **fields):
    return dataclasses.replace(cfg, kv_cache=dataclasses.replace(cfg.kv_cache, **fields))


def _both(cfg, workload, monkeypatch):
    """The run through the compiled loop, and through SimPy replicas."""
    assert compiled_replica.applies(cfg, requests_from(workload))
    compiled = simulate(cfg, requests_from(workload))
    with monkeypatch.context() as m:
        m.setattr(compiled_replica, "applies", lambda cfg, requests: False)
        simpy_run = simulate(cfg, requests_from(workload))
    return compiled, simpy_run


def _assert_same(compiled, simpy_run):
    for column, values in simpy_run.table.items():
        np.testing.assert_array_equal(compiled.table[column], values, err_msg=column)
    assert compiled.timeline.keys() == simpy_run.timeline.keys()
    for column, values in simpy_run.timeline.items():
        np.testing.assert_array_equal(compiled.timeline[column], values, err_msg=column)
    # the summed FLOPs and bytes may differ in their last bits (sums in another order across replicas)
    measured, told = _flat(compiled.summary), _flat(simpy_run.summary)
    assert measured.keys() == told.keys()
    for key, value in told.items():
        assert measured[key] == (value if value is None else pytest.approx(value, rel=1e-12)), key


def _flat(summary: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in summary.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


CASES = {
    # one replica under load: mixed steps, decode runs cut by arrivals, CUDA graphs up to 512 sequences
    "vllm-v1 under load": (_vllm_v1(), _workload(600, 12.0)),
    # four replicas behind round robin, a burst at t = 0 (every arrival seen by the first plan)
    "round robin, burst": (_vllm_v1(cluster=Colocated(4)),
                           Workload(np.zeros(200), np.full(200, 700), np.full(200, 60))),
    # a cache of 500 blocks: preemptions (recomputed; V1 admits no one in a step that preempted)
    "vllm-v1, KV pressure": (_kv(_vllm_v1(), num_blocks=500), _workload(400, 20.0, seed=1)),
    # Sarathi-Serve: a 512-token budget chunks most prompts over several steps; it admits after preempting
    "sarathi, KV pressure": (_kv(dataclasses.replace(_vllm_v1(), scheduler="sarathi",
                                                     limits=dataclasses.replace(_vllm_v1().limits, chunk_tokens=512)),
                                 num_blocks=700,
                                 watermark_fraction=0.01), _workload(400, 15.0, seed=2)),
    # prompts past max_model_len are refused (their arrivals still cut decode runs) and one-token outputs
    # complete in their prefill step
    "refusals, one-token outputs": (_vllm_v1(limits=dataclasses.replace(_vllm_v1().limits, max_model_len=2048)),
                                    _workload(300, 10.0, seed=3, prompt=1200, output=3)),
    # whole graphs for decode batches of up to 8, piecewise ones for the rest up to 512 tokens, eager beyond
    "piecewise graphs": (_vllm_v1(kernels=dataclasses.replace(_vllm_v1().kernels, graph_max_batch=8)),
                         _workload(400, 12.0, seed=4, prompt=300)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_compiled_loop_tells_the_run_the_simpy_replicas_tell(case, monkeypatch):
    cfg, workload = CASES[case]
    compiled, simpy_run = _both(cfg, workload, monkeypatch)
    _assert_same(compiled, simpy_run)


def test_the_cases_exercise_what_they_claim(monkeypatch):
    """Each case above reaches the mechanism it is there for (else its equality would prove little)."""
    pressure, _ = _both(*CASES["vllm-v1, KV pressure"], monkeypatch)
    assert pressure.summary["preemptions"] > 0
    pieces, _ = _both(*CASES["piecewise graphs"], monkeypatch)
    timeline = pieces.timeline
    decode_only = timeline["prefill_tokens"] == 0
    assert np.any(decode_only & (timeline["batch_seqs"] > 8))  # decode runs replayed in pieces
    assert np.any((timeline["prefill_tokens"] > 0) & (timeline["prefill_tokens"] + timeline["decode_tokens"] <= 512))
    assert np.any(timeline["prefill_tokens"] + timeline["decode_tokens"] > 512)  # and steps too large for them
    chunked, _ = _both(*CASES["sarathi, KV pressure"], monkeypatch)
    assert chunked.summary["preemptions"] > 0 and chunked.timeline["prefill_tokens"].max() <= 512
    assert np.any((chunked.table["prompt_tokens"] > 512) & (chunked.table["state"] == "done"))  # chunked
    refused, _ = _both(*CASES["refusals, one-token outputs"], monkeypatch)
    assert refused.summary["requests_rejected"] > 0
    assert np.any((refused.table["output_tokens"] == 1) & (refused.table["state"] == "done"))


@pytest.mark.parametrize("change", ["closed loop", "swap", "trtllm", "speculative", "two samples", "prefix hits",
                                    "unsorted", "no flash attention", "least outstanding"])
def test_runs_it_does_not_tell_exactly_go_to_the_simpy_replicas(change):
    cfg, workload = _vllm_v1(), _workload(50, 5.0)
    requests = requests_from(workload)
    if change == "closed loop":
        cfg = dataclasses.replace(cfg, concurrency=4)
    elif change == "swap":
        cfg = dataclasses.replace(cfg, scheduler="sarathi", limits=dataclasses.replace(cfg.limits, preemption="swap"))
    elif change == "trtllm":
        cfg = dataclasses.replace(cfg, scheduler="trtllm")
    elif change == "speculative":
        cfg = dataclasses.replace(cfg, speculative=SpeculativeSpec("ngram", 3, AcceptanceModel((0.5,))))
    elif change == "two samples":
        requests = requests_from(workload, num_seqs=2)
    elif change == "prefix hits":
        requests = requests_from(workload, prefix_id=np.zeros(50, dtype=int), prefix_tokens=64)
    elif change == "unsorted":
        requests = requests[::-1]
    elif change == "no flash attention":
        cfg = dataclasses.replace(cfg, options=dataclasses.replace(cfg.options, flash_attention=False))
    elif change == "least outstanding":
        cfg = dataclasses.replace(cfg, cluster=Colocated(2, "least_outstanding"))
    assert not compiled_replica.applies(cfg, requests)
    assert compiled_replica.applies(_vllm_v1(), requests_from(workload))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scheduler=st.sampled_from(["vllm-v1", "sarathi"]), block_size=st.sampled_from([1, 8, 16]),
       num_blocks=st.integers(40, 400), budget=st.integers(16, 1024), max_seqs=st.integers(1, 16),
       rate=st.floats(1.0, 500.0), replicas=st.integers(1, 3), graphs=st.integers(0, 8), pieces=st.integers(0, 1024),
       overlapped=st.booleans(), millisecond_stamps=st.booleans(), padded=st.booleans(), in_tokens=st.booleans(),
       seed=st.integers(0, 1000))
def test_random_small_runs_are_told_alike(scheduler, block_size, num_blocks, budget, max_seqs, rate, replicas, graphs,
                                          pieces, overlapped, millisecond_stamps, padded, in_tokens, seed):
    """Tiny caches, budgets and batch limits on a tiny model: preemptions, chunked prompts, refusals and
    CUDA graphs, whole (padded to captured sizes or not, counting sequences or tokens) and piecewise, in every
    mix; arrivals stamped to the millisecond, as traces are, reach an idle replica when SimPy's clock gets there
    (a bit off the stamp: `_replay_clock`)."""
    kernels = KernelSet(graph_max_batch=graphs, piecewise_max_tokens=pieces, graph_counts_tokens=in_tokens)
    if padded and graphs:
        kernels = kernels.padded_capture(tuple(sorted({b for b in (1, 2, 4, 8) if b <= graphs} | {graphs})))
    cfg = RunConfig(get_model("tiny-llama"), get_hardware("a100-sxm-80gb"), scheduler=scheduler,
                    limits=SchedulerLimits(max_num_seqs=max_seqs, max_num_batched_tokens=budget, max_model_len=512,
                                           chunk_tokens=budget),
                    kv_cache=KVCacheSpec(block_size_tokens=block_size, num_blocks=num_blocks),
                    # host times off the millisecond grid: a host-bound step of 1e-4 + 5e-6 s can end exactly on a
                    # millisecond-stamped arrival, the one tie the two tell apart (sim/compiled_replica.py)
                    overhead=EngineOverhead(1.03e-4, 5.7e-6, overlaps_gpu=overlapped),
                    kernels=kernels, cluster=Colocated(replicas))
    rng = np.random.default_rng(seed)
    arrival_s = np.cumsum(rng.exponential(1 / rate, 60))
    workload = Workload(np.round(arrival_s, 3) if millisecond_stamps else arrival_s,
                        rng.integers(1, 300, 60, endpoint=True), rng.integers(1, 200, 60, endpoint=True))
    with pytest.MonkeyPatch.context() as monkeypatch:
        compiled, simpy_run = _both(cfg, workload, monkeypatch)
    _assert_same(compiled, simpy_run)


def test_an_idle_replica_wakes_when_simpys_clock_reaches_the_arrival():
    # SimPy's arrival process reaches 0.965 from 0.059 by a timeout of 0.965 - 0.059 = 0.906: 0.059 + 0.906 is
    # 0.9649999999999999 in doubles, and the idle replica is first scheduled then, as SimPy's is
    assert 0.059 + (0.965 - 0.059) == 0.9649999999999999
    cfg = RunConfig(get_model("tiny-llama"), get_hardware("a100-sxm-80gb"), scheduler="vllm-v1")
    workload = Workload(np.array([0.059, 0.965]), np.array([20, 20]), np.array([3, 3]))
    with pytest.MonkeyPatch.context() as monkeypatch:
        compiled, simpy_run = _both(cfg, workload, monkeypatch)
    assert compiled.table["first_scheduled_s"][1] == simpy_run.table["first_scheduled_s"][1] == 0.9649999999999999
