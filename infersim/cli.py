"""The `infersim` command. Heavy modules are imported inside each subcommand so that `--help` is instant
and a machine without the simulator's dependencies can still run the roofline and kernel commands."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the simulator is imported only when --engine is given
    from infersim.roofline.kernel_set import StepKernels
    from infersim.sim.run import RunConfig


def _quoted(text: str) -> str:
    """A flag's bad value as an error quotes it (at most a line's worth)."""
    from infersim.roofline.errors import excerpt
    return excerpt(text)


def _peak(hw, dtype: str, unit: str) -> str:
    """A dtype's dense peak, or '-' where the chip has no tensor cores for it."""
    from infersim.report import si
    value = hw.peak_flops_per_s.get(dtype, 0)
    return si(value, unit) if value else "-"


def _load(run) -> str:
    """How a measured run was driven: its request rate, or its closed loop's clients."""
    return f"{run.max_concurrency} clients" if run.max_concurrency else f"{run.request_rate_per_s:g}/s"


def _shown(path) -> str:
    """A file name as the terminal shows it (see roofline.boundary.shown)."""
    from infersim.roofline.boundary import shown
    return shown(str(path))


def _int_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= `minimum` (and <= `maximum`), refused in one line otherwise."""
    def parse(text: str) -> int:
        from infersim.roofline.boundary import whole_number
        try:
            value = whole_number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {_quoted(text)}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:,}, got {value:,}")
        return value
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (no nan, inf or 0), refused in one line otherwise."""
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {_quoted(text)}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {_quoted(text)}")
    return value


MAX_BATCH = 1 << 16  # sequences in one step: far above any engine's max_num_seqs
FIT_STILL_OFF = 0.5  # a fitted profile's median GEMM error above 50% (a factor 2 too slow or 1.5 too fast): not this GPU's
FABRIC_SUSPECT = 0.5  # an all-reduce profile's median error at one GPU count above this: another fabric than the spec's
MIN_FIT_ROWS = 8  # a profile's rows (token counts and TP sizes) below which calibrate --from-profile refuses to fit


# Figure formats matplotlib writes by itself (Agg, through Pillow for the bitmaps, and its pdf, ps and svg
# backends); pgf needs a LaTeX installation, so a run would fail at its very end.
FIGURE_FORMATS = ("eps", "gif", "jpeg", "jpg", "pdf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif", "tiff", "webp")


def _figure_path(text: str) -> str:
    """An argparse type: a figure file whose extension matplotlib writes without LaTeX, in a folder that exists."""
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase
    formats = sorted(set(FIGURE_FORMATS) & set(FigureCanvasBase.get_supported_filetypes()))
    if Path(text).suffix.lower().lstrip(".") not in formats:
        raise argparse.ArgumentTypeError(f"must end in one of .{', .'.join(formats)}, got {_quoted(text)}")
    return _file_in_existing_folder(text)


def _yaml_path(text: str) -> str:
    """An argparse type: a .yaml/.yml file to write, in a folder that exists."""
    from pathlib import Path
    if Path(text).suffix.lower() not in (".yaml", ".yml"):
        raise argparse.ArgumentTypeError(f"must end in .yaml or .yml, got {_quoted(text)}")
    return _file_in_existing_folder(text)


def _require_usable(text: str) -> None:
    """An argparse check: the system takes the path itself (it refuses a name over 255 bytes, say); a path yet
    to be created, or one under a file, is said where it is used."""
    import errno
    import os
    try:
        os.stat(text)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise argparse.ArgumentTypeError(f"cannot be used ({err.strerror}): {_quoted(text)}") from None


def _file_in_existing_folder(text: str) -> str:
    from pathlib import Path
    path = Path(text)
    _require_usable(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, not a file: {_quoted(text)}")
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"its folder does not exist: {_quoted(text)}")
    return text


def _out_dir(text: str) -> str:
    """An argparse type: a folder to write into (created if missing), not an existing file."""
    from pathlib import Path
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder (it is empty)")
    _require_usable(text)
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a folder: {_quoted(text)}")
    return text


def _writable_folder(folder, flag: str, given=None) -> None:
    """Create `folder` (and its parents) and check that a file can be written there, before the work whose
    results go there; one line naming `flag` and what it was `given` (default: the folder) otherwise."""
    import tempfile
    from pathlib import Path

    from infersim.roofline import SpecError
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise SpecError(flag, f"cannot be written ({err.strerror})", _shown(given or folder)) from None


@contextlib.contextmanager
def _named_by_flags(flags: dict):
    """Errors about the spec fields that flags set name the flags (`--kv-bits`, not quantization.kv_bits)."""
    from infersim.roofline import SpecError
    try:
        yield
    except SpecError as err:
        if err.field not in flags:
            raise
        raise SpecError(flags[err.field], err.problem, err.got, err.file) from None


def _engine_or_file(text: str, max_model_len_given: bool = False):
    """`--engine` as a scenario.EngineFile: a preset's name, or a YAML file of a scenario's engine (scheduler,
    kv_cache) sections, the preset with those keys over it (as calibrate --from-serving writes it); the file
    may set scheduler.max_model_len where no measured run sets it (`max_model_len_given`)."""
    from infersim.roofline.boundary import registry_or_file
    from infersim.scenario import load_engine_file
    from infersim.serving import deployment_of
    from infersim.sim.engines import ENGINES
    found = registry_or_file("--engine", text, ENGINES, "engine preset", "YAML", (".yaml", ".yml"))
    return deployment_of(text) if found in ENGINES.values() else load_engine_file(found, max_model_len_given)


def _engine_named(engine, text: str) -> str:
    """How output names the engine `--engine text` gave: the preset, or the file and the preset under it."""
    if engine.file is None:
        return f"the {text} engine preset"
    return f"the engine of {_shown(text)} (the {engine.engine.preset} preset with its keys)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("infersim")
    except PackageNotFoundError:
        return "(not installed: run pip install . in the checkout)"


def cmd_models(args) -> int:
    from infersim.report import si, table
    from infersim.roofline import get_model, model_names
    rows = []
    for name in model_names():
        m = get_model(name)
        moe = f"{m.num_experts}x top-{m.experts_per_token}" if m.is_moe else "-"
        rows.append([name, si(m.num_params()), str(m.num_layers), str(m.hidden_size),
                     f"{m.num_heads}/{m.num_kv_heads}", str(m.ffn_size), m.ffn_kind, str(m.vocab_size), moe,
                     str(m.max_context_tokens)])
    print(table(["model", "params", "layers", "hidden", "heads/kv", "ffn", "ffn_kind", "vocab", "moe", "max_ctx"],
                rows))
    return 0


def cmd_hardware(args) -> int:
    from infersim.report import si, table
    from infersim.roofline import get_hardware, hardware_names
    rows = []
    for name in hardware_names():
        h = get_hardware(name)
        rows.append([name, si(h.peak("fp16"), "FLOP/s"), _peak(h, "int8", "OP/s"),
                     _peak(h, "fp8", "FLOP/s"), _peak(h, "fp4", "FLOP/s"),
                     f"{h.memory_bytes / 2 ** 30:.4g} GiB",
                     si(h.memory_bandwidth_bytes_per_s, "B/s"), si(h.interconnect_bandwidth_bytes_per_s, "B/s"),
                     str(h.sm_count), f"{h.ridge_point_flops_per_byte():.0f}", f"{h.gpu_fabric} x{h.fabric_gpus}"])
    print(table(["hardware", "fp16", "int8", "fp8", "fp4", "memory", "bandwidth", "link/dir", "SMs", "ridge",
                 "fabric x GPUs"], rows))
    return 0


