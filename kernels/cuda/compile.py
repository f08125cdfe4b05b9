"""The CUDA sources beside this module, compiled by NVRTC through CuPy once per kernel and defines."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..device import require


@lru_cache(maxsize=None)
def compiled(file_name: str, kernel_name: str, *defines: str):
    """The kernel `kernel_name` of the CUDA source `file_name` beside this module, compiled with
    --use_fast_math and preprocessor defines such as "HEAD_DIM=128"."""
    source = (Path(__file__).parent / file_name).read_text()
    return require().RawKernel(source, kernel_name, options=("--use_fast_math",) + tuple(f"-D{d}" for d in defines))
