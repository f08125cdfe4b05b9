"""Simulate NVIDIA's published TensorRT-LLM online-serving runs (data/serving: H100, and H200 held out) under
each engine preset and write the comparison: benchmarks/results/serving/<gpu>-<preset>.json (every run,
predicted and measured) and <gpu>-<preset>.png (latency against request rate), with the error summary
printed; then the other engines' published runs (held-out spot checks) under their own presets:
spot-<file>.json and .png.

    python benchmarks/compare_serving.py [--presets trtllm-cpp trtllm vllm-v1 sglang vllm-v0]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["trtllm-cpp", "trtllm", "vllm-v1", "sglang", "vllm-v0"])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    serving = REPO / "data" / "serving"
    for gpu in ("h100", "h200"):
        for preset in args.presets:
            compare(serving / f"trtllm-v0.14-online-{gpu}.csv", preset, out, f"{gpu}-{preset}")
    for runs, preset in SPOT_CHECKS:
        compare(serving / runs, preset, out, f"spot-{runs.removesuffix('.csv')}")
    print(f"wrote {out}")


# other engines' published runs (data/serving/LICENSE.md), each under the preset of its engine
SPOT_CHECKS = (("vllm-v0.8.3-online-a100-40gb.csv", "vllm-v1-0.8"), ("sglang-v0.4.6.post2-online-a100-80gb.csv", "sglang"))


def compare(runs: Path, preset: str, out: Path, name: str) -> None:
    """compare-serving on `runs` under `preset`: its plot and JSON written as out/name.png and .json, its
    summary printed."""
    cli = [sys.executable, "-m", "infersim.cli", "compare-serving", str(runs), "--engine", preset]
    table = subprocess.run(cli + ["--plot", str(out / f"{name}.png")], check=True, capture_output=True,
                           text=True).stdout
    (out / f"{name}.json").write_text(subprocess.run(cli + ["--json"], check=True, capture_output=True,
                                                     text=True).stdout)
    print(f"== {runs.name} {preset}\n" + table.split("\n\n", 1)[1])


if __name__ == "__main__":
    main()