def cmd_engines(args) -> int:
    from infersim.report import table
    from infersim.roofline import Parallelism, SpecError, StepOptions, get_hardware
    from infersim.roofline.models import MAX_CONTEXT_TOKENS
    from infersim.roofline.step import check_fabric
    from infersim.sim.engines import ENGINES
    hw = get_hardware(args.hardware, field="--hardware")
    if args.max_model_len > MAX_CONTEXT_TOKENS:  # as a scenario's scheduler.max_model_len
        raise SpecError("--max-model-len", f"must be <= {MAX_CONTEXT_TOKENS:,} tokens", args.max_model_len)
    with _named_by_flags({"parallelism.tensor_parallel": "--tp"}):  # as a scenario's parallelism.tensor_parallel
        check_fabric(hw, StepOptions(parallel=Parallelism(args.tp, 1)))
    rows = []
    for name, preset in ENGINES.items():
        d = preset.defaults(hw, args.max_model_len, args.tp)
        graphs = d.kernels.graph_max_batch
        rows.append([name, d.scheduler, str(d.max_num_batched_tokens), str(d.max_num_seqs), str(d.chunk_tokens),
                     str(d.block_size_tokens),
                     f"{d.memory_utilization:.2f}" + (" of free" if d.memory_utilization_of == "free" else "")
                     + (f" - {d.runtime_gib:g} GiB" if d.runtime_gib else ""),
                     "on" if d.prefix_caching else "off",
                     ("some up to " if d.kernels.captured_sizes else "up to ") + str(graphs)
                     + (" tokens" if d.kernels.graph_counts_tokens else "")
                     + (f", padded ({len(d.kernels.padded_sizes)} sizes)" if d.kernels.padded_sizes else "")
                     if graphs else "off",
                     f"up to {d.kernels.piecewise_max_tokens} tokens" if d.kernels.piecewise_max_tokens else "off",
                     "overlapped" if d.overhead.overlaps_gpu else "in series", preset.stands_for])
    print(f"engine presets on {hw.name}, max_model_len {args.max_model_len}, TP{args.tp}:")
    print(table(["preset", "scheduler", "batched tokens", "seqs", "chunk", "block", "memory", "prefix cache",
                 "decode graphs", "piecewise graphs", "host", "stands for"], rows, left=(0, 11)))
    return 0


def _files_shown(names: list[str]) -> str:
    """One file's name, or the first's and how many more."""
    return _shown(names[0]) + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def _against(predicted: float, measured: float | None, spec: str) -> str:
    """'predicted / measured', the measurement a dash where the run has none."""
    return f"{predicted:{spec}} / " + ("-" if measured is None else f"{measured:{spec}}")


def _compared_run(c) -> dict:
    """A compared run for --json: what was measured (the own requests' count, not their lengths) and what the
    simulator predicts."""
    measured = {k: v for k, v in c.run.__dict__.items() if k != "requests"}
    return {**measured, "own_requests": None if c.run.requests is None else len(c.run.requests.input_tokens),
            "predicted_ttft_ms": c.ttft_ms, "predicted_itl_ms": c.itl_ms,
            "predicted_output_tokens_per_s": c.output_tokens_per_s, "predicted_p99_ttft_ms": c.p99_ttft_ms,
            "predicted_p99_itl_ms": c.p99_itl_ms}


def cmd_compare_serving(args) -> int:
    from pathlib import Path

    from infersim.report import json_safe, table
    from infersim.roofline import SpecError
    from infersim.serving import error_summary, highest_rate_within, lengths_note, read_runs, simulate_run
    paths = [Path(name) for name in args.runs]
    engine = _engine_or_file(args.engine)
    named = _engine_named(engine, args.engine)
    runs = read_runs(paths, args.model, args.hardware, args.tp, args.quant)
    show = args.progress or (sys.stderr.isatty() and not args.json)
    comparisons = []
    for i, run in enumerate(runs, 1):
        comparisons.append(simulate_run(run, engine))
        if show:
            print(f"\rsimulating run {i} of {len(runs)}", end="\n" if i == len(runs) else "", file=sys.stderr,
                  flush=True)
    errors = error_summary(comparisons)
    rates = {"measured": highest_rate_within(comparisons, args.ttft_ms, measured=True),
             "simulated": highest_rate_within(comparisons, args.ttft_ms, measured=False)}
    notes = [note for note in (lengths_note(run) for run in runs) if note]
    if args.json:
        print(json.dumps(json_safe({"engine": args.engine, "engine_keys": engine.model_dump(exclude_unset=True),
                                    "errors": errors, "rate_within_ttft": rates,
                                    "runs": [_compared_run(c) for c in comparisons], "notes": notes}),
                         indent=2, allow_nan=False))
    else:
        print(f"{_files_shown(args.runs)}: simulated with {named} vs measured")
        print(table(["run", "model", "TP", "in/out", "rate or clients", "TTFT ms (sim/meas)",
                     "ITL/TPOT ms (sim/meas)", "out tok/s (sim/meas)", "p99 TTFT ms", "p99 ITL/TPOT ms"],
                    [[c.run.where, c.run.model, str(c.run.tensor_parallel),
                      c.run.lengths_text + (" (own)" if c.run.requests else ""),
                      _load(c.run), _against(c.ttft_ms, c.run.mean_ttft_ms, ".0f"),
                      _against(c.itl_ms, c.run.mean_itl_ms, ".1f"),
                      f"{c.output_tokens_per_s:.0f} / {c.run.output_tokens_per_s:.0f}",
                      _against(c.p99_ttft_ms, c.run.p99_ttft_ms, ".0f"), _against(c.p99_itl_ms, c.run.p99_itl_ms, ".1f")]
                     for c in comparisons]))
        if any(c.run.requests for c in comparisons):
            print("(own): the run's own requests, as --save-detailed lists them (in/out: their means)")
        print("ITL/TPOT: each request's (end-to-end - TTFT) / (output tokens - 1), averaged over requests: GenAI-Perf's "
              "ITL, vllm bench serve's TPOT")
        print()
        print(table(["figure", "runs", "median |error|", "p90 |error|"],
                    [[k, str(v["runs"]), f"{100 * v['median_abs_err']:.1f}%", f"{100 * v['p90_abs_err']:.1f}%"]
                     for k, v in errors.items()]))
        print(f"\nhighest request rate with mean TTFT under {args.ttft_ms:g} ms (simulated / measured):")
        if not rates["measured"]:
            print("  none to compare: " + _why_no_rates([c.run for c in comparisons]))
        for key in rates["measured"]:
            print(f"  {key}: {rates['simulated'][key]:g} / {rates['measured'][key]:g} requests/s")
        for note in notes:
            print(f"note: {note}")
    if args.plot:
        from infersim.plots import plot_serving
        try:
            plot_serving(comparisons, args.plot,
                         f"{_files_shown([p.name for p in paths])}: {named} vs measured")
        except OSError as err:  # the path passed the early check but the system refused the write
            raise SpecError("--plot", f"cannot be written ({err.strerror}): give a path in a folder you can write "
                            "(the table above is complete)", _shown(args.plot)) from None
        print(f"wrote {_shown(args.plot)}", file=sys.stderr)
    return 0


