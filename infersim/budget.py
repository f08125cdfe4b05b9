"""Whether a run fits this machine: the simulator's memory, estimated before anything is allocated.

Measured (peak RSS) on the lognormal 512/256-token Llama-2-7B / A100 workload of benchmarks/sim_speed.py:
`infersim run` (CSVs and run.png included) takes 217 MB for 10 requests and 944 MB for 100,000 (7.3 KB a
request); the simulation alone 6.0 KB a request at 1 replica, 7.0 KB at 10 and 8.0 KB at 100 (100,000
requests each), and 7.6 KB a replica (100,000 replicas of two requests). The estimate rounds each up.
It leaves out one case: a timeline row (~200 B) is kept per step, so runs whose batches hold about one
sequence (a few requests spread over 1,000 replicas: 20-27 KB a request) take more than estimated.
"""
from __future__ import annotations

import os

from infersim.roofline.errors import SpecError

START_BYTES = 250e6  # the interpreter, NumPy, SimPy and the compiled kernels
BYTES_PER_REQUEST = 8e3
BYTES_PER_REPLICA = 8e3


def run_memory_bytes(requests: int, replicas: int) -> float:
    """Peak memory of simulating `requests` on `replicas` and writing the results."""
    return START_BYTES + requests * BYTES_PER_REQUEST + replicas * BYTES_PER_REPLICA


def available_memory_bytes() -> float:
    """Memory this process can take: Linux's MemAvailable, else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(requests: int, replicas: int, available_bytes: float | None = None) -> None:
    """Refuse up front a run that would not fit in memory, naming the estimate and the machine's memory."""
    need = run_memory_bytes(requests, replicas)
    have = available_memory_bytes() if available_bytes is None else available_bytes
    if need > have:
        field = "workload.num_requests" if requests * BYTES_PER_REQUEST >= replicas * BYTES_PER_REPLICA \
            else "cluster.replicas"
        raise SpecError(field, f"{requests:,} requests x {replicas:,} replica{'s' if replicas > 1 else ''} need "
                        f"~{_gigabytes(need)} GB, more than this machine's {_gigabytes(have)} GB available; "
                        "simulate fewer requests")


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.0f}" if n_bytes >= 10e9 else f"{n_bytes / 1e9:.2g}"
