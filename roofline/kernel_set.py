"""How an engine launches a step's kernels: eagerly, each paying the hardware's launch floor
(`HardwareSpec.launch_overhead_s`, fitted on eager PyTorch profiles), or replayed from a captured CUDA graph,
where a kernel costs only what the GPU needs to start it (1.0 us measured on an H200 by `infersim calibrate
--device gpu`, benchmarks/results/h200). Engines capture decode steps up to a batch size (vLLM V1 512, SGLang
and vLLM V0 256, TensorRT-LLM 128) and run larger or mixed steps eagerly. vLLM and SGLang pad a batch up to
the next captured size; TensorRT-LLM does not pad by default, so only the batch sizes it captured replay a
graph. Where a kernel set lists its padded capture's sizes (`padded_sizes`), a decode step replays the
smallest at least its batch and runs that many rows: the padding rows are one-token sequences with no
context, whose GEMM rows, norms and sampling cost what real rows do (the vllm-v1, vllm-v0 and sglang presets
list their engines' sizes, sim/engines.py; a scenario lists its own with `engine.cuda_graph_padded_sizes`).
Where it lists none, the padding is not costed.

vLLM's V1 engine also captures every other step of up to its largest capture size in tokens (512) as
piecewise CUDA graphs (CompilationConfig cudagraph_mode FULL_AND_PIECEWISE, its default: vLLM's "CUDA
Graphs" design document): the pieces between one layer's attention and the next replay, and each layer's
attention kernel is launched eagerly between them. Such a step costs a graph replay's plus, per layer, the
attention kernel's eager floor less the graph's (a kernel's floor adds to its time: timing.kernel_time_s).
Where the capture is padded, the pieces run the step's tokens padded to a captured size too (`padding_tokens`):
its dense part costs them, its attention and sampling the real tokens.

Outside a graph, PyTorch-based engines launch each kernel from Python, and their collectives are NCCL calls
(`HardwareSpec.collective_call_s`). A TensorRT engine enqueues its fused kernels and its all-reduce plugin
from C++, asynchronously: the host stays ahead of the GPU whenever a layer's kernels run longer than their
enqueue (a decode layer of an 8B model reads ~0.5 GB, ~0.2 ms on an H100), so the GPU sees them back to back
and each costs what a kernel queued behind another costs it (`eager_floor_s`). NVIDIA's "Getting Started
with CUDA Graphs" (Gray, 2019) measures that: 3.8 us per 2.9 us kernel queued on a stream against 3.4 us
replayed from a graph, so 0.4 us above a graph's floor (1.4 us on the H200's 1.0).

Engines also choose how their all-reduces run (`all_reduce`, a rule of roofline/custom_all_reduce.py): vLLM
and SGLang their custom peer-to-peer kernel, TensorRT-LLM its AUTO strategy, both falling back to NCCL
beyond their payload limits, GPU counts and fabrics; the rule holds inside and outside a graph."""
from __future__ import annotations

import bisect
import dataclasses
import enum
from dataclasses import dataclass
from typing import NamedTuple

from .custom_all_reduce import ALL_REDUCES
from .errors import SpecError, require_choice
from .hardware import HardwareSpec


class Replay(enum.IntEnum):
    """How a step's kernels run: launched one by one, replayed from a whole CUDA graph, or from piecewise
    graphs with each layer's attention launched between them."""

    EAGER = 0
    GRAPH = 1
    PIECES = 2


# How a step's kernels reach the GPU, as `StepKernels.launch` says it
GRAPH_REPLAY, PIECEWISE_REPLAY = "replayed from a CUDA graph", "replayed from piecewise CUDA graphs"
FROM_CPP, FROM_PYTHON = "enqueued from C++", "launched from Python"


class StepKernels(NamedTuple):
    """How an engine runs one step's kernels: whether a CUDA graph replays them (whole or in pieces), how they
    reach the GPU (GRAPH_REPLAY, PIECEWISE_REPLAY, FROM_CPP or FROM_PYTHON), the hardware as they see it, and
    what the step's attention kernels launched between graph pieces add to it (0 otherwise)."""

    replays_graph: bool
    launch: str
    hardware: HardwareSpec
    eager_attention_s: float = 0.0


