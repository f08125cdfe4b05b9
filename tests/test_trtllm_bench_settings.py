"""trtllm-bench's engine tuning as benchmarks/trtllm_max_throughput.py restates it (tensorrt_llm/bench/build/
tuning.py `calc_engine_setting`, `finetune_setting`), worked by hand."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "trtllm_max_throughput", Path(__file__).resolve().parent.parent / "benchmarks" / "trtllm_max_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_llama_8b_fp8_on_an_h100_at_128_2048():
    # 79.65 GiB (81,559 MiB) - 8.03 GB of FP8 weights = 71.62; x 0.95 / (2 x 32 layers x 8 KV heads x 128 x 1 B
    # = 6.10e-5 GiB a token) = 1,114,700 tokens / 2,176 a request = 512.3 requests: below 1024, rounded up to
    # 128s: 640; tokens 512.3 x (1 + 128/2048) = 544 -> at least 2048
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, 81559 / 1024, 1, 128, 2048, fp8=True) == (640, 2048)


def test_short_requests_cap_the_batch_at_4096_and_long_prompts_raise_the_tokens():
    # 128/128: 1,114,700 / 256 = 4,354 requests, capped at 4096 (a multiple of 256); tokens 4096 x 2 = 8192
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, 81559 / 1024, 1, 128, 128, fp8=True) == (4096, 8192)
    # 2048/128: 512.3 requests -> 640; tokens 512.3 x 17 = 8,709 -> above 8192, rounded up to 1024s: 9216
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, 81559 / 1024, 1, 2048, 128, fp8=True) == (640, 9216)
    # 20000/2000: 1,114,700 / 22,000 = 50.7 requests -> at least 64; tokens 50.7 x 11 = 557 -> at least 2048
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, 81559 / 1024, 1, 20000, 2000, fp8=True) == (64, 2048)


def test_a_shortened_run_keeps_the_pages_batch():
    # Mixtral TP8 on an H200 at 128/4096: the page's 1,500 requests sent at once decode together under a max
    # batch of 4096; a quarter (375) would time batches of 375, so all 1,500 are simulated
    assert bench.requests_to_simulate(1500, 4096, 0.25) == 1500
    # 8B at 128/128: 30,000 requests, max batch 4096: a quarter is 7,500, below 4 x 4096 = 16,384 batches' worth
    assert bench.requests_to_simulate(30000, 4096, 0.25) == 16384
    # 70B at 20000/2000 with a max batch of 64: a quarter of 1,000 (250) is under 4 x 64 = 256
    assert bench.requests_to_simulate(1000, 64, 0.25) == 256
    # many small batches: the quarter stands
    assert bench.requests_to_simulate(30000, 640, 0.25) == 7500
