"""How an engine launches a step's kernels: eagerly, each paying the hardware's launch floor
(`HardwareSpec.launch_overhead_s`, fitted on eager PyTorch profiles), or replayed from a captured CUDA graph,
where a kernel costs only what the GPU needs to start it (1.0 us measured on an H200 by `infersim calibrate
--device gpu`, benchmarks/results/h200). Engines capture decode steps up to a batch size (vLLM V1 512, SGLang
and vLLM V0 256, TensorRT-LLM 128) and run larger or mixed steps eagerly. vLLM and SGLang pad a batch up to
the next captured size (the padded rows' cost is not modelled); TensorRT-LLM does not pad by default, so
only the batch sizes it captured replay a graph."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import SpecError
from .hardware import HardwareSpec


@dataclass(frozen=True)
class KernelSet:
    graph_max_batch: int = 0  # decode-only steps of at most this many sequences replay a CUDA graph (0: never)
    graph_kernel_floor_s: float = 1.0e-6
    captured_sizes: frozenset[int] = frozenset()  # unpadded capture: only these sizes replay (empty: all, padded)

    def __post_init__(self):
        if self.graph_max_batch < 0:
            raise SpecError("engine.cuda_graph_max_batch", "must be >= 0", self.graph_max_batch)
        if not 0 <= self.graph_kernel_floor_s <= 1e-3:
            raise SpecError("engine.cuda_graph_kernel_s", "must be in [0, 1 ms]", self.graph_kernel_floor_s)

    def replays_graph(self, decode_only: bool, seqs: int) -> bool:
        return (decode_only and 0 < seqs <= self.graph_max_batch
                and (not self.captured_sizes or seqs in self.captured_sizes))

    def in_graph(self, hw: HardwareSpec) -> HardwareSpec:
        """The hardware as a graph replay sees it: the same chip, with a kernel's floor in a replay for every
        kernel, collectives' included (no eager call waiting on the slowest rank's launch)."""
        return dataclasses.replace(hw, name=f"{hw.name} (CUDA graph)", launch_overhead_s=self.graph_kernel_floor_s,
                                   collective_call_s=self.graph_kernel_floor_s)
