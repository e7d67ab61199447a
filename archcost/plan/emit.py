"""A plan as ready trainer configuration: a torchtitan job TOML, a DeepSpeed config and
Megatron-LM arguments. Where a trainer has no equivalent of a plan feature the closest valid
setting is emitted and ``caveats`` says what differs (the TOML carries these as comments).

Every key and flag is in ``tests/data/trainer_keys/`` with the file it was read from: torchtitan
``torchtitan/config/job_config.py`` (plus ``distributed/parallel_dims.py``,
``distributed/pipeline_parallel.py``, ``models/llama3/infra/parallelize.py``), PyTorch
``torch/distributed/pipelining/schedules.py``, DeepSpeed ``docs/_pages/config-json.md``,
``runtime/zero/config.py``, ``runtime/precision_config.py``, ``runtime/pipe/engine.py``, and
Megatron-LM ``megatron/training/arguments.py`` with its Megatron-FSDP user guide.

ZeRO on torchtitan: FSDP2 shards over ``data_parallel_shard_degree * context_parallel_degree``
and replicates over ``data_parallel_replicate_degree``; their product with cp, tp and pp is the
world. zero=3 is ``shard = dp``; HSDP (hybrid, shard group g) is ``shard = g / cp``,
``replicate = dp * cp / g``; zero=0 is DDP (``replicate = dp``), which torchtitan allows only
on a 1-D mesh; zero=1/2 have no torchtitan form and become FSDP with
``fsdp_reshard_after_forward = "never"`` (FSDP's SHARD_GRAD_OP).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from archcost.errors import ConfigError, PlanError
from archcost.plan.space import Offload, Plan, Recompute, Schedule, ZeroStage

__all__ = ["FORMATS", "LOW_PRECISIONS", "PRECISIONS", "caveats", "deepspeed_json", "emit", "megatron_args",
           "torchtitan_toml"]

PRECISIONS = ("fp32", "bf16", "fp16", "bf16-mixed", "fp16-mixed")
LOW_PRECISIONS = ("fp8", "mxfp8", "nvfp4")  # emitted as bf16-mixed, with a note
FORMATS = ("torchtitan", "deepspeed", "megatron")


class _Built(NamedTuple):
    config: object  # TOML sections, DeepSpeed dict or Megatron argument list
    notes: list[str]  # what differs from the plan, one line each


# ---------------------------------------------------------------- shared checks ---------------

def _precision(precision: str) -> tuple[str, list[str]]:
    """The precision the configuration is written for, and a note when it differs: a low
    precision is emitted as its bf16-mixed base (the trainers' FP8 switches are not emitted)."""
    p = precision.strip().lower()
    if p not in PRECISIONS + LOW_PRECISIONS:
        raise ConfigError(f"precision {precision!r}: allowed "
                          f"{', '.join(PRECISIONS + LOW_PRECISIONS)}")
    if p in LOW_PRECISIONS:
        return "bf16-mixed", [f"precision {p}: emitted as bf16-mixed; turn on the trainer's own "
                              f"{p} training (Transformer Engine recipe, torchao converter)"]
    return p, []


def _check_batch(plan: Plan) -> None:
    if plan.gbs % (plan.dp * plan.mbs):
        raise PlanError(f"gbs({plan.gbs}) % (dp({plan.dp})*mbs({plan.mbs})) != 0: the global "
                        "batch must split into whole micro-batches")


def _vpp_layers(plan: Plan, layers: int | None) -> int | None:
    """Layers per virtual pipeline stage (``layers // (pp*vpp)``), None without ``layers``."""
    if layers is None:
        return None
    chunks = plan.pp * plan.vpp
    if layers % chunks:
        raise PlanError(f"layers({layers}) % (pp({plan.pp})*vpp({plan.vpp})) != 0: every "
                        "(virtual) pipeline stage needs the same number of layers")
    return layers // chunks


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---------------------------------------------------------------- torchtitan ------------------

_TITAN_SCHEDULE = {Schedule.GPIPE: "GPipe", Schedule.ONE_F_ONE_B: "1F1B",
                   Schedule.INTERLEAVED: "Interleaved1F1B"}
_TITAN_AC = {Recompute.NONE: "none", Recompute.SELECTIVE: "selective", Recompute.FULL: "full"}


def _titan_data_parallel(plan: Plan) -> tuple[int, int, str, list[str]]:
    """(replicate, shard, fsdp_reshard_after_forward, notes); replicate * shard == dp."""
    if plan.zero == ZeroStage.NONE:
        if plan.dp == 1 or (plan.gpus == plan.dp and plan.ep == 1):
            notes = ["zero=0 with cp>1: torchtitan always shards over the cp ranks (FSDP spans "
                     "data_parallel_shard_degree * context_parallel_degree); emitted "
                     "fsdp_reshard_after_forward = never"] if plan.cp > 1 else []
            return plan.dp, 1, "never", notes
        return 1, plan.dp, "never", [
            "zero=0: torchtitan's DDP runs only on a 1-D data-parallel mesh and cannot host "
            "expert parallel; emitted FSDP over dp with fsdp_reshard_after_forward = never "
            "(~ZeRO-2: gradients and optimizer state sharded)"]
    notes = []
    if plan.zero in (ZeroStage.OPTIMIZER, ZeroStage.GRADIENTS):
        notes.append(f"zero={int(plan.zero)}: torchtitan has no optimizer/gradient-only "
                     "sharding; emitted FSDP with fsdp_reshard_after_forward = never "
                     "(SHARD_GRAD_OP: parameters stay gathered from forward to backward, "
                     "sharded at rest)")
    reshard = "default" if plan.zero == ZeroStage.PARAMETERS else "never"
    if not plan.hybrid_shard:
        return 1, plan.dp, reshard, notes
    group = plan.zero_group
    if group % plan.cp == 0:
        shard = group // plan.cp
    else:
        shard = max([d for d in _divisors(plan.dp) if d * plan.cp <= group], default=1)
        notes.append(f"shard_group={group}: torchtitan's FSDP group is data_parallel_shard_degree"
                     f" * context_parallel_degree, a multiple of cp({plan.cp}); emitted "
                     f"{shard * plan.cp} ranks per shard group")
    return plan.dp // shard, shard, reshard, notes


def _titan_expert(plan: Plan, shard: int) -> tuple[int, list[str]]:
    """EP degree valid for torchtitan (ep % cp == 0, dp_shard * cp % ep == 0) and notes."""
    if plan.ep == 1:
        return 1, []
    span = shard * plan.cp
    ep = max([d for d in _divisors(plan.ep) if d % plan.cp == 0 and span % d == 0], default=1)
    notes = []
    if ep != plan.ep:
        notes.append(f"ep={plan.ep}: torchtitan carves expert ranks from data_parallel_shard_"
                     f"degree * cp = {span} ranks (ep % cp == 0, that product % ep == 0); "
                     f"emitted expert_parallel_degree = {ep}")
    if plan.tp > 1:
        notes.append("newer torchtitan adds expert_tensor_parallel_degree (default 1: experts "
                     "also take the tp ranks); set it to tensor_parallel_degree to match this "
                     "plan")
    return ep, notes


def _titan_pipeline(plan: Plan, layers: int | None) -> dict[str, object]:
    if plan.pp == 1:
        return {}
    keys: dict[str, object] = {
        "pipeline_parallel_schedule": _TITAN_SCHEDULE[plan.schedule],
        "pipeline_parallel_microbatch_size": plan.mbs,
        # torchtitan weighs the embedding and the head as one layer each by default; 0 keeps the
        # plan's equal split of transformer layers (Megatron's layers / stages)
        "pipeline_parallel_first_stage_less_layers": 0,
        "pipeline_parallel_last_stage_less_layers": 0,
    }
    if layers is not None and (plan.vpp > 1 or layers % plan.pp == 0):
        keys["pipeline_parallel_layers_per_stage"] = _vpp_layers(plan, layers)
    elif plan.vpp > 2:
        raise PlanError(f"vpp={plan.vpp}: torchtitan defaults to 2 stages per rank; pass "
                        "layers=<model layers> to set pipeline_parallel_layers_per_stage")
    return keys


def _titan_precision(plan: Plan, precision: str, fsdp: bool) -> tuple[str, list[str]]:
    notes = []
    if precision == "fp32":
        return "float32", notes
    if precision.startswith("fp16"):
        notes.append(f"precision {precision}: torchtitan trains in bfloat16 or float32 only; "
                     "emitted bfloat16")
    elif precision == "bf16":
        notes.append("precision bf16: torchtitan keeps float32 parameters and optimizer state "
                     "and computes in bfloat16 (mixed), not pure bf16")
    if not fsdp and plan.gpus > plan.dp:
        notes.append("mixed_precision_param acts through FSDP or (DDP/single device) autocast; "
                     "this mesh has neither, so torchtitan computes in float32")
    return "bfloat16", notes


def _torchtitan(plan: Plan, seq_len: int, precision: str, layers: int | None = None) -> _Built:
    precision, low_notes = _precision(precision)
    _check_batch(plan)
    divisor = plan.tp * 2 * plan.cp
    if seq_len % divisor:
        raise PlanError(f"seq_len({seq_len}) % (tp({plan.tp}) * 2 * cp({plan.cp})) != 0: "
                        f"torchtitan needs a multiple of {divisor}")
    replicate, shard, reshard, notes = _titan_data_parallel(plan)
    fsdp = shard * plan.cp > 1
    ep, ep_notes = _titan_expert(plan, shard)
    local_batch = plan.mbs if plan.pp == 1 else plan.gbs // plan.dp
    param_dtype, dtype_notes = _titan_precision(plan, precision, fsdp)
    parallelism: dict[str, object] = {
        "data_parallel_replicate_degree": replicate,
        "data_parallel_shard_degree": shard,
        "tensor_parallel_degree": plan.tp,
        "pipeline_parallel_degree": plan.pp,
        "context_parallel_degree": plan.cp,
        "expert_parallel_degree": ep,
    }
    if fsdp:
        parallelism["fsdp_reshard_after_forward"] = reshard
    parallelism.update(_titan_pipeline(plan, layers))
    training = {"local_batch_size": local_batch, "global_batch_size": plan.gbs,
                "seq_len": seq_len, "mixed_precision_param": param_dtype,
                "enable_cpu_offload": plan.offload == Offload.OPTIMIZER}
    ac: dict[str, object] = {"mode": _TITAN_AC[plan.recompute]}
    notes += ep_notes + dtype_notes + low_notes
    if plan.recompute == Recompute.SELECTIVE:
        ac["selective_ac_option"] = "op"
        notes.append("recompute=selective: torchtitan's op-level policy saves matmul and "
                     "attention outputs and recomputes the rest, not Megatron's attention-core "
                     "recompute")
    if plan.tp > 1 and not plan.sp:
        notes.append("sp=0: torchtitan always runs sequence parallel with tensor parallel")
    if plan.zero > ZeroStage.NONE and not fsdp:
        notes.append(f"zero={int(plan.zero)} with dp*cp=1: nothing to shard over")
    if plan.offload == Offload.OPTIMIZER:
        notes.append("offload=optimizer: enable_cpu_offload (FSDP CPUOffloadPolicy) also keeps "
                     "parameters and gradients on the host"
                     + ("" if fsdp else ", and acts only under FSDP"))
    if plan.offload == Offload.ACTIVATIONS:
        notes.append("offload=activations: no torchtitan key; activations stay on the GPU")
    sections = {"parallelism": parallelism, "training": training, "activation_checkpoint": ac}
    return _Built(sections, notes)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for ASCII text
    raise TypeError(f"no TOML form for {value!r}")


def _render_toml(plan: Plan, built: _Built) -> str:
    lines = [f"# torchtitan job config for archcost plan {plan.to_string()}"]
    lines += [f"# NOTE: {note}" for note in built.notes]
    for section, keys in built.config.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def torchtitan_toml(plan: Plan, *, seq_len: int, precision: str, layers: int | None = None) -> str:
    """The ``[parallelism]``, ``[training]`` and ``[activation_checkpoint]`` sections of a
    torchtitan job config for ``plan``; differences from the plan are ``# NOTE:`` comments."""
    return _render_toml(plan, _torchtitan(plan, seq_len, precision, layers))


# ---------------------------------------------------------------- DeepSpeed -------------------

def _deepspeed(plan: Plan, precision: str) -> _Built:
    precision, notes = _precision(precision)
    _check_batch(plan)
    stage = int(plan.zero)
    if plan.pp > 1 and stage >= ZeroStage.GRADIENTS:
        notes.append(f"zero={stage} with pp>1: DeepSpeed's pipeline engine rejects ZeRO-2/3; "
                     "emitted stage 1")
        stage = int(ZeroStage.OPTIMIZER)
    zero: dict[str, object] = {"stage": stage}
    if plan.offload == Offload.OPTIMIZER:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if plan.hybrid_shard and stage == ZeroStage.PARAMETERS:
        zero["mics_shard_size"] = plan.zero_group
        notes.append("hybrid shard as MiCS (mics_shard_size): build the model under "
                     "deepspeed.zero.MiCS_Init")
    elif plan.hybrid_shard:
        notes.append(f"hybrid shard with zero={stage}: no DeepSpeed key; partitions span all "
                     "data-parallel ranks")
    config: dict[str, object] = {
        "train_batch_size": plan.gbs,
        "train_micro_batch_size_per_gpu": plan.mbs,
        # the pipeline engine runs gradient_accumulation_steps micro-batches per step
        "gradient_accumulation_steps": plan.num_microbatches,
        "zero_optimization": zero,
        "bf16": {"enabled": precision.startswith("bf16")},
        "fp16": {"enabled": precision.startswith("fp16")},
    }
    cpu_checkpointing = plan.offload == Offload.ACTIVATIONS
    if plan.recompute != Recompute.NONE or cpu_checkpointing:
        config["activation_checkpointing"] = {
            "partition_activations": plan.tp > 1 or cpu_checkpointing,
            "cpu_checkpointing": cpu_checkpointing,
            "contiguous_memory_optimization": False,
        }
        notes.append(f"recompute={plan.recompute.value}: activation_checkpointing configures "
                     "deepspeed.checkpointing; the model code picks what to checkpoint")
    if cpu_checkpointing and plan.recompute == Recompute.NONE:
        notes.append("offload=activations: DeepSpeed moves only checkpointed activations to "
                     "the CPU (cpu_checkpointing)")
    if plan.pp > 1 and plan.schedule != Schedule.ONE_F_ONE_B:
        notes.append(f"schedule={plan.schedule.value}: not a DeepSpeed config key; its "
                     "PipelineEngine runs its own TrainSchedule")
    if precision in ("bf16", "fp16"):
        notes.append(f"precision {precision}: DeepSpeed keeps fp32 master weights (mixed)")
    if max(plan.tp, plan.pp, plan.cp, plan.ep) > 1:
        notes.append(f"tp/pp/cp/ep are not DeepSpeed config keys: set them in the launcher "
                     f"(e.g. Megatron-DeepSpeed); train_batch_size counts dp={plan.dp} ranks")
    return _Built(config, notes)


def deepspeed_json(plan: Plan, *, precision: str) -> dict:
    """A DeepSpeed config for ``plan``: ``train_batch_size = train_micro_batch_size_per_gpu *
    gradient_accumulation_steps * dp`` (tp/pp/cp ranks come from the launcher)."""
    return _deepspeed(plan, precision).config


# ---------------------------------------------------------------- Megatron-LM -----------------

def _megatron_sharding(plan: Plan) -> tuple[list[str], list[str]]:
    if plan.zero == ZeroStage.NONE:
        return [], []
    if plan.zero == ZeroStage.PARAMETERS:  # the Megatron-FSDP user guide's required flags
        args = ["--use-megatron-fsdp", "--data-parallel-sharding-strategy optim_grads_params",
                "--no-gradient-accumulation-fusion", "--use-distributed-optimizer",
                "--ckpt-format fsdp_dtensor"]
        notes = []
    else:
        args = ["--use-distributed-optimizer"]
        notes = [] if plan.zero == ZeroStage.OPTIMIZER else [
            "zero=2: Megatron's distributed optimizer shards fp32 main weights and optimizer "
            "state but keeps a whole gradient buffer (Megatron-FSDP optim_grads shards it)"]
    if plan.hybrid_shard:
        args.append(f"--num-distributed-optimizer-instances {plan.dp * plan.cp // plan.zero_group}")
    return args, notes


def _megatron_offload(plan: Plan, layers: int | None) -> tuple[list[str], list[str]]:
    if plan.offload == Offload.OPTIMIZER:  # arguments.py requires the precision-aware optimizer
        return ["--optimizer-cpu-offload", "--use-precision-aware-optimizer"], []
    if plan.offload != Offload.ACTIVATIONS:
        return [], []
    if plan.pp > 1 or plan.recompute != Recompute.NONE or layers is None or layers < 2:
        return [], ["offload=activations: Megatron's --cpu-offloading-num-layers needs pp=1, "
                    "no recompute and the layer count; not emitted"]
    return [f"--cpu-offloading-num-layers {layers - 1}"], [
        f"offload=activations: Megatron offloads at most layers-1 = {layers - 1} layers"]


def _megatron(plan: Plan, precision: str, seq_len: int, layers: int | None = None) -> _Built:
    precision, notes = _precision(precision)
    _check_batch(plan)
    args = [f"--tensor-model-parallel-size {plan.tp}",
            f"--pipeline-model-parallel-size {plan.pp}",
            f"--context-parallel-size {plan.cp}",
            f"--expert-model-parallel-size {plan.ep}"]
    if layers is not None:
        if layers % plan.pp:
            raise PlanError(f"layers({layers}) % pp({plan.pp}) != 0: Megatron-LM splits the "
                            "layers evenly over pipeline stages")
        args.append(f"--num-layers {layers}")
    if plan.vpp > 1:
        per_chunk = _vpp_layers(plan, layers)
        args.append(f"--num-virtual-stages-per-pipeline-rank {plan.vpp}" if per_chunk is None
                    else f"--num-layers-per-virtual-pipeline-stage {per_chunk}")
    if plan.schedule == Schedule.GPIPE:
        notes.append("schedule=gpipe: Megatron-LM has no GPipe schedule; it runs 1F1B")
    if plan.sp and plan.tp > 1:
        args.append("--sequence-parallel")
    args += [f"--micro-batch-size {plan.mbs}", f"--global-batch-size {plan.gbs}",
             f"--seq-length {seq_len}"]
    if plan.recompute == Recompute.SELECTIVE:
        args.append("--recompute-granularity selective")  # a method is rejected with selective
    elif plan.recompute == Recompute.FULL:
        args += ["--recompute-granularity full", "--recompute-method uniform",
                 "--recompute-num-layers 1"]
    for part in (_megatron_sharding(plan), _megatron_offload(plan, layers)):
        args += part[0]
        notes += part[1]
    if precision.startswith("fp16") and plan.ep > 1:
        args.append("--bf16")
        notes.append(f"precision {precision}: Megatron rejects fp16 with expert parallel; "
                     "emitted --bf16")
    elif precision != "fp32":
        args.append("--bf16" if precision.startswith("bf16") else "--fp16")
    if precision in ("bf16", "fp16"):
        notes.append(f"precision {precision}: Megatron keeps fp32 main weights (mixed)")
    return _Built(args, notes)


def megatron_args(plan: Plan, *, precision: str, seq_len: int,
                  layers: int | None = None) -> list[str]:
    """Megatron-LM ``pretrain_*.py`` arguments for ``plan``, one ``--flag [value]`` per item."""
    return _megatron(plan, precision, seq_len, layers).config


# ---------------------------------------------------------------- dispatch --------------------

_BUILDERS: dict[str, tuple[Callable[..., _Built], tuple[str, ...]]] = {
    "torchtitan": (_torchtitan, ("seq_len", "precision", "layers")),
    "deepspeed": (_deepspeed, ("precision",)),
    "megatron": (_megatron, ("precision", "seq_len", "layers")),
}
_OPTIONS = ("precision", "seq_len", "layers")


def _build(plan: Plan, fmt: str, kw: dict) -> tuple[str, _Built]:
    key = fmt.strip().lower()
    if key not in _BUILDERS:
        raise PlanError(f"unknown trainer format {fmt!r}: allowed {', '.join(FORMATS)}")
    unknown = sorted(set(kw) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"emit() got unexpected options {unknown}; allowed {list(_OPTIONS)}")
    builder, takes = _BUILDERS[key]
    return key, builder(plan, **{k: v for k, v in kw.items() if k in takes})


def caveats(plan: Plan, fmt: str, **kw) -> list[str]:
    """What the ``fmt`` configuration of ``plan`` does differently from the plan, one line each
    (``[]`` when it matches); options as for ``emit``."""
    return list(_build(plan, fmt, kw)[1].notes)


def emit(plan: Plan, fmt: str, **kw) -> str:
    """``plan`` as text for ``fmt`` in ``FORMATS``: torchtitan TOML, DeepSpeed JSON (sorted
    keys) or Megatron arguments one per line with shell continuations. Options: ``precision``,
    ``seq_len`` and ``layers`` (each format takes what it needs)."""
    key, built = _build(plan, fmt, kw)
    if key == "torchtitan":
        return _render_toml(plan, built)
    if key == "deepspeed":
        return json.dumps(built.config, indent=2, sort_keys=True) + "\n"
    return " \\\n".join(built.config) + "\n"