def _why_no_rates(runs) -> str:
    """Why no configuration has a highest rate within the TTFT target: no run sent at a finite rate, or none
    of those that did measured a mean TTFT."""
    import math
    if all(math.isinf(r.request_rate_per_s) for r in runs):
        return "every run sent its requests at once (request rate inf)"
    return "no run sent at a finite rate measured a mean TTFT (mean_ttft_ms left out)"


def cmd_roofline(args) -> int:
    with _named_by_flags(ROOFLINE_FLAGS):
        return _roofline(args)


# The spec fields that `infersim roofline`'s flags set.
ROOFLINE_FLAGS = {"quant": "--quant", "quantization": "--quant", "quantization.kv_bits": "--kv-bits",
                  "parallelism.tensor_parallel": "--tp", "parallelism.pipeline_parallel": "--pp",
                  "hardware": "--hardware"}


def _roofline(args) -> int:
    from infersim.report import si, step_table
    from infersim.roofline import (Parallelism, SpecError, StepOptions, decode_batch, get_hardware, get_model,
                                   get_quant, plan_memory, prefill_batch, step_cost)
    from infersim.roofline.quant import check_runs_on
    from infersim.roofline.step import check_fabric
    engine = None if args.engine is None else _engine_or_file(args.engine, max_model_len_given=True)
    if engine is not None and engine.file is not None:
        given = [flag for flag, value in (("--no-flash", args.no_flash), ("--sampling", args.sampling)) if value]
        if given:
            raise SpecError(given[0], f"does not apply with an engine file: set engine.flash_attention and "
                            f"engine.sampling in {engine.file}")
    model, hw = get_model(args.model, field="--model"), get_hardware(args.hardware, field="--hardware")
    quant = get_quant(args.quant, args.kv_bits)
    check_runs_on(quant, hw, "--quant", args.quant)
    parallel = Parallelism(args.tp, args.pp)
    other_phase = {"decode": ("--prompt", args.prompt, "prefill"), "prefill": ("--context", args.context, "decode")}
    flag, value, phase = other_phase[args.phase]
    if value is not None:
        raise SpecError(flag, f"applies to --phase {phase} only; this is a {args.phase} step", value)
    if args.phase == "decode":
        if args.context is None:  # the default: 1024 tokens, or as many as the model's context leaves
            args.context = min(1024, model.max_context_tokens - 1)
        if args.context + 1 > model.max_context_tokens:
            raise SpecError("--context", f"{model.name} allows at most {model.max_context_tokens - 1} cached "
                            f"tokens before a decode step", args.context)
        batch = decode_batch([args.context] * args.batch)
        shape = f"decode, batch {args.batch}, context {args.context}"
    else:
        if args.prompt is None:  # the default: 1024 tokens, or the model's whole context
            args.prompt = min(1024, model.max_context_tokens)
        if args.prompt > model.max_context_tokens:
            raise SpecError("--prompt", f"{model.name} allows at most {model.max_context_tokens} tokens",
                            args.prompt)
        batch = prefill_batch([args.prompt] * args.batch)
        shape = f"prefill, batch {args.batch}, prompt {args.prompt}"
    options = StepOptions(quant=quant, parallel=parallel, flash_attention=not args.no_flash,
                          sampling=args.sampling or "top_p")
    engine_step, step_hw, engine_seqs, pieces_padding = None, hw, None, 0
    if engine is not None:
        from infersim.scenario import deployed_config
        from infersim.sim.run import replica_memory_plan
        check_fabric(hw, options)  # before the engine's kernels rename the GPU
        if engine.file is None:  # a preset, run with the flags' attention and sampling
            engine = engine.model_copy(update={"engine": engine.engine.model_copy(
                update={"flash_attention": options.flash_attention, "sampling": options.sampling})})
        try:
            engine_cfg = deployed_config(engine, model, hw, quant, parallel,
                                         engine.scheduler.max_model_len or model.max_context_tokens)
            memory = replica_memory_plan(engine_cfg)  # as the engine sizes it
        except SpecError as err:
            raise err.in_file(engine.file) if engine.file else err from None
        # the kernels as a simulated replica costs this step (KernelSet.replay: a whole graph, pieces or eager)
        engine_step = engine_cfg.kernels.for_step(hw, args.phase == "decode", args.batch, batch.num_tokens,
                                                  model.num_layers)
        engine_seqs = engine_cfg.limits.max_num_seqs
        options, step_hw = engine_cfg.options, engine_step.hardware
        from infersim.roofline.kernel_set import Replay
        replay = engine_cfg.kernels.replay(args.phase == "decode", args.batch, batch.num_tokens)
        if args.phase == "decode":  # a padded capture runs one-token rows with no context (ReplicaCosts.timer_for)
            padding = engine_cfg.kernels.decode_padding_rows(replay, args.batch, batch.num_tokens)
            batch = decode_batch([args.context] * args.batch + [0] * padding)
        elif replay == Replay.PIECES:  # a prompt step's pieces run its padded tokens, its attention the real ones
            pieces_padding = engine_cfg.kernels.padding_tokens(batch.num_tokens)
    else:
        memory = plan_memory(model, hw, quant, parallel)
    cost = step_cost(model, step_hw, batch, options)
    setup = ", ".join([args.quant] + ([f"{args.kv_bits}-bit KV"] if args.kv_bits else [])
                      + [f"TP={args.tp}", f"PP={args.pp}"] + ([args.engine] if args.engine else []))
    facts = None if engine_step is None else _engine_facts(engine_cfg, engine_step, engine, cost.time_s, args.batch,
                                                             len(batch.new_tokens) - args.batch)
    context = batch.max_context_tokens
    if args.json:
        out = {"model": model.name, "hardware": hw.name, "phase": args.phase, "quant": args.quant,
               "tp": args.tp, "pp": args.pp, "flash_attention": options.flash_attention,
               "ops": [{"name": r.name, "count": r.count, "flops": r.flops, "bytes": r.bytes,
                        "weight_bytes": r.timed.op.weight_bytes * r.count,
                        "kv_bytes": (r.timed.op.kv_read_bytes + r.timed.op.kv_write_bytes) * r.count,
                        "intensity_flops_per_byte": r.timed.op.intensity_flops_per_byte, "time_s": r.time_s,
                        "bound": r.timed.bound} for r in cost.rows],
               "totals": cost.totals(),
               "ridge_point_flops_per_byte": hw.ridge_point_flops_per_byte(quant.gemm_dtype()),
               "memory": {"weight_bytes_per_gpu": memory.weight_bytes, "kv_cache_bytes": memory.kv_cache_bytes,
                          "max_kv_tokens": memory.max_kv_tokens, "max_batch_at_context": memory.max_batch(context),
                          "runtime_bytes": memory.runtime_bytes}}
        if facts is not None:
            out["engine"] = facts
        print(json.dumps(out, indent=2))
    else:
        print(f"{model.name} on {hw.name} ({setup}, FlashAttention {'on' if options.flash_attention else 'off'}): "
              f"{shape}")
        print(step_table(cost))
        tokens = batch.num_tokens - (facts["padding_rows"] if facts else 0)
        per = "per GPU" if args.pp == 1 else f"per tensor-parallel rank, over all {args.pp} stages"
        print(f"\nstep time {cost.time_s * 1e3:.3f} ms ({tokens / cost.time_s:,.0f} tokens/s); "
              f"{si(cost.flops, 'FLOP')}, {si(cost.bytes, 'B')} {per} "
              f"(weights {si(cost.weight_bytes, 'B')}, KV cache {si(cost.kv_bytes, 'B')})")
        if facts is not None:
            print(_engine_line(facts, tokens))
        if args.pp > 1:
            print(f"pipeline: slowest stage {cost.stage_time_s * 1e3:.3f} ms; bubble with {args.pp} "
                  f"micro-batches {100 * cost.pipeline_bubble_fraction(args.pp):.0f}%")
        print(f"ridge point {hw.ridge_point_flops_per_byte(quant.gemm_dtype()):.0f} FLOP/B; memory per GPU: "
              f"weights {si(memory.weight_bytes, 'B')}, "
              + (f"the engine's runtime {si(memory.runtime_bytes, 'B')}, " if memory.runtime_bytes else "")
              + f"KV cache {si(memory.kv_cache_bytes, 'B')} = "
              f"{memory.max_kv_tokens:,} tokens, max batch {memory.max_batch(context)} at context {context}")
        if pieces_padding:
            print(f"note: {args.engine} runs this step's graph pieces at {batch.num_tokens + pieces_padding:,} tokens, "
                  f"{pieces_padding} of them padding (a simulated replica costs them; the table above does not)")
        if engine_seqs is not None and engine_seqs < args.batch:
            print(f"note: {args.engine} runs at most {engine_seqs} sequences a step, not {args.batch}")
        if memory.max_batch(context) < args.batch:
            print(f"note: the KV cache holds {memory.max_batch(context)} sequences at context {context}, not "
                  f"{args.batch}: a server would not run this batch at once (the costs above assume it could)")
        for note in quant.accuracy_notes():
            print(f"note: {note}")
    if args.plot:
        from infersim.plots import plot_roofline
        plot_roofline(cost, hw, args.plot, f"{model.name} on {hw.name} ({setup}): {shape}", quant.gemm_dtype())
        print(f"wrote {_shown(args.plot)}", file=sys.stderr)
    return 0


