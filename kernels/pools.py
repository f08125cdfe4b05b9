"""Idle thread pools that sleep instead of spinning, for timing kernels on a CPU.

After a parallel call, OpenBLAS's threads spin for about 2^28 cycles (~0.1 s) and OpenMP's (Numba's
default threading layer) for a while too, waiting for more work. When a NumPy BLAS call and a Numba
kernel follow each other, the spinning pool takes the cores the other one needs: on 2 cores that made
the Numba attention kernels measure 1.5-3x slower than they run alone. This module imports nothing
heavy, so it can run before NumPy and Numba load their pools, which read these settings once.
"""
import os


def quiet_idle_thread_pools() -> None:
    """Ask OpenBLAS (shortest spin, 2^4 cycles) and OpenMP (passive wait) to sleep when idle, unless the
    user has set these variables; call it before importing NumPy."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
