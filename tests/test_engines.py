"""Engine presets: the defaults each engine picks on a GPU, as its code does (sources in sim/engines.py)."""
import pytest

from infersim.roofline import get_hardware
from infersim.sim.engines import ENGINES
from infersim.sim.schedulers import SCHEDULERS


@pytest.mark.parametrize("gpu,tokens,seqs", [("h100-sxm", 8192, 1024), ("h200", 8192, 1024),
                                              ("a100-sxm-80gb", 2048, 256), ("l40s", 2048, 256)])
def test_vllm_v1_sizes_its_token_budget_by_the_gpu_as_get_batch_defaults_does(gpu, tokens, seqs):
    # >= 70 GiB and not an A100: 8192 tokens and 1024 sequences; the A100 and smaller GPUs: 2048 and 256
    d = ENGINES["vllm-v1"].defaults(get_hardware(gpu))
    assert (d.max_num_batched_tokens, d.max_num_seqs) == (tokens, seqs)
    assert d.kernels.graph_max_batch == min(512, 2 * seqs) and d.overhead.overlaps_gpu


def test_sglang_chunks_by_gpu_memory_and_keeps_a_fixed_reserve():
    # 80 GB H100: chunk 8192, (80 - 12) / 80 = 0.85 of memory; 24 GB L4: chunk 4096
    h100, l4 = (ENGINES["sglang"].defaults(get_hardware(g)) for g in ("h100-sxm", "l4"))
    assert (h100.chunk_tokens, h100.memory_utilization, h100.block_size_tokens) == (8192, pytest.approx(0.85), 1)
    assert l4.chunk_tokens == 4096


def test_every_preset_names_a_registered_scheduler_and_only_the_pre_overlap_engines_run_the_host_in_series():
    for name, preset in ENGINES.items():
        d = preset.defaults(get_hardware("h100-sxm"))
        assert d.scheduler in SCHEDULERS
        assert d.overhead.overlaps_gpu == (name not in ("vllm-v0", "trtllm-cpp"))
    assert ENGINES["trtllm"].defaults(get_hardware("h100-sxm")).kernels.graph_max_batch == 128


def test_infersim_engines_lists_each_preset_with_its_defaults_on_the_gpu():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "infersim.cli", "engines", "--hardware", "a100-sxm-80gb"],
                         capture_output=True, text=True, check=True).stdout
    v1 = next(line for line in out.splitlines() if line.startswith("vllm-v1"))
    assert "2048" in v1 and "256" in v1 and "overlapped" in v1  # V1 on an A100: 2048 tokens, 256 sequences
    assert all(name in out for name in ENGINES)
