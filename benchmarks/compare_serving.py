"""Simulate NVIDIA's published TensorRT-LLM online-serving runs (data/serving: H100, and H200 held out) under
each engine preset and write the comparison: benchmarks/results/serving/<gpu>-<preset>.json (every run,
predicted and measured) and <gpu>-<preset>.png (latency against request rate), with the error summary
printed.

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
    for gpu in ("h100", "h200"):
        runs = REPO / "data" / "serving" / f"trtllm-v0.14-online-{gpu}.csv"
        for preset in args.presets:
            cli = [sys.executable, "-m", "infersim.cli", "compare-serving", str(runs), "--engine", preset]
            table = subprocess.run(cli + ["--plot", str(out / f"{gpu}-{preset}.png")], check=True,
                                   capture_output=True, text=True).stdout
            (out / f"{gpu}-{preset}.json").write_text(subprocess.run(cli + ["--json"], check=True,
                                                                     capture_output=True, text=True).stdout)
            print(f"== {gpu} {preset}\n" + table.split("\n\n", 1)[1])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
