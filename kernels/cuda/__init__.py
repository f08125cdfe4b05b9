"""The CUDA side of the validating kernels: one module per op family (`attention`, `quant`, `sampling`)
with the signatures of the CPU kernels that dispatch to them (backend="cupy"), their CUDA sources beside
them (`*.cu`, compiled by `compile.compiled`). CuPy is imported only when a kernel runs."""
