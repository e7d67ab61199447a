"""The options the commands share, declared once, each with one default.

Every command that takes one of these options declares its parameter with the type below and
the default constant beside it (``seq_len: SeqLenOpt = SEQ_LEN``), so the same flag means the
same thing, with the same default, in every command; ``tests/test_cli_options.py`` reads the
click commands back and fails when two commands disagree. ``archcost ci`` runs take the same
defaults (``archcost/ci.py`` imports them).

Why these defaults (README, "Options every command shares"):

- ``--seq-len 1024``: GPT-2's context, a size every bundled model and a CPU run of
  ``validate`` handle; large runs name theirs.
- ``--dtype fp32``: what PyTorch trains in when the model file asks for nothing else, and the
  one precision every command runs (``validate`` runs real steps); ``--dtype bf16-mixed``
  for today's large-model training.
- ``--fp8-recipe``: none given means ``tensorwise`` for ``--dtype fp8`` (per-tensor current
  scaling, the recipe of torchao/torchtitan and Megatron-Bridge's FP8 performance runs).
- ``--hardware``: no default profile in the declaration; each command says what it falls back
  on (``analyze``: none, no time estimate; ``plan``/``estimate``/``sweep``: ``dgx-h100-ndr``;
  ``validate``: the bundled profile of ``--device``).
- ``--runtime eager``: PyTorch running the model file as written (no fusion, the default
  SDPA kernel), what ``validate`` measures; name the training stack (megatron, torchtitan, ...)
  to price how it executes the same graph.
- ``--usable-memory 0.9``: a plan (and ``analyze --solve``/``fits``) may fill 90% of each
  GPU's memory; the rest goes to the CUDA context, NCCL buffers and fragmentation.
- ``--gbs``: about 4M tokens per step (a power of two of sequences), the order of the
  published large-model runs.
- ``--routing balanced``, ``--mask-density 1.0``, ``--trace-timeout 120``: what a trace assumes
  where values are unknown, and when it gives up (``archcost/trace/assume.py``).
"""

from __future__ import annotations

import math
from typing import Annotated

import typer

from archcost.errors import ConfigError

# one default per shared option
BATCH_SIZE = 1
SEQ_LEN = 1024
DTYPE = "fp32"
OPTIMIZER = "adamw"
RECOMPUTE = "none"
RUNTIME = "eager"  # the model as written, what validate runs
FALLBACK_CLUSTER = "dgx-h100-ndr"  # plan, estimate and sweep without --hardware
USABLE_MEMORY = 0.9
OBJECTIVE = "time"
TOP = 10
PARTITION = "balanced"
DEVICE = "cpu"
NPROC = 1
TIMEOUT_S = 600.0
FAIL_ABOVE = "2%"  # diff and ci: the change for the worse a watched metric may show
GBS_TOKENS = 4 * 2**20  # --gbs default: about this many tokens per step
ROUTING = "balanced"  # a mixture-of-experts router's choices: archcost/trace/assume.py
MASK_DENSITY = 1.0  # a mask computed from the weights is all true: the upper bound
TRACE_TIMEOUT_S = 120.0  # archcost/trace/watchdog.py DEFAULT_LIMIT_S
MAX_SIZE = 2**31 - 1  # batch, sequence and GPU counts: beyond this no step is meaningful

ModelArg = Annotated[str, typer.Argument(
    help="Model file (path/to/model.py or path/to/model.py:builder). It is run as Python.",
    show_default=False)]
BatchSizeOpt = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, max=MAX_SIZE, help="Sequences per step.")]
SeqLenOpt = Annotated[int, typer.Option(
    "--seq-len", "-s", min=1, max=MAX_SIZE, help="Tokens per sequence.")]
GbsOpt = Annotated[int | None, typer.Option(
    "--gbs", min=1, max=MAX_SIZE, show_default=False,
    help="Global batch in sequences (default: about 4M tokens, a power of two).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", show_default=False,
    help="Builder argument KEY=VALUE (repeatable), typed by the builder's signature.")]