def _engine_facts(cfg: RunConfig, kernels: StepKernels, engine, gpu_s: float, seqs: int, padding_rows: int) -> dict:
    """How the engine (a scenario.EngineFile; its run configuration `cfg`) ran the step's `kernels` (a graph
    padded by `padding_rows` one-token rows), its host time per step and the step's wall time (--json's
    "engine", and what `_engine_line` says)."""
    kernels_hw, overhead = kernels.hardware, cfg.overhead
    return {"preset": engine.engine.preset, "file": engine.file, "replays_graph": kernels.replays_graph,
            "kernels": kernels.launch, "padding_rows": padding_rows,
            "kernel_launch_s": kernels_hw.launch_overhead_s, "collective_call_s": kernels_hw.collective_call_s,
            "all_reduce": kernels_hw.all_reduce if cfg.options.parallel.tensor_parallel > 1 else None,
            "fusions": sorted(cfg.options.fusions),
            "eager_attention_s": kernels.eager_attention_s,
            "host_s": overhead.step_s(seqs), "host_overlaps_gpu": overhead.overlaps_gpu,
            "wall_s": overhead.wall_s(gpu_s + kernels.eager_attention_s, seqs)}


def _engine_line(facts: dict, tokens: int) -> str:
    """`_engine_facts` in one line (a collective call's cost only where it is not a kernel's)."""
    calls = ("" if facts["collective_call_s"] == facts["kernel_launch_s"]
             else f", {facts['collective_call_s'] * 1e6:.1f} us a collective call")
    reduce = f"all-reduce {facts['all_reduce']}" if facts["all_reduce"] else "no all-reduce (TP1)"
    between = (f"; attention launched between them, +{facts['eager_attention_s'] * 1e3:.3f} ms"
               if facts["eager_attention_s"] else "")
    named = facts["preset"] if facts["file"] is None else f"{facts['file']} ({facts['preset']})"
    padded = f", padded by {facts['padding_rows']} one-token rows" if facts["padding_rows"] else ""
    return (f"{named}: kernels {facts['kernels']}{padded} ({facts['kernel_launch_s'] * 1e6:.1f} us each{calls}"
            f"{between}), {reduce}; host {facts['host_s'] * 1e3:.3f} ms "
            f"{'overlapped' if facts['host_overlaps_gpu'] else 'in series'} -> step {facts['wall_s'] * 1e3:.3f} ms "
            f"({tokens / facts['wall_s']:,.0f} tokens/s)")


def _profile_model(args):
    from infersim.roofline import get_model
    from infersim.roofline.profile import model_from_profile
    return get_model(args.model, field="--model") if args.model else model_from_profile(args.profile)


def _compare_all_reduce_profile(args) -> int:
    """compare-profile on a network profile: the collectives model against measured all-reduces."""
    from pathlib import Path

    from infersim.report import figure, json_safe, table
    from infersim.roofline import SpecError, get_hardware
    from infersim.roofline.collective_profile import compare_all_reduce, read_all_reduce_profile
    if args.model:
        raise SpecError("--model", "does not apply to an all-reduce profile (it measures no model)", args.model)
    hw = get_hardware(args.hardware, field="--hardware")
    samples = read_all_reduce_profile(args.profile)
    predicted_s = samples.predict_s(hw)
    result = compare_all_reduce(samples, predicted_s)
    if args.json:
        print(json.dumps(json_safe(result), indent=2, allow_nan=False))
    else:
        def row(name, e):
            return [name, str(e["n"]), f"{figure(e['median_abs_err'], '.1f', 100)}%",
                    f"{figure(e['p90_abs_err'], '.1f', 100)}%", f"{figure(e['median_signed_err'], '+.1f', 100)}%"]
        print(f"{_shown(args.profile)}: all-reduce model ({hw.name}, {hw.fabric.kind}) vs measured")
        print(table(["rows", "n", "median |err|", "p90 |err|", "median err (+: slow)"],
                    [row("all", result["all"])] + [row(f"{g} GPUs", e) for g, e in result["by_gpus"].items()]
                    + [row(name, e) for name, e in result["by_size"].items()]))
        if samples.multi_node_rows:
            print(f"({samples.multi_node_rows} rows across nodes left out: multi-node collectives are not modelled)")
        far = [g for g, e in result["by_gpus"].items() if e["median_abs_err"] > FABRIC_SUSPECT]
        if far:
            print(f"note: at {', '.join(map(str, far))} GPUs the model is off by more than "
                  f"{FABRIC_SUSPECT:.0%}: were those GPUs joined as {hw.name}'s {hw.fabric.kind} joins them? (NVLink "
                  "pairs reach each other's partners over PCIe: give a hardware YAML with that gpu_fabric)")
    if args.plot:
        from infersim.plots import plot_all_reduce_profile
        plot_all_reduce_profile(samples, predicted_s, args.plot, f"{_shown(Path(args.profile).name)}: all-reduce on "
                                f"{hw.name}")
        print(f"wrote {_shown(args.plot)}", file=sys.stderr)
    return 0


