"""trtllm-bench's engine tuning as benchmarks/trtllm_max_throughput.py restates it (tensorrt_llm/bench/build/
tuning.py `calc_engine_setting`, `finetune_setting`), worked by hand."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "trtllm_max_throughput", Path(__file__).resolve().parent.parent / "benchmarks" / "trtllm_max_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


H100_GIB = 81559 / 1024


def test_llama_8b_fp8_on_an_h100_at_128_2048():
    # 79.647 GiB (81,559 MiB) - 8.03e9 B of FP8 weights (7.479 GiB) = 72.169; x 0.95 / (2 x 32 layers x 8 KV heads
    # x 128 x 1 B = 6.1035e-5 GiB a token) = 1,123,295 tokens / 2,176 a request = 516.2 requests: below 1024,
    # rounded up to 128s: 640; tokens 516.2 x (1 + 128/2048) = 548 -> at least 2048
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, H100_GIB, 1, 128, 2048, 1, 1) == (640, 2048)


def test_short_requests_cap_the_batch_at_4096_and_long_prompts_raise_the_tokens():
    # 128/128: 1,123,295 / 256 = 4,388 requests, capped at 4096 (a multiple of 256); tokens 4096 x 2 = 8192
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, H100_GIB, 1, 128, 128, 1, 1) == (4096, 8192)
    # 2048/128: 516.2 requests -> 640; tokens 516.2 x 17 = 8,776 -> above 8192, rounded up to 1024s: 9216
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, H100_GIB, 1, 2048, 128, 1, 1) == (640, 9216)
    # 20000/2000: 1,123,295 / 22,000 = 51.1 requests -> at least 64; tokens 51.1 x 11 = 562 -> at least 2048
    assert bench.trtllm_bench_settings(8.03e9, 32, 8, 128, H100_GIB, 1, 20000, 2000, 1, 1) == (64, 2048)


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


def test_nvfp4_weights_count_0_28_bytes_and_the_pytorch_backend_fits_a_prompt_beside_the_batch():
    # Llama-3.3-70B (70.6e9 parameters) in NVFP4 on one B200 (183,359 MiB = 179.061 GiB): the tool counts the
    # packed weights and their FP8 scales at 0.5 B a stored element, (1/2 + 1/16) x 0.5 = 0.28125 B a weight:
    # 18.493 GiB; KV in FP8, 2 x 80 layers x 8 heads x 128 x 1 B = 1.52588e-4 GiB a token; (179.061 - 18.493) x
    # 0.95 / 1.52588e-4 = 999,689 tokens. At 1000/1000: 499.8 requests -> 512 (128s); tokens 499.8 x 2 = 1,000
    # -> at least 2048, above the prompt plus the batch (1,512)
    b200_gib, nvfp4 = 183359 / 1024, bench.WEIGHT_BYTES["nvfp4"]
    assert nvfp4 == 0.28125
    assert bench.trtllm_bench_settings(70.6e9, 80, 8, 128, b200_gib, 1, 1000, 1000, nvfp4, 1, False) == (512, 2048)
    # 5000/500: 181.8 requests -> 192 (32s); tokens 181.8 x 11 = 1,999 -> 2048; without chunked prefill raised to
    # the prompt plus the batch, 5,000 + 192 = 5,192; with it left at 2048 (the prompt goes in chunks)
    assert bench.trtllm_bench_settings(70.6e9, 80, 8, 128, b200_gib, 1, 5000, 500, nvfp4, 1, False) == (192, 5192)
    assert bench.trtllm_bench_settings(70.6e9, 80, 8, 128, b200_gib, 1, 5000, 500, nvfp4, 1) == (192, 2048)


def test_the_v0_20_table_as_transcribed():
    # NVIDIA's v0.20 perf-overview: 167 runs of its Llama tables; B200 TP8 at 20000/2000 3,429.03 tokens/s, H100
    # TP1 70B at 128/128 3,128.33; 1024/2048 has no published request count and takes 1000/2000's 1,500
    runs = {run.label: run for run in bench.read_runs(bench.TABLES["v0.20"].path)}
    assert len(runs) == 167
    assert runs["llama-3.1-70b b200 TP8 nvfp4 20000/2000"].output_tokens_per_s == 3429.03
    assert runs["llama-3.1-70b h100-sxm TP1 fp8 128/128"].output_tokens_per_s == 3128.33
    assert {run.num_requests for run in runs.values() if run.input_tokens == 1024} == {1500}
    assert runs["llama-3.1-8b h200 TP1 fp8 128/128"].num_requests == 30000


def test_every_published_row_names_a_registry_model_gpu_and_quantization():
    from infersim.roofline import get_hardware, get_model
    from infersim.roofline.quant import get_quant
    for name, table in bench.TABLES.items():
        runs = bench.read_runs(table.path)
        assert runs, name
        for run in runs:
            get_model(run.model), get_hardware(run.hardware), get_quant(run.precision)
            assert run.precision in bench.WEIGHT_BYTES and run.output_tokens_per_s > 0, run.label


def test_trtllm_bench_0_20_captures_padded_graphs_at_its_own_sizes():
    # 1, 2, 4; 8-128 by 8 (16 sizes); 256, 512, 1024, 2048; the max batch 4096: 24 sizes (TensorRT-LLM #6294's log)
    sizes = bench.trtllm_bench_graph_sizes(4096)
    assert len(sizes) == 24 and sizes[:5] == (1, 2, 4, 8, 16) and sizes[-6:] == (128, 256, 512, 1024, 2048, 4096)
    # a max batch of 2,816: the powers of two below it, then 2,816; of 96: 8-96 by 8
    assert bench.trtllm_bench_graph_sizes(2816)[-4:] == (512, 1024, 2048, 2816)
    assert bench.trtllm_bench_graph_sizes(96) == (1, 2, 4) + tuple(range(8, 97, 8))