@dataclass(frozen=True)
class KernelSet:
    graph_max_batch: int = 0  # decode-only steps of at most this many sequences replay a CUDA graph (0: never)
    graph_kernel_floor_s: float = 1.0e-6
    captured_sizes: frozenset[int] = frozenset()  # unpadded capture: only these sizes replay (empty: all, padded)
    # padded capture: the sizes captured, ascending; a batch replays the smallest at least its size and runs its
    # rows (empty: every size up to graph_max_batch replays, padding not costed)
    padded_sizes: tuple[int, ...] = ()
    eager_floor_s: float | None = None  # a kernel outside a graph: None, the hardware's (launched from Python)
    all_reduce: str = "nccl"  # the engine's rule for its all-reduces (a key of custom_all_reduce.ALL_REDUCES)
    # steps of at most this many tokens that replay no whole graph replay piecewise ones (0: never)
    piecewise_max_tokens: int = 0
    # whether graph_max_batch and captured_sizes count a decode step's tokens (vLLM: a speculative step of n
    # sequences verifying k drafts is n (k + 1) tokens, v1/cudagraph_dispatcher.py uniform_decode_query_len)
    # or its sequences
    graph_counts_tokens: bool = False

    def __post_init__(self):
        for field, value in (("cuda_graph_max_batch", self.graph_max_batch),
                             ("piecewise_graph_max_tokens", self.piecewise_max_tokens)):
            if value < 0:
                raise SpecError(f"engine.{field}", "must be >= 0", value)
        for field, value in (("cuda_graph_kernel_s", self.graph_kernel_floor_s), ("eager_kernel_s", self.eager_floor_s)):
            if value is not None and not 0 <= value <= 1e-3:
                raise SpecError(f"engine.{field}", "must be in [0, 1 ms]", value)
        require_choice("engine.all_reduce", self.all_reduce, ALL_REDUCES)
        sizes = self.padded_sizes
        if sizes and (sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:]))):
            raise SpecError("engine.cuda_graph_padded_sizes", "must be batch sizes >= 1 in ascending order",
                            list(sizes))
        if sizes and self.captured_sizes:
            raise SpecError("engine.cuda_graph_padded_sizes", "a capture is padded or not: give its sizes or an "
                            "unpadded capture's", list(sizes))

    def replay(self, decode_only: bool, seqs: int, tokens: int) -> Replay:
        """How a step of `seqs` sequences and `tokens` new tokens (`decode_only` or not) runs: a decode step of
        a captured size replays its whole graph, another step of up to `piecewise_max_tokens` tokens
        replays pieces, the rest run eagerly."""
        size = tokens if self.graph_counts_tokens else seqs
        captured = (0 < size <= self.graph_max_batch and (not self.captured_sizes or size in self.captured_sizes)
                    and (not self.padded_sizes or size <= self.padded_sizes[-1]))
        if decode_only and captured:
            return Replay.GRAPH
        return Replay.PIECES if 0 < tokens <= self.piecewise_max_tokens else Replay.EAGER

    def padded_capture(self, sizes: tuple[int, ...], max_batch: int | None = None) -> "KernelSet":
        """This kernel set with whole-graph decode steps captured padded at `sizes` (ascending) in place of its
        own capture (an unpadded one's sizes dropped), replayed up to `max_batch`, else the largest size."""
        return dataclasses.replace(self, padded_sizes=tuple(sizes), captured_sizes=frozenset(),
                                   graph_max_batch=max(sizes) if max_batch is None else max_batch)

    def padded_up_to(self, max_batch: int) -> "KernelSet":
        """This padded capture replayed up to `max_batch` (0: none): its sizes up to it, and `max_batch` itself
        where they stop short of it, as SGLang's and TensorRT-LLM's capture lists take in their max batch size
        (vLLM's pattern would stop at its last size below it, leaving the batches above that eager).
        Beyond its largest size the engine's own rule for further sizes is not known here: refused."""
        if max_batch > self.padded_sizes[-1]:
            raise SpecError("engine.cuda_graph_max_batch", f"the preset's padded capture stops at "
                            f"{self.padded_sizes[-1]}; to capture larger batches, list every size in "
                            "engine.cuda_graph_padded_sizes", max_batch)
        sizes = tuple(b for b in self.padded_sizes if b <= max_batch)
        if max_batch and (not sizes or sizes[-1] < max_batch):
            sizes += (max_batch,)
        return dataclasses.replace(self, padded_sizes=sizes, graph_max_batch=max_batch)

    def padding_rows(self, size: int) -> int:
        """The rows a whole-graph replay of a decode step of `size` (sequences, or tokens where the graphs count
        them) adds to it: up to the smallest of `padded_sizes` at least `size` (0 where none are listed)."""
        if not self.padded_sizes:
            return 0
        return self.padded_sizes[bisect.bisect_left(self.padded_sizes, size)] - size

    def padding_tokens(self, tokens: int) -> int:
        """The tokens a piecewise replay of a step of `tokens` adds to its pieces (not to its attention, launched
        between them on the real tokens): vLLM V1 pads a step's token count up to a captured size as it pads a
        decode batch (gpu_model_runner `_get_num_input_tokens` with the same capture sizes); 0 past the largest."""
        if not self.padded_sizes or tokens > self.padded_sizes[-1]:
            return 0
        return self.padding_rows(tokens)

    def decode_padding_rows(self, replay: Replay, seqs: int, tokens: int) -> int:
        """The one-token rows a decode-only step of `seqs` sequences and `tokens` new tokens runs beside its own
        when it runs as `replay` (`replay(True, seqs, tokens)`): a whole graph's up to its captured size, or a
        padded piecewise replay's (its padding tokens run as rows); none eagerly."""
        if replay == Replay.GRAPH:
            return self.padding_rows(tokens if self.graph_counts_tokens else seqs)
        return self.padding_tokens(tokens) if replay == Replay.PIECES else 0

    def eager_attention_s(self, hw: HardwareSpec, layers: int) -> float:
        """What a piecewise replay adds to a whole graph's: each of `layers` attention kernels (one a layer,
        as FlashAttention runs) at the eager path's floor rather than the graph's."""
        return layers * (self.eager(hw).launch_overhead_s - self.graph_kernel_floor_s)

    def for_step(self, hw: HardwareSpec, decode_only: bool, seqs: int, tokens: int, layers: int) -> StepKernels:
        """A step of `seqs` sequences and `tokens` new tokens (`decode_only` or not) of a model of `layers`
        layers: replayed from a graph where the engine captured it (`in_graph`), from piecewise graphs where
        it captured those, else on its eager path (`eager`)."""
        replay = self.replay(decode_only, seqs, tokens)
        if replay == Replay.GRAPH:
            return StepKernels(True, GRAPH_REPLAY, self.in_graph(hw))
        if replay == Replay.PIECES:
            return StepKernels(True, PIECEWISE_REPLAY, self.in_graph(hw), self.eager_attention_s(hw, layers))
        return StepKernels(False, FROM_PYTHON if self.eager_floor_s is None else FROM_CPP, self.eager(hw))

    def graph_hardware(self, hw: HardwareSpec) -> HardwareSpec | None:
        """The hardware as this engine's captured steps see it (`in_graph`); None where it captures none."""
        return self.in_graph(hw) if self.graph_max_batch or self.piecewise_max_tokens else None

    def decode_hardware(self, hw: HardwareSpec) -> HardwareSpec:
        """The hardware a decode step's companion models (a drafter, an amateur) run on: a graph's where the
        engine captures decode steps (vLLM V1 and SGLang capture their drafters'), else the eager path's."""
        return self.graph_hardware(hw) or self.eager(hw)

    def in_graph(self, hw: HardwareSpec) -> HardwareSpec:
        """The hardware as a graph replay sees it: the same chip, with a kernel's floor in a replay for every
        kernel, collectives' included (no eager call waiting on the slowest rank's launch), and the engine's
        all-reduce."""
        return _with_floor(hw, "CUDA graph", self.graph_kernel_floor_s, self.all_reduce)

    def eager(self, hw: HardwareSpec) -> HardwareSpec:
        """The hardware as the engine's kernels outside a graph see it: as it is for kernels launched from
        Python, or with `eager_floor_s` for every kernel and collective an engine enqueues from C++; either
        way with the engine's all-reduce."""
        if self.eager_floor_s is None:
            return hw if hw.all_reduce == self.all_reduce else dataclasses.replace(hw, all_reduce=self.all_reduce)
        return _with_floor(hw, FROM_CPP, self.eager_floor_s, self.all_reduce)


def _with_floor(hw: HardwareSpec, how: str, floor_s: float, all_reduce: str) -> HardwareSpec:
    return dataclasses.replace(hw, name=f"{hw.name} ({how})", launch_overhead_s=floor_s, collective_call_s=floor_s,
                               all_reduce=all_reduce)