def _note_profile_oddities(profile: str, result: dict, gpu: str) -> None:
    """Notes on a profile's columns infersim leaves out and on times far below what the GPU allows (a file in
    seconds where Vidur's profiles give milliseconds)."""
    from infersim.roofline.profile import VIDUR_OPS, ops_not_compared
    for op in ops_not_compared(profile):
        print(f"note: time_stats.{op} is not compared: infersim models no such op (it compares "
              f"{', '.join(VIDUR_OPS)})", file=sys.stderr)
    if result["all_median_abs_err"] > 10:  # predicted > 11x measured: faster than the GPU's peaks allow
        print(f"note: the measured times are a median {1 + result['all_median_abs_err']:,.0f}x below the roofline's "
              f"on {gpu}: profiles give milliseconds (Vidur's time_stats); is the file in seconds, or from another "
              "GPU?", file=sys.stderr)


def cmd_compare_profile(args) -> int:
    from infersim.report import figure, json_safe, table
    from infersim.roofline import get_hardware
    from infersim.roofline.collective_profile import is_all_reduce_profile
    from infersim.roofline.profile import VIDUR_OPS, compare, read_profile
    if is_all_reduce_profile(args.profile):
        return _compare_all_reduce_profile(args)
    model, hw = _profile_model(args), get_hardware(args.hardware, field="--hardware")
    samples = read_profile(args.profile, model)
    result = compare(samples, hw)
    _note_profile_oddities(args.profile, result, hw.name)
    if args.json:
        print(json.dumps(json_safe(result), indent=2, allow_nan=False))
    else:
        print(f"{_shown(args.profile)}: roofline ({hw.name}) vs measured, {model.name}")
        print(table(["op", "infersim op", "rows", "median |err|"],
                    [[op, VIDUR_OPS[op], str(v["n"]), f"{figure(v['median_abs_err'], '.1f', 100)}%"]
                     for op, v in result["ops"].items()]))
        print(f"\nGEMMs: median {figure(result['gemm_median_abs_err'], '.1f', 100)}%, "
              f"p90 {figure(result['gemm_p90_abs_err'], '.1f', 100)}%; all ops: median "
              f"{figure(result['all_median_abs_err'], '.1f', 100)}%")
    if args.plot:
        from infersim.plots import plot_profile
        plot_profile(samples, hw, args.plot, f"{model.name} on {hw.name}: roofline vs measured")
        print(f"wrote {_shown(args.plot)}", file=sys.stderr)
    return 0


def _calibrate_from_serving(args) -> int:
    """Fit a preset's host time per step to measured runs and write it as a scenario's engine block."""
    from pathlib import Path

    import yaml

    from infersim.roofline import SpecError
    from infersim.serving import fit_host_overhead, read_runs
    for flag, value in (("--from-profile", args.from_profile), ("--device", args.device)):
        if value:
            raise SpecError(flag, "does not apply with --from-serving", value)
    engine = _engine_or_file("vllm-v1" if args.engine is None else args.engine)
    preset = engine.engine.preset
    out = Path(args.out or f"{preset}-engine.yaml")
    if args.out is None and engine.file is not None and out.resolve() == Path(args.engine).resolve():
        raise SpecError("--out", f"is by default {out}, the --engine file: give --out to write the fit elsewhere "
                        f"(or --out {out} to replace it)")
    _writable_folder(out.parent, "--out", args.out)
    paths = [Path(name) for name in args.from_serving]
    runs = read_runs(paths, args.model, args.hardware, args.tp, args.quant)
    fit = fit_host_overhead(runs, engine, progress=lambda text: print(text, file=sys.stderr))
    if len(runs) < 3:  # three values fitted to one or two runs' mean TTFT and ITL: barely pinned, if at all
        print(f"note: three values fitted to {len(runs)} run{'s' * (len(runs) != 1)}: they describe "
              f"{'it' if len(runs) == 1 else 'them'}, not the engine; give runs at several rates and lengths")
    for name in (key for key in ("ttft", "itl", "output_tokens_per_s") if key in fit.errors_before):
        before, after = fit.errors_before[name], fit.errors_after[name]
        print(f"{name:20s} median |error| {100 * before['median_abs_err']:.1f}% -> {100 * after['median_abs_err']:.1f}%,"
              f" p90 {100 * before['p90_abs_err']:.1f}% -> {100 * after['p90_abs_err']:.1f}%")
    given = engine.model_dump(exclude_unset=True, mode="json")
    fitted = {"overhead_fixed_s": float(f"{fit.fixed_s:.4g}"), "overhead_per_seq_s": float(f"{fit.per_seq_s:.4g}"),
              "frontend_s": float(f"{fit.frontend_s:.4g}")}
    block = {**given, "engine": {**given.get("engine", {}), "preset": preset, **fitted}}  # a file may set no engine
    out.write_text(f"# host time per step and the front end's per request fitted on "
                   f"{_files_shown([p.name for p in paths])} by infersim calibrate --from-serving\n"
                   + yaml.safe_dump(block, sort_keys=False))
    for name, why in fit.loose.items():
        print(f"note: {name}: {why}")
    sections = " and ".join(f"{name} section" for name in block)
    print(f"wrote {_shown(str(out))} (paste its {sections} into a scenario, or give it to compare-serving --engine)")
    return 0


def cmd_calibrate(args) -> int:
    from pathlib import Path

    from infersim.roofline import SpecError
    if args.from_serving:
        return _calibrate_from_serving(args)
    if args.from_profile and args.device:
        raise SpecError("--device", "does not apply with --from-profile (which fits a profile measured already; "
                        "--hardware names its GPU)", args.device)
    for flag, value in (("--hardware", args.hardware), ("--model", args.model)):
        if value and not args.from_profile:
            raise SpecError(flag, "applies with --from-profile only (--device measures the device in use)", value)
    json_only = " (to its JSON files)"
    for flag, value, applies in (("--tp", args.tp, json_only), ("--quant", args.quant, json_only),
                                 ("--engine", args.engine, "")):
        if value is not None:
            raise SpecError(flag, f"applies with --from-serving only{applies}", value)
    _writable_folder(Path(args.out).parent if args.out else Path.cwd(), "--out", args.out)
    if args.from_profile:
        import dataclasses

        from infersim.roofline import get_hardware
        from infersim.roofline.profile import FITTED_FACTORS, compare, fit_factors, read_profile
        if not args.hardware:
            raise SpecError("--hardware", "is required with --from-profile (the GPU the profile ran on)")
        args.profile = args.from_profile
        model, base = _profile_model(args), get_hardware(args.hardware)
        samples = read_profile(args.from_profile, model)
        rows = max(len(op.measured_s) for op in samples.values())
        if rows < MIN_FIT_ROWS:
            raise SpecError("--from-profile", f"{_shown(args.from_profile)} has {rows} row{'s' * (rows != 1)}: fitting "
                            f"{len(FITTED_FACTORS)} factors needs a sweep of token counts (at least {MIN_FIT_ROWS} "
                            "rows); infersim compare-profile checks a few rows against the spec as it is")
        before = compare(samples, base)
        _note_profile_oddities(args.from_profile, before, base.name)
        fitted = fit_factors(samples, base)
        fitted = dataclasses.replace(fitted, name=f"{base.name}-fitted",
                                     source=f"{base.source}; factors fitted on {args.from_profile}")
        after = compare(samples, fitted)
        for name in FITTED_FACTORS:
            print(f"{name:28s} {getattr(base, name):.4g} -> {getattr(fitted, name):.4g}")
        print(f"GEMM median error {100 * before['gemm_median_abs_err']:.1f}% -> "
              f"{100 * after['gemm_median_abs_err']:.1f}%, p90 {100 * before['gemm_p90_abs_err']:.1f}% -> "
              f"{100 * after['gemm_p90_abs_err']:.1f}%; all ops {100 * before['all_median_abs_err']:.1f}% -> "
              f"{100 * after['all_median_abs_err']:.1f}%")
        if after["gemm_median_abs_err"] > FIT_STILL_OFF:
            print(f"warning: fitted, the GEMMs are still off by a median {100 * after['gemm_median_abs_err']:,.0f}%: "
                  f"{_shown(args.from_profile)} does not look measured on {base.name} (check --hardware and "
                  "--model); the spec is written all the same", file=sys.stderr)
        spec = fitted
    elif args.device == "gpu":
        from infersim.kernels.calibrate import calibrate_gpu
        from infersim.kernels.device import available
        if not available():
            raise SpecError("--device gpu", "needs CuPy and a CUDA GPU (pip install 'infersim[gpu]')")
        spec = calibrate_gpu(progress=lambda text: print(text, file=sys.stderr))
    else:
        from infersim.kernels.calibrate import calibrate_host
        spec = calibrate_host(progress=lambda text: print(text, file=sys.stderr))
    out = args.out or f"{spec.name}.yaml"
    with open(out, "w") as f:
        f.write(spec.to_yaml())
    print(f"wrote {_shown(out)}")
    return 0


