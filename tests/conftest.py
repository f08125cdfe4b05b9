from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "data" / "profiles" / "a100"


@pytest.fixture
def profile_dir() -> Path:
    return PROFILES


@pytest.fixture
def engine_scenario(tmp_path):
    """A tiny scenario file whose engine block is the vllm-v1 preset plus `keys` (e.g. ", fusions: []")."""
    def write(keys: str = "", tensor_parallel: int = 1) -> Path:
        path = tmp_path / "s.yaml"
        path.write_text(f"model: tiny-llama\nhardware: a100-sxm-80gb\nparallelism: {{tensor_parallel: {tensor_parallel}}}\n"
                        "workload: {num_requests: 2, arrival: {process: poisson, rate_per_s: 1}, prompt_tokens: 10, "
                        "output_tokens: 2}\n"
                        f"engine: {{preset: vllm-v1{keys}}}\n")
        return path
    return write