DtypeOpt = Annotated[str, typer.Option(
    "--dtype", help="Precision: fp32, bf16, fp16 (all tensors), bf16-mixed, fp16-mixed (16-bit "
    "compute, fp32 master weights and optimizer states); fp8, mxfp8, nvfp4 (bf16-mixed with "
    "the transformer layers' linear GEMMs in that format; mxfp8 and nvfp4 on Blackwell).")]
Fp8RecipeOpt = Annotated[str | None, typer.Option(
    "--fp8-recipe", show_default=False,
    help="With --dtype fp8: tensorwise (per-tensor current scaling, the default), delayed "
    "(scales from an amax history), rowwise (one scale per row).")]
LowpGatherOpt = Annotated[bool, typer.Option(
    "--fp8-all-gather", show_default=False,
    help="With --dtype fp8, mxfp8 or nvfp4: parameter all-gathers (FSDP/ZeRO-3 before each "
    "pass, the distributed optimizer after the step) move the converted linears' weights in "
    "that format (torchao's FSDP float8 all-gather, Megatron's --fp8-param-gather).")]
OptimizerOpt = Annotated[str, typer.Option(
    "--optimizer", help="Optimizer: adamw, adam, sgd (one kernel per update step), adamw-fused, "
    "adam-fused (one fused kernel).")]
RecomputeOpt = Annotated[str, typer.Option(
    "--recompute", help="Activation recomputation of repeated blocks: none, selective, full.")]
_HARDWARE_HELP = ("GPU or cluster profile: a bundled name (archcost profiles list) or a .yaml "
                  "file. Without it: analyze adds no time estimate; plan, estimate and sweep use "
                  f"{FALLBACK_CLUSTER}; validate the bundled profile of --device.")
HardwareOpt = Annotated[str | None, typer.Option(
    "--hardware", show_default=False, help=_HARDWARE_HELP)]
# plan, estimate and sweep also read the old spelling --cluster (documented before 0.2)
HardwareOrClusterOpt = Annotated[str | None, typer.Option(
    "--hardware", "--cluster", show_default=False, help=_HARDWARE_HELP)]
GpusOpt = Annotated[str | None, typer.Option(
    "--gpus", show_default=False,
    help="GPU count, or a comma list to compare (e.g. 512,1024); default: one node of the "
    "cluster.")]
UsableMemoryOpt = Annotated[float, typer.Option(
    "--usable-memory", min=0.0, max=1.0,
    help="Share of each GPU's memory a plan may fill (the rest: CUDA context, NCCL buffers, "
    "workspaces, fragmentation).")]
ObjectiveOpt = Annotated[str, typer.Option(
    "--objective", help="Rank plans by: time (step time), cost ($ per million tokens), energy "
    "(joules per token).")]
ConstraintOpt = Annotated[list[str] | None, typer.Option(
    "--constraint", show_default=False, help="Plan filter, e.g. tp<=8 (repeatable).")]
FixOpt = Annotated[list[str] | None, typer.Option(
    "--fix", show_default=False, help="Pin plan fields, e.g. pp=4 or zero=1,recompute=full "
    "(repeatable).")]
TopOpt = Annotated[int, typer.Option("--top", min=1, max=MAX_SIZE, help="Rows shown.")]
PartitionOpt = Annotated[str, typer.Option(
    "--partition", help="Pipeline stages: balanced (on traced layer costs, embedding and head "
    "included) or uniform (layers / stages).")]
OverlapOpt = Annotated[bool | None, typer.Option(
    "--overlap-dp/--no-overlap-dp", show_default=False,
    help="Data-parallel collectives overlap backward (default: as the runtime does at the "
         "plan's ZeRO stage).")]
PlanOpt = Annotated[str, typer.Option(
    "--plan", show_default=False,
    help='The plan, e.g. "dp=8,tp=8,pp=4,zero=1,gbs=512"; or a JSON file from archcost plan -o '
    "or estimate -o.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
# generation (archcost infer, archcost validate --infer)
BATCH, INPUT_LEN, OUTPUT_LEN = 1, 128, 128
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1,
                                       help="Sequences generated together.")]