def _progress_bar(fraction: float, simulated_s: float) -> None:
    width = 40
    done = int(width * fraction)
    end = "\n" if fraction >= 1 else ""
    print(f"\rsimulating [{'#' * done}{'.' * (width - done)}] {100 * fraction:3.0f}% of arrivals, "
          f"t = {simulated_s:,.1f} s", end=end, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    from pathlib import Path

    from infersim.report import run_summary_table, write_run
    from infersim.roofline.errors import errors_in
    from infersim.scenario import load_run
    from infersim.sim.cascade import CascadeConfig, simulate_cascade
    from infersim.sim.run import simulate
    scenario, cfg, requests = load_run(args.scenario)
    cascade = isinstance(cfg, CascadeConfig)
    out = Path(args.out or Path("runs") / Path(args.scenario).stem)
    _writable_folder(out, "--out")
    show = args.progress or (sys.stderr.isatty() and not args.quiet)
    with errors_in(Path(args.scenario).name):  # what the simulator finds wrong is the scenario's too
        result = (simulate_cascade if cascade else simulate)(cfg, requests, progress=_progress_bar if show else None)
    name = scenario.name or _shown(Path(args.scenario).stem)
    paths = write_run(result, out)
    if not args.no_plot:
        from infersim.plots import plot_run
        pools = ([(f"run-tier{k}", run, f"{name}, tier {k}") for k, run in enumerate(result.tiers)] if cascade
                 else [("run", result, name)])  # a plot per pool
        for stem, run, title in pools:
            paths[stem] = out / f"{stem}.png"
            plot_run(run, paths[stem], title)
    if not args.quiet:
        if cascade:
            for k, (tier, section, run) in enumerate(zip(cfg.tiers, scenario.cascade.tiers, result.tiers)):
                print(_deployment_line(f"tier {k}", tier.run, section.quantization or scenario.quantization,
                                       (section.engine or scenario.engine).preset, run))
        else:
            print(_deployment_line(name, cfg, scenario.quantization, scenario.engine.preset, result))
        print(run_summary_table(result.summary))
        if cascade:
            print(_cascade_lines(name, cfg, result.summary))
    rejected = [r for r in result.requests if r.reject_reason]
    if rejected:  # a warning even under --quiet: stderr, as errors are
        print(f"warning: {len(rejected)} of {len(requests)} requests rejected, e.g. request {rejected[0].id}: "
              f"{rejected[0].reject_reason} (requests.csv lists each reason)", file=sys.stderr)
    if not args.quiet:
        print("wrote " + ", ".join(_shown(v) for v in paths.values()))
    return 0


def _deployment_line(label: str, cfg, quantization, engine: str, result) -> str:
    """What a pool runs: model, GPU, parallelism, quantization, engine, KV cache, and the requests it got."""
    p = cfg.options.parallel
    quant = quantization if isinstance(quantization, str) else quantization.preset
    return (f"{label}: {cfg.model.name} on {cfg.hardware.name} "
            f"(TP={p.tensor_parallel}, PP={p.pipeline_parallel}, {quant}), {engine} engine "
            f"({cfg.scheduler} scheduler), {cfg.allocator} KV cache of {result.total_blocks:,} blocks x "
            f"{cfg.kv_cache.block_size_tokens} tokens per replica, {len(result.requests):,} requests")


def _cascade_lines(name: str, cascade, summary: dict) -> str:
    """A cascade's cost and each tier's share of the work, under the summary table."""
    from infersim.report import figure
    lines = [f"{name}: cascade of {len(cascade.tiers)} tiers ({cascade.policy} on escalation), {summary['gpus']} "
             f"GPUs, {figure(summary['gpu_seconds'], ',.0f')} GPU-seconds"]
    for k, tier in enumerate(summary["tiers"]):
        lines.append(f"  tier {k} {tier['model']} x{tier['replicas']} ({tier['gpus']} GPUs): served "
                     f"{tier['requests_served']:,}, escalated {tier['requests_escalated']:,}, final "
                     f"{tier['requests_final']:,}; busy {figure(tier['busy_fraction'], '.1f', 100)}%, "
                     f"{figure(tier['gpu_seconds'], ',.0f')} GPU-seconds")
    return "\n".join(lines)


def _scenarios_done(done: int, total: int) -> None:
    width = 40
    filled = width * done // total
    print(f"\rsimulating [{'#' * filled}{'.' * (width - filled)}] {done} of {total} scenarios done",
          end="\n" if done == total else "", file=sys.stderr, flush=True)


def cmd_compare(args) -> int:
    from infersim.compare import build_rows, comparison_json, legend, simulate_files, text_table, write_comparison
    from infersim.roofline import SpecError
    if len(args.scenarios) < 2:
        raise SpecError("SCENARIO.yaml", "compare needs at least 2 scenario files (the first is the baseline)",
                        _shown(args.scenarios[0]))
    _writable_folder(args.out, "--out")
    jobs = min(args.jobs or os.cpu_count() or 1, len(args.scenarios))
    show = args.progress or sys.stderr.isatty()
    rows = build_rows(simulate_files(args.scenarios, jobs, _scenarios_done if show else None))
    paths = write_comparison(rows, args.out, plot=not args.no_plot)
    if args.json:
        print(json.dumps(comparison_json(rows), indent=2, allow_nan=False))
    else:
        print("\n".join(legend(rows)))
        print(f"ratios in brackets are to the first scenario, {rows[0].result.name}\n")
        print(text_table(rows))
    print("wrote " + ", ".join(_shown(p) for p in paths), file=sys.stderr)
    return 0


def cmd_plan(args) -> int:
    import importlib.util
    from pathlib import Path

    from infersim.executors import make_executor, progress_bar
    from infersim.plan import load_plan, ranking_table, run_plan, short_trace_note
    from infersim.report import json_safe
    ctx = load_plan(args.plan)
    out = Path(args.out or Path("runs") / Path(args.plan).stem)
    _writable_folder(out, "--out")
    executor = make_executor(args.executor, args.jobs or os.cpu_count() or 1, args.address)
    show = args.progress or sys.stderr.isatty()
    result = run_plan(ctx, executor, progress_bar if show else None)
    paths = {"plan": out / "plan.json"}
    paths["plan"].write_text(json.dumps(json_safe(result), indent=1, allow_nan=False) + "\n")
    if importlib.util.find_spec("infersim.plan_report") is None:
        print("infersim: note: no infersim.plan_report module here, so no report.html/report.md (plan.json "
              "holds every number)", file=sys.stderr)
    else:
        from infersim.plan_report import write_reports
        paths |= write_reports(result, out)
    print(ranking_table(result))
    rates = [c["max_rate_per_replica"]["value"] for c in result["candidates"]
             if c.get("name") == result["chosen"] and c.get("max_rate_per_replica")]
    note = short_trace_note(ctx, rates[0]) if rates else None
    if note:
        print(note, file=sys.stderr)
    if result["feasible"]:
        print(f"\nchosen: {result['chosen']}")
    else:
        print(f"\nno candidate meets the SLOs; closest: {result['closest'] or 'none (none could run)'}")
    print("wrote " + ", ".join(_shown(p) for p in paths.values()), file=sys.stderr)
    return 0


def _validating_hardware(name: str, device: str):
    """`--hardware` for `infersim validate` on `device`: a CPU's spec for the CPU (the registry holds GPUs), and
    its spec needs the fp32 peak, at which the kernels compute."""
    from infersim.roofline import SpecError, get_hardware, hardware_names
    hw = get_hardware(name, field="--hardware")
    if device == "cpu" and name in hardware_names():
        raise SpecError("--hardware", "names a GPU, but --device cpu times this CPU's kernels: give the CPU's spec "
                        "(infersim calibrate --out cpu.yaml writes it) or leave --hardware out", name)
    if "fp32" not in hw.peak_flops_per_s:
        raise SpecError("--hardware", f"has no fp32 tensor-core peak (peak_flops_per_s.fp32), which the validating "
                        f"kernels compute at; it has {', '.join(sorted(hw.peak_flops_per_s))}", _shown(name))
    return hw


def cmd_validate(args) -> int:
    import functools
    import json
    from pathlib import Path

    from infersim.kernels.validate import family_errors, sweep, validate, write_csv
    from infersim.plots import plot_validation
    from infersim.report import table
    from infersim.roofline import SpecError, get_hardware
    out = Path(args.out)
    hw = _validating_hardware(args.hardware, args.device) if args.hardware else None
    _writable_folder(out, "--out")
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    if args.device == "cpu":
        import numpy as xp

        from infersim.kernels.measure import interleaved_median_times_s
        if hw is None:
            from infersim.kernels.calibrate import calibrate_host
            say("no --hardware given: calibrating this CPU first (infersim calibrate --out F.yaml saves it)")
            hw = calibrate_host(progress=say)
            (out / "hardware.yaml").write_text(hw.to_yaml())
            say(f"wrote {_shown(out / 'hardware.yaml')} (this CPU's spec)")
        measure = functools.partial(interleaved_median_times_s, progress=say)
    else:
        from infersim.kernels import device
        if not device.available():
            raise SpecError("--device gpu", "needs CuPy and a CUDA GPU (pip install 'infersim[gpu]'); "
                            "use --device cpu here")
        hw = hw or get_hardware(device.registry_name())
        xp = device.require()
        from infersim.kernels.measure import gpu_median_time_s

        def measure(fns):
            return [gpu_median_time_s(fn) for fn in fns]
    cases = sweep(hw, xp, args.quick)
    say(f"timing {len(cases)} kernels")
    rows = validate(cases, hw, measure, progress=say)
    write_csv(rows, out / "validation.csv")
    errors = family_errors(rows)
    from infersim.kernels.quant import error_report
    quant_errors = error_report()
    (out / "summary.json").write_text(json.dumps({"hardware": hw.name, "device": args.device,
                                                  "families": errors, "quantization_error": quant_errors},
                                                 indent=2) + "\n")
    plots = plot_validation(rows, hw, out, f"{args.device}: measured vs roofline on {hw.name}")
    if not args.quiet:
        print(table(["kernel", "shape", "measured_us", "predicted_us", "error", "why"],
                    [[r["kernel"], r["shape"], f"{r['measured_s'] * 1e6:.1f}", f"{r['predicted_s'] * 1e6:.1f}",
                      f"{100 * r['error']:+.0f}%", r["explanation"]] for r in rows]))
        print()
        print(table(["family", "kernels", "median |error|", "p90 |error|"],
                    [[f, str(e["kernels"]), f"{100 * e['median_abs_err']:.0f}%", f"{100 * e['p90_abs_err']:.0f}%"]
                     for f, e in errors.items()]))
        print()
        print(table(["quantization scheme (activations with outlier channels)", "relative output error"],
                    [[k, f"{v:.4f}"] for k, v in quant_errors.items()]))
        print("wrote " + ", ".join(_shown(p) for p in [out / "validation.csv", out / "summary.json", *plots]))
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get one line naming the option, not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infersim", description="LLM inference performance model and simulator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("models", help="list the built-in models").set_defaults(func=cmd_models)

    run = sub.add_parser("run", help="simulate a serving scenario (a YAML file, see scenarios/)")
    run.add_argument("scenario", metavar="SCENARIO.yaml")
    run.add_argument("--out", metavar="DIR", type=_out_dir, help="where to write summary.json, requests.csv, "
                     "timeline.csv and run.png (default runs/<the scenario file's name without .yaml>)")
    run.add_argument("--no-plot", action="store_true", help="skip run.png")
    run.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    run.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors (on stderr)")
    run.set_defaults(func=cmd_run)
    cm = sub.add_parser("compare", help="simulate scenarios side by side (in parallel), with ratios to the first")
    cm.add_argument("scenarios", metavar="SCENARIO.yaml", nargs="+", help="two or more; the first is the baseline")
    cm.add_argument("--out", metavar="DIR", type=_out_dir, default="runs/compare",
                    help="where to write compare.json, compare.md and compare.png (default runs/compare)")
    cm.add_argument("--jobs", type=_positive_int, help="scenarios simulated at once, one process each (default: "
                    "the CPU count, at most the number of scenarios; 1 runs them one after another here)")
    cm.add_argument("--json", action="store_true", help="print compare.json instead of the table")
    cm.add_argument("--no-plot", action="store_true", help="skip compare.png")
    cm.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    cm.set_defaults(func=cmd_compare)
    sub.add_parser("hardware", help="list the built-in hardware").set_defaults(func=cmd_hardware)
    pl = sub.add_parser("plan", help="capacity planning: the cheapest deployment meeting SLOs at a target rate "
                        "(a plan YAML, see scenarios/plans/)")
    pl.add_argument("plan", metavar="PLAN.yaml")
    pl.add_argument("--out", metavar="DIR", type=_out_dir,
                    help="where to write plan.json, report.html, report.md and the plots (default runs/<the plan file's name without .yaml>)")
    pl.add_argument("--jobs", type=_positive_int, help="local worker processes (default: the CPU count)")
    pl.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local processes (default) or a Ray cluster (pip install 'infersim[ray]')")
    pl.add_argument("--address", help="with --executor ray: the cluster's address (default: start a local one)")
    pl.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    pl.set_defaults(func=cmd_plan)
    e = sub.add_parser("engines", help="list the engine presets and the defaults each picks on a GPU")
    e.add_argument("--hardware", default="h100-sxm", help="the GPU whose defaults to show (default h100-sxm)")
    e.add_argument("--max-model-len", type=_int_at_least(2), default=8192,
                   help="the longest context served (default 8192)")
    e.add_argument("--tp", type=_positive_int, default=1, help="tensor-parallel size (default 1)")
    e.set_defaults(func=cmd_engines)

    cs = sub.add_parser("compare-serving", help="simulate measured serving runs and compare (CSV table or a "
                        "vllm bench serve --save-result JSON)")
    cs.add_argument("runs", metavar="FILE.csv|FILE.json", nargs="+",
                    help="CSV tables of runs and/or vllm bench serve JSON files (a run each)")
    cs.add_argument("--engine", default="vllm-v1", help="engine preset to simulate with (default vllm-v1; see "
                    "infersim engines), or a YAML file of a scenario's engine, scheduler and kv_cache sections (the "
                    "preset with those keys over it, as calibrate --from-serving writes it)")
    cs.add_argument("--model", help="with JSON files: the model they measured")
    cs.add_argument("--hardware", help="with JSON files: the GPU they ran on")
    cs.add_argument("--tp", type=_positive_int, help="with JSON files: their tensor parallelism (default 1)")
    cs.add_argument("--quant", help="with JSON files: their quantization preset (default fp16; a CSV's rows "
                    "give theirs in a precision column)")
    cs.add_argument("--ttft-ms", type=_positive_number, default=200.0,
                    help="the mean TTFT bound for the highest sustainable rate (default 200)")
    cs.add_argument("--json", action="store_true", help="print the comparison as JSON (keys: engine, errors, "
                    "rate_within_ttft, runs)")
    cs.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    cs.add_argument("--plot", metavar="FILE.png", type=_figure_path,
                    help="measured and simulated latency against request rate per configuration")
    cs.set_defaults(func=cmd_compare_serving)

    r = sub.add_parser("roofline", help="per-op cost of one prefill or decode step")
    r.add_argument("--model", required=True, help="registry name (see `infersim models`) or config.json path")
    r.add_argument("--hardware", required=True, help="registry name (see `infersim hardware`) or YAML path")
    r.add_argument("--phase", choices=("decode", "prefill"), default="decode")
    r.add_argument("--batch", type=_int_at_least(1, MAX_BATCH), default=1, help="sequences in the batch (default 1)")
    r.add_argument("--context", type=_nonnegative_int, default=None,
                   help="decode: tokens already cached per sequence (default 1024, or the model's context less 1)")
    r.add_argument("--prompt", type=_positive_int, default=None,
                   help="prefill: prompt tokens (default 1024, or the model's context)")
    r.add_argument("--quant", default="fp16", help="fp16, bf16, w8a16, w4a16, w3a16, w2a16, nf4, w8a8, "
                   "w8a8-naive, llm-int8, fp8, sparse-2:4, nvfp4, mxfp4 (default fp16; roofline.quant.PRESETS)")
    r.add_argument("--kv-bits", type=_positive_int, default=None, help="KV-cache bits: 16, 8 or 4")
    r.add_argument("--no-flash", action="store_true", help="materialise attention scores (no FlashAttention)")
    r.add_argument("--tp", type=_positive_int, default=1, help="tensor-parallel GPUs")
    r.add_argument("--pp", type=_positive_int, default=1, help="pipeline-parallel stages")
    r.add_argument("--sampling", choices=("greedy", "top_p"),
                   help="the sampling kernel that ends the step (default top_p: sort-free top-p over the vocabulary)")
    r.add_argument("--engine", metavar="PRESET|FILE.yaml", help="cost the step as an engine preset runs it (see "
                   "infersim engines): its fusions, its kernels (a CUDA graph's where it captures the step, whole or "
                   "in pieces, else its eager path), its all-reduce, and its host time per step; or as a YAML file of "
                   "a scenario's engine, scheduler and kv_cache sections sets them over its preset")
    r.add_argument("--json", action="store_true", help="print JSON (keys: ops, totals, memory; engine with --engine)")
    r.add_argument("--plot", metavar="FILE.png", type=_figure_path,
                   help="draw the ops on the hardware's roofline chart")
    r.set_defaults(func=cmd_roofline)

    c = sub.add_parser("compare-profile", help="roofline vs a measured per-op profile (Vidur CSV format)")
    c.add_argument("profile", metavar="FILE.csv")
    c.add_argument("--model", help="the profiled model (default: read its shape from the CSV columns)")
    c.add_argument("--hardware", required=True, help="registry name or YAML path of the GPU it was measured on")
    c.add_argument("--json", action="store_true", help="print every row's predicted and measured time as JSON")
    c.add_argument("--plot", metavar="FILE.png", type=_figure_path, help="predicted vs measured scatter plot")
    c.set_defaults(func=cmd_compare_profile)

    v = sub.add_parser("validate", help="time the validating kernels and compare them with the roofline")
    v.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="time the kernels on this CPU "
                   "(NumPy/Numba, the default) or on the CUDA GPU in use (CuPy)")
    v.add_argument("--out", metavar="DIR", default="validation", type=_out_dir, help="where to write validation.csv, "
                   "summary.json, the plots and, when it calibrated this CPU, hardware.yaml (default ./validation)")
    v.add_argument("--hardware", help="the device's hardware spec (default: calibrate this CPU, or the "
                   "registry entry of the GPU found)")
    v.add_argument("--quick", action="store_true", help="fewer, smaller shapes")
    v.add_argument("--quiet", action="store_true", help="print nothing but errors")
    v.set_defaults(func=cmd_validate)

    k = sub.add_parser("calibrate", help="measure this machine, or fit efficiency factors to a profile; "
                       "writes a hardware YAML")
    k.add_argument("--device", choices=("cpu", "gpu"),
                   help="measure this CPU (default) or the GPU in use (its registry entry with measured factors)")
    k.add_argument("--from-profile", metavar="FILE.csv", help="fit the efficiency factors to a Vidur profile")
    k.add_argument("--hardware", help="with --from-profile: the registry GPU the profile was measured on; with "
                   "--from-serving JSON files: the GPU they ran on")
    k.add_argument("--model", help="with --from-profile: the profiled model (default: from the CSV); with "
                   "--from-serving JSON files: the model they measured")
    k.add_argument("--tp", type=_positive_int, help="with --from-serving JSON files: their tensor parallelism "
                   "(default 1)")
    k.add_argument("--quant", help="with --from-serving JSON files: their quantization preset (default fp16)")
    k.add_argument("--from-serving", metavar="FILE", nargs="+", help="fit an engine preset's host time per step "
                   "to measured serving runs (the CSV tables or vllm bench serve JSON files compare-serving "
                   "reads); writes a scenario engine block")
    k.add_argument("--engine", help="with --from-serving: the preset to fit (default vllm-v1), or a YAML file of "
                   "a scenario's engine, scheduler and kv_cache sections")
    k.add_argument("--out", metavar="FILE.yaml", type=_yaml_path, help="where to write the spec (default NAME.yaml)")
    k.set_defaults(func=cmd_calibrate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("calibrate", "validate"):  # before anything imports NumPy
        from infersim.kernels.pools import quiet_idle_blas_threads
        quiet_idle_blas_threads()
    from infersim.roofline.errors import SpecError
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, so that a reader gone (| head) is seen here, not at exit
        return code
    except BrokenPipeError:  # the reader left: stop quietly, as Python's documentation on SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush finds nowhere to fail
        return 1
    except SpecError as err:
        print(f"infersim: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"infersim: error: {err.filename or ''}: {err.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
