"""OpenBLAS's idle threads sleep instead of spinning, for timing kernels on a CPU.

After a parallel call, OpenBLAS's threads spin for about 2^28 cycles (~0.1 s) waiting for more work.
When a NumPy BLAS call and a Numba kernel follow each other, the spinning threads take the cores the
Numba threads need: on 2 cores that made the Numba attention kernels measure 1.5-3x slower than they run
alone. (OpenMP's pool, Numba's, spins only briefly; making it sleep too, OMP_WAIT_POLICY=PASSIVE, costs
~15 us of wake-up per parallel call, which small kernels cannot afford.) This module imports nothing
heavy, so it can run before NumPy loads OpenBLAS, which reads the setting once.
"""
import os


def quiet_idle_blas_threads() -> None:
    """Ask OpenBLAS to sleep when idle (its shortest spin, 2^4 cycles) unless the user has set
    OPENBLAS_THREAD_TIMEOUT; call it before importing NumPy."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