InputLenOpt = Annotated[int, typer.Option("--input-len", "-i", min=1,
                                          help="Prompt tokens per sequence.")]
OutputLenOpt = Annotated[int, typer.Option("--output-len", "-n", min=1,
                                           help="Tokens generated per sequence.")]
MarkdownOpt = Annotated[bool, typer.Option(
    "--markdown", help="Print Markdown instead of tables (e.g. >> $GITHUB_STEP_SUMMARY).")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", "-o", show_default=False,
    help="Write the result to this file, atomically: the JSON document (report: the Markdown "
    "or HTML page).")]
TimelineOpt = Annotated[str | None, typer.Option(
    "--timeline", show_default=False,
    help="Write the simulated schedule as a Chrome/Perfetto trace (.json).")]
EmitOpt = Annotated[str | None, typer.Option(
    "--emit", show_default=False,
    help="The plan as trainer configuration: torchtitan, deepspeed, megatron. Printed alone on "
         "stdout (the tables go to stderr) unless --emit-file is given.")]
EmitFileOpt = Annotated[str | None, typer.Option(
    "--emit-file", show_default=False,
    help="Write the --emit configuration to this file (atomically); the tables stay on "
         "stdout.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
NprocOpt = Annotated[int, typer.Option(
    "--nproc", min=1, max=4096, help="Processes (one per GPU on cuda).")]
RoutingOpt = Annotated[str, typer.Option(
    "--routing", help="Where routers pick experts: balanced, capacity=F (busiest expert F x "
    "the mean) or histogram=FILE (JSON list of tokens per expert).")]
MaskDensityOpt = Annotated[float, typer.Option(
    "--mask-density", help="Share of a mask computed from the weights that is true (what "
    "nonzero or x[mask] selects).")]
TraceTimeoutOpt = Annotated[float, typer.Option(
    "--trace-timeout", help="Seconds without progress before a trace is stopped.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
# a replica's parallelism (infer, sweep --infer)
TpOpt = Annotated[int, typer.Option("--tp", min=1, help="Tensor-parallel GPUs per replica.")]
PpOpt = Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages per replica.")]
# the software stack (every command that prices a step)
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="Software stack that runs the model: a runtime profile name or file "
    "(archcost profiles list): eager (PyTorch as written), torchtitan, torchtitan-compile, "
    "fsdp, deepspeed, megatron, megatron-2022.")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", help="Seconds before a multi-process run is stopped.")]


def default_gbs(seq_len: int) -> int:
    """The ``--gbs`` default: about ``GBS_TOKENS`` tokens, a power of two of sequences."""
    return max(1, 2 ** round(math.log2(max(1.0, GBS_TOKENS / seq_len))))


def gpu_counts(text: str | None) -> list[int] | None:
    """``--gpus 8`` or ``--gpus 512,1024`` as counts; None when not given."""
    if text is None:
        return None
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--gpus {text!r}: give a GPU count or a comma list, e.g. 8 or "
                          "512,1024") from None
    if not counts or any(not 1 <= n <= MAX_SIZE for n in counts):
        raise ConfigError(f"--gpus {text!r}: GPU counts are whole numbers from 1 to {MAX_SIZE}")
    return counts


def check_usable_memory(share: float) -> float:
    """``--usable-memory`` checked: a share in (0, 1]."""
    if not 0 < share <= 1:
        raise ConfigError(f"--usable-memory {share}: give a share in (0, 1], e.g. 0.9")
    return share


def one_output(as_json: bool, markdown: bool, csv: bool = False) -> None:
    """``--json``, ``--markdown`` (and ``--csv``) each replace the tables: one at a time."""
    given = [name for name, on in (("--json", as_json), ("--markdown", markdown),
                                   ("--csv", csv)) if on]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)}: choose one output")


def capture_options(routing: str, mask_density: float, trace_timeout: float):
    """The trace's assumptions and watchdog limit from the options above (checked)."""
    from archcost.trace.assume import CaptureOptions, parse_routing

    return CaptureOptions(parse_routing(routing), mask_density, trace_timeout)
