"""Trainer configuration from plans: every emitted torchtitan key, DeepSpeed key and Megatron-LM
flag is one the tool documents (``tests/data/trainer_keys``), the tools' own arithmetic holds
(degrees multiply to the GPUs, DeepSpeed's batch invariant, Megatron's virtual stages), the
plan's values come back out, and what a tool cannot express is said."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest

from archcost.errors import ConfigError, PlanError
from archcost.plan import ModelShape, Offload, Plan, Recompute, ZeroStage, check, parse_plan
from archcost.plan.emit import (
    FORMATS,
    PRECISIONS,
    caveats,
    deepspeed_json,
    emit,
    megatron_args,
    torchtitan_toml,
)

KEYS = Path(__file__).resolve().parent / "data" / "trainer_keys"
SEQ = 4096
DENSE = ModelShape(layers=32, heads=32, kv_heads=8, hidden=4096, seq_len=SEQ)
MOE = ModelShape(layers=32, heads=32, kv_heads=8, hidden=4096, seq_len=SEQ, experts=8)

# name: (plan text, model, GPUs); each is checked valid below, so a typo cannot hide a case
CASES = {
    "dense-ddp": ("dp=8,gbs=64", DENSE, 8),
    "ddp-with-tp": ("dp=2,tp=4,gbs=32", DENSE, 8),
    "tp-sp-zero1": ("dp=4,tp=2,sp=1,zero=1,mbs=2,gbs=64", DENSE, 8),
    "pp-1f1b": ("dp=2,tp=2,pp=4,sp=1,zero=1,gbs=64", DENSE, 16),
    "pp-gpipe-zero2": ("dp=2,pp=4,zero=2,schedule=gpipe,mbs=2,gbs=64", DENSE, 8),
    "interleaved-vpp2": ("dp=2,tp=2,pp=2,sp=1,zero=1,vpp=2,schedule=interleaved-1f1b,gbs=32",
                         DENSE, 8),
    "interleaved-vpp4": ("pp=4,vpp=4,schedule=interleaved-1f1b,gbs=16", DENSE, 4),
    "zero2": ("dp=8,zero=2,mbs=2,gbs=128", DENSE, 8),
    "zero3": ("dp=16,zero=3,gbs=64", DENSE, 16),
    "hybrid": ("dp=8,zero=fsdp-hybrid,shard_group=4,gbs=64", DENSE, 8),
    "hybrid-cp": ("dp=8,cp=2,zero=fsdp-hybrid,shard_group=4,gbs=64", DENSE, 16),
    "hybrid-smaller-than-cp": ("dp=4,cp=4,zero=fsdp-hybrid,shard_group=2,gbs=32", DENSE, 16),
    "hybrid-zero1": ("dp=8,zero=1,hybrid_shard=1,shard_group=2,gbs=64", DENSE, 8),
    "cp": ("dp=2,tp=2,cp=4,sp=1,zero=3,gbs=16", DENSE, 16),
    "cp-ddp": ("tp=2,cp=4,sp=1,gbs=8", DENSE, 8),
    "ep": ("dp=8,tp=2,sp=1,ep=4,zero=3,gbs=64", MOE, 16),
    "ep-ddp": ("dp=8,ep=8,gbs=64", MOE, 8),
    "ep-pp": ("dp=4,pp=2,ep=4,zero=1,gbs=64", MOE, 8),
    "offload-optimizer": ("dp=8,zero=2,offload=optimizer,gbs=64", DENSE, 8),
    "offload-activations": ("dp=4,zero=1,offload=activations,gbs=32", DENSE, 4),
    "offload-activations-pp": ("dp=2,pp=2,zero=1,offload=activations,gbs=32", DENSE, 4),
    "recompute-full": ("dp=4,tp=2,sp=1,zero=1,recompute=full,gbs=32", DENSE, 8),
    "recompute-selective": ("dp=4,pp=2,zero=1,recompute=selective,gbs=32", DENSE, 8),
}


def _case(name: str) -> tuple[Plan, ModelShape]:
    text, shape, gpus = CASES[name]
    plan = check(parse_plan(text), shape, gpus)
    assert plan.gpus == gpus
    return plan, shape


@pytest.fixture(scope="module")
def tomllib():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, a declared dependency there
        import tomli as tomllib
    return tomllib


# ---------------------------------------------------------------- documented keys -------------

def _documented(tool: str) -> dict[str, set[str] | None]:
    """key -> allowed values (None: any) from ``trainer_keys/<tool>.txt``."""
    keys: dict[str, set[str] | None] = {}
    for line in (KEYS / f"{tool}.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, allowed = line.partition(":")
        keys[key.strip()] = {v.strip() for v in allowed.split(",")} if allowed else None
    return keys


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _assert_documented(emitted: dict[str, object], tool: str) -> None:
    documented = _documented(tool)
    for key, value in emitted.items():
        assert key in documented, f"{tool}: {key!r} is not in trainer_keys/{tool}.txt"
        allowed = documented[key]
        if allowed is not None:
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            assert shown in allowed, f"{tool}: {key} = {value!r} not in {sorted(allowed)}"


@pytest.mark.parametrize("tool", FORMATS)
def test_key_lists_name_their_source(tool):
    text = (KEYS / f"{tool}.txt").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "Source" in header and "repository" in header
    assert re.search(r"\b[0-9a-f]{40}\b", header), "pin the commit the keys were read at"
    assert len(_documented(tool)) >= 10


def test_the_key_check_catches_an_undocumented_key():
    with pytest.raises(AssertionError, match="not in trainer_keys"):
        _assert_documented({"parallelism.data_parallel_degree": 8}, "torchtitan")
    with pytest.raises(AssertionError, match="not in"):
        _assert_documented({"activation_checkpoint.mode": "partial"}, "torchtitan")


# ---------------------------------------------------------------- torchtitan ------------------

_SCHEDULE = {"gpipe": "gpipe", "1f1b": "1f1b", "interleaved-1f1b": "interleaved1f1b"}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_torchtitan(name, precision, tomllib):
    plan, shape = _case(name)
    doc = tomllib.loads(torchtitan_toml(plan, seq_len=SEQ, precision=precision,
                                        layers=shape.layers))
    _assert_documented(_flatten(doc), "torchtitan")
    par, train, ac = doc["parallelism"], doc["training"], doc["activation_checkpoint"]
    rep, shard = par["data_parallel_replicate_degree"], par["data_parallel_shard_degree"]
    tp, pp, cp = (par["tensor_parallel_degree"], par["pipeline_parallel_degree"],
                  par["context_parallel_degree"])
    # ParallelDims: dp_replicate * dp_shard * cp * tp * pp == world size
    assert rep * shard * cp * tp * pp == plan.gpus
    assert (tp, pp, cp, rep * shard) == (plan.tp, plan.pp, plan.cp, plan.dp)
    # train.py: accumulation = global // (local * dp degree); the pipeline splits local by mbs
    local, dp_degree = train["local_batch_size"], rep * shard
    accum, rest = divmod(train["global_batch_size"], local * dp_degree)
    assert rest == 0 and train["global_batch_size"] == plan.gbs
    if plan.pp > 1:
        assert par["pipeline_parallel_microbatch_size"] == plan.mbs
        assert (accum, local // plan.mbs) == (1, plan.num_microbatches)
        assert par["pipeline_parallel_schedule"].lower() == _SCHEDULE[plan.schedule.value]
        per_stage = par["pipeline_parallel_layers_per_stage"]
        stages = math.ceil((shape.layers + par["pipeline_parallel_first_stage_less_layers"]
                            + par["pipeline_parallel_last_stage_less_layers"]) / per_stage)
        assert stages == plan.pp * plan.vpp and per_stage * stages == shape.layers
    else:
        assert (accum, local) == (plan.num_microbatches, plan.mbs)
        assert not any(k.startswith("pipeline_parallel_") and k != "pipeline_parallel_degree"
                       for k in par)
    assert train["seq_len"] == SEQ and SEQ % (tp * 2 * cp) == 0  # ParallelDims.seq_len_divisor
    fsdp_group = shard * cp  # torchtitan shards over dp_shard * cp
    if plan.zero == ZeroStage.PARAMETERS and not plan.hybrid_shard:
        assert (rep, fsdp_group) == (1, plan.zero_group)
    if plan.hybrid_shard:  # HSDP: exact when cp divides the group, else the nearest it allows
        assert rep > 1
        if plan.zero_group % plan.cp == 0:
            assert fsdp_group == plan.zero_group
        else:
            assert fsdp_group <= max(plan.zero_group, plan.cp)
    ep = par["expert_parallel_degree"]
    assert plan.ep % ep == 0
    if ep > 1:  # ParallelDims: experts borrow all cp and part of dp_shard
        assert ep % cp == 0 and fsdp_group % ep == 0
    assert ac["mode"] == plan.recompute.value
    assert train["enable_cpu_offload"] == (plan.offload == Offload.OPTIMIZER)
    assert train["mixed_precision_param"] == ("float32" if precision == "fp32" else "bfloat16")


def test_torchtitan_maps_zero_onto_fsdp_and_hsdp(tomllib):
    def parallelism(name):
        plan, shape = _case(name)
        return tomllib.loads(torchtitan_toml(plan, seq_len=SEQ, precision="bf16-mixed",
                                             layers=shape.layers))["parallelism"]

    def degrees(name):
        par = parallelism(name)
        return par["data_parallel_replicate_degree"], par["data_parallel_shard_degree"]

    assert degrees("dense-ddp") == (8, 1)  # DDP on a 1-D mesh
    assert "fsdp_reshard_after_forward" not in parallelism("dense-ddp")
    assert degrees("zero3") == (1, 16)
    assert parallelism("zero3")["fsdp_reshard_after_forward"] == "default"
    assert degrees("hybrid") == (2, 4)  # HSDP: 2 replicas of 4-way shards
    assert degrees("hybrid-cp") == (4, 2)  # shard 2 * cp 2 = the plan's 4-rank group
    assert degrees("hybrid-smaller-than-cp") == (4, 1)  # cannot go below cp: 4 ranks, noted
    for name in ("zero2", "tp-sp-zero1", "ddp-with-tp", "ep-ddp"):
        assert degrees(name)[1] > 1 and parallelism(name)["fsdp_reshard_after_forward"] == "never"


@pytest.mark.parametrize("name, says", [
    ("tp-sp-zero1", "zero=1"),
    ("zero2", "zero=2"),
    ("ddp-with-tp", "DDP runs only on a 1-D"),
    ("ddp-with-tp", "sp=0"),
    ("ep-ddp", "DDP"),
    ("cp-ddp", "cp ranks"),
    ("hybrid-smaller-than-cp", "shard_group=2"),
    ("ep", "expert_tensor_parallel_degree"),
    ("offload-activations", "offload=activations"),
    ("offload-optimizer", "enable_cpu_offload"),
    ("recompute-selective", "selective"),
])
def test_torchtitan_says_what_differs_in_comments(name, says, tomllib):
    plan, shape = _case(name)
    text = torchtitan_toml(plan, seq_len=SEQ, precision="bf16-mixed", layers=shape.layers)
    notes = caveats(plan, "torchtitan", seq_len=SEQ, precision="bf16-mixed",
                    layers=shape.layers)
    assert any(says in note for note in notes), notes
    for note in notes:
        assert "\n" not in note and f"# NOTE: {note}\n" in text
    tomllib.loads(text)  # comments keep it valid TOML


def test_torchtitan_matching_plan_has_no_notes():
    plan, shape = _case("zero3")
    assert caveats(plan, "torchtitan", seq_len=SEQ, precision="bf16-mixed",
                   layers=shape.layers) == []
    text = torchtitan_toml(plan, seq_len=SEQ, precision="bf16-mixed", layers=shape.layers)
    assert "NOTE" not in text and text.startswith("# torchtitan job config for archcost plan ")


@pytest.mark.parametrize("precision, says", [("fp16-mixed", "bfloat16 or float32 only"),
                                             ("bf16", "not pure bf16")])
def test_torchtitan_precision_notes(precision, says):
    plan, shape = _case("zero3")
    notes = caveats(plan, "torchtitan", seq_len=SEQ, precision=precision, layers=shape.layers)
    assert any(says in note for note in notes)


def test_torchtitan_interleaved_without_layers(tomllib):
    plan, _ = _case("interleaved-vpp2")  # 2 stages per rank is torchtitan's default
    par = tomllib.loads(torchtitan_toml(plan, seq_len=SEQ, precision="bf16"))["parallelism"]
    assert "pipeline_parallel_layers_per_stage" not in par
    assert par["pipeline_parallel_schedule"] == "Interleaved1F1B"
    plan, _ = _case("interleaved-vpp4")
    with pytest.raises(PlanError, match="pass layers="):
        torchtitan_toml(plan, seq_len=SEQ, precision="bf16")


def test_torchtitan_rejects_a_sequence_it_cannot_split():
    plan, _ = _case("cp")
    with pytest.raises(PlanError, match=r"seq_len\(4100\) % \(tp\(2\) \* 2 \* cp\(4\)\)"):
        torchtitan_toml(plan, seq_len=4100, precision="bf16")


# ---------------------------------------------------------------- DeepSpeed -------------------

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_deepspeed(name, precision):
    plan, _ = _case(name)
    text = emit(plan, "deepspeed", precision=precision)
    cfg = json.loads(text)
    assert cfg == deepspeed_json(plan, precision=precision)
    assert text == json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    _assert_documented(_flatten(cfg), "deepspeed")
    # config-json: train_batch_size = micro * accumulation * data-parallel GPUs (dp; tp/pp
    # ranks belong to the Megatron-DeepSpeed launcher)
    assert cfg["train_batch_size"] == (cfg["train_micro_batch_size_per_gpu"]
                                       * cfg["gradient_accumulation_steps"] * plan.dp) == plan.gbs
    assert cfg["train_micro_batch_size_per_gpu"] == plan.mbs
    assert cfg["gradient_accumulation_steps"] == plan.num_microbatches
    zero = cfg["zero_optimization"]
    pipeline_cap = plan.pp > 1 and plan.zero >= ZeroStage.GRADIENTS  # pipe/engine.py assert
    assert zero["stage"] == (1 if pipeline_cap else int(plan.zero))
    assert ("offload_optimizer" in zero) == (plan.offload == Offload.OPTIMIZER)
    if "offload_optimizer" in zero:
        assert zero["offload_optimizer"]["device"] == "cpu"
    hybrid3 = plan.hybrid_shard and zero["stage"] == 3
    assert zero.get("mics_shard_size") == (plan.zero_group if hybrid3 else None)
    assert cfg["bf16"]["enabled"] == precision.startswith("bf16")
    assert cfg["fp16"]["enabled"] == precision.startswith("fp16")
    checkpointing = cfg.get("activation_checkpointing")
    wants = plan.recompute != Recompute.NONE or plan.offload == Offload.ACTIVATIONS
    assert (checkpointing is not None) == wants
    if checkpointing:
        assert checkpointing["cpu_checkpointing"] == (plan.offload == Offload.ACTIVATIONS)


def test_deepspeed_notes():
    plan, _ = _case("pp-gpipe-zero2")
    assert any("rejects ZeRO-2/3" in n for n in caveats(plan, "deepspeed", precision="bf16"))
    plan, _ = _case("hybrid-zero1")
    assert any("no DeepSpeed key" in n for n in caveats(plan, "deepspeed", precision="fp32"))
    plan, _ = _case("dense-ddp")
    assert caveats(plan, "deepspeed", precision="bf16-mixed") == []


# ---------------------------------------------------------------- Megatron-LM -----------------

def _parse_args(text: str) -> dict[str, str | None]:
    """Flags of a shell command line (backslash-newline continuations) -> value or None."""
    tokens = shlex.split(text.replace("\\\n", ""))
    flags: dict[str, str | None] = {}
    for i, token in enumerate(tokens):
        if token.startswith("--"):
            assert token not in flags, f"{token} given twice"
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            flags[token] = None if nxt is None or nxt.startswith("--") else nxt
    return flags


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", CASES)
def test_megatron(name, precision):
    plan, shape = _case(name)
    args = megatron_args(plan, precision=precision, seq_len=SEQ, layers=shape.layers)
    text = emit(plan, "megatron", precision=precision, seq_len=SEQ, layers=shape.layers)
    assert text == " \\\n".join(args) + "\n"
    assert all(line.endswith(" \\") for line in text.splitlines()[:-1])
    flags = _parse_args(text)
    _assert_documented(flags, "megatron")
    integer = {k: int(v) for k, v in flags.items() if v is not None and v.isdigit()}
    tp, pp, cp = (integer["--tensor-model-parallel-size"],
                  integer["--pipeline-model-parallel-size"], integer["--context-parallel-size"])
    assert (tp, pp, cp, integer["--expert-model-parallel-size"]) == (plan.tp, plan.pp, plan.cp,
                                                                     plan.ep)
    # arguments.py: data_parallel_size = world // (tp * pp * cp); micro-batches per replica
    dp = plan.gpus // (tp * pp * cp)
    mbs, gbs = integer["--micro-batch-size"], integer["--global-batch-size"]
    assert (mbs, gbs, dp) == (plan.mbs, plan.gbs, plan.dp)
    assert gbs % (mbs * dp) == 0 and gbs // (mbs * dp) == plan.num_microbatches
    assert integer["--seq-length"] == SEQ and integer["--num-layers"] == shape.layers
    if plan.vpp > 1:
        per_chunk = integer["--num-layers-per-virtual-pipeline-stage"]
        assert per_chunk * pp * plan.vpp == shape.layers
    else:
        assert "--num-layers-per-virtual-pipeline-stage" not in flags
    assert ("--sequence-parallel" in flags) == plan.sp
    granularity = flags.get("--recompute-granularity")
    assert granularity == {Recompute.NONE: None, Recompute.SELECTIVE: "selective",
                           Recompute.FULL: "full"}[plan.recompute]
    if granularity != "full":  # arguments.py: no recompute method with selective
        assert "--recompute-method" not in flags
    dist_opt = "--use-distributed-optimizer" in flags
    assert dist_opt == (plan.zero > ZeroStage.NONE)
    assert ("--use-megatron-fsdp" in flags) == (plan.zero == ZeroStage.PARAMETERS)
    if "--use-megatron-fsdp" in flags:
        assert flags["--data-parallel-sharding-strategy"] == "optim_grads_params"
        assert flags["--ckpt-format"] == "fsdp_dtensor"  # arguments.py asserts it
    instances = integer.get("--num-distributed-optimizer-instances", 1)
    assert instances == (plan.dp * plan.cp // plan.zero_group if plan.hybrid_shard else 1)
    if "--optimizer-cpu-offload" in flags:  # arguments.py: needs the precision-aware optimizer
        assert "--use-precision-aware-optimizer" in flags and dist_opt
    assert ("--optimizer-cpu-offload" in flags) == (plan.offload == Offload.OPTIMIZER)
    if "--cpu-offloading-num-layers" in flags:  # TransformerConfig's checks
        assert pp == 1 and granularity is None
        assert 0 <= integer["--cpu-offloading-num-layers"] < shape.layers
    assert not ("--bf16" in flags and "--fp16" in flags)
    if precision == "fp32":
        assert "--bf16" not in flags and "--fp16" not in flags
    elif precision.startswith("fp16") and plan.ep == 1:
        assert "--fp16" in flags
    else:  # bf16, or fp16 with expert parallel (which Megatron rejects)
        assert "--bf16" in flags


def test_megatron_virtual_stages_without_layers():
    plan, _ = _case("interleaved-vpp4")
    flags = _parse_args(emit(plan, "megatron", precision="bf16", seq_len=SEQ))
    assert flags["--num-virtual-stages-per-pipeline-rank"] == "4"
    assert "--num-layers" not in flags and "--num-layers-per-virtual-pipeline-stage" not in flags


def test_megatron_rejects_uneven_layers():
    plan, _ = _case("interleaved-vpp2")
    with pytest.raises(PlanError, match=r"layers\(30\) % \(pp\(2\)\*vpp\(2\)\) != 0"):
        megatron_args(plan, precision="bf16", seq_len=SEQ, layers=30)
    plan, _ = _case("pp-1f1b")
    with pytest.raises(PlanError, match=r"layers\(30\) % pp\(4\) != 0"):
        megatron_args(plan, precision="bf16", seq_len=SEQ, layers=30)


@pytest.mark.parametrize("name, precision, says", [
    ("pp-gpipe-zero2", "bf16", "no GPipe schedule"),
    ("pp-gpipe-zero2", "bf16", "zero=2"),
    ("ep", "fp16-mixed", "rejects fp16 with expert parallel"),
    ("offload-activations-pp", "bf16", "needs pp=1"),
])
def test_megatron_notes(name, precision, says):
    plan, shape = _case(name)
    notes = caveats(plan, "megatron", precision=precision, seq_len=SEQ, layers=shape.layers)
    assert any(says in note for note in notes), notes


# ---------------------------------------------------------------- dispatch and errors ---------

def test_unknown_format_names_the_allowed_ones():
    plan, _ = _case("dense-ddp")
    with pytest.raises(PlanError) as err:
        emit(plan, "nemo", precision="bf16")
    message = str(err.value)
    assert "\n" not in message and "'nemo'" in message
    assert all(fmt in message for fmt in FORMATS)


def test_emit_takes_the_shared_options_for_every_format():
    plan, shape = _case("tp-sp-zero1")
    options = dict(precision="bf16-mixed", seq_len=SEQ, layers=shape.layers)
    for fmt in FORMATS:
        assert emit(plan, fmt.upper(), **options) == emit(plan, fmt, **options)
    with pytest.raises(TypeError, match="unexpected options"):
        emit(plan, "deepspeed", precision="bf16", sequence_length=SEQ)


def test_bad_precision_and_batch():
    plan, _ = _case("dense-ddp")
    with pytest.raises(ConfigError, match="precision 'fp8': allowed fp32, bf16, fp16"):
        deepspeed_json(plan, precision="fp8")
    uneven = Plan(dp=4, mbs=2, gbs=36)
    for fmt in FORMATS:
        with pytest.raises(PlanError, match=r"gbs\(36\) % \(dp\(4\)\*mbs\(2\)\) != 0"):
            emit(uneven, fmt, precision="bf16", seq_len=SEQ)


# ---------------------------------------------------------------- the CLI: --emit, --emit-file

GPT = [str(Path(__file__).resolve().parent.parent / "models" / "gpt2.py"), "--set", "layers=2",
       "--set", "hidden=64", "--set", "heads=4", "--set", "vocab=256", "-s", "64"]
PLAN = "dp=2,tp=2,pp=2,zero=2,sp=1,gbs=16"  # 8 GPUs; 16 / (dp 2 * mbs 1) = 8 micro-batches


def _cli(args, width=80):
    from typer.testing import CliRunner

    from archcost.cli import app

    r = CliRunner().invoke(app, args, env={"COLUMNS": str(width)})
    return r


def _check_config(fmt: str, text: str, tomllib) -> None:
    """``text`` is the configuration and nothing else, and holds the plan's values."""
    if fmt == "torchtitan":
        doc = tomllib.loads(text)
        _assert_documented(_flatten(doc), "torchtitan")
        par, train = doc["parallelism"], doc["training"]
        assert (par["tensor_parallel_degree"], par["pipeline_parallel_degree"]) == (2, 2)
        assert par["data_parallel_replicate_degree"] * par["data_parallel_shard_degree"] == 2
        assert (train["global_batch_size"], train["seq_len"]) == (16, 64)
        assert "# NOTE: zero=2" in text  # what differs, as a comment
    elif fmt == "deepspeed":
        doc = json.loads(text)
        _assert_documented(_flatten(doc), "deepspeed")
        assert (doc["train_batch_size"], doc["train_micro_batch_size_per_gpu"],
                doc["gradient_accumulation_steps"]) == (16, 1, 8)
    else:
        lines = text.splitlines()
        assert all(re.fullmatch(r"--[a-z0-9-]+( [\w.]+)?", line.removesuffix(" \\"))
                   for line in lines), lines
        assert all(line.endswith(" \\") for line in lines[:-1])
        flags = _parse_args(text)
        _assert_documented(flags, "megatron")
        assert (flags["--tensor-model-parallel-size"], flags["--pipeline-model-parallel-size"],
                flags["--global-batch-size"], flags["--seq-length"],
                flags["--num-layers"]) == ("2", "2", "16", "64", "2")


@pytest.mark.parametrize("fmt", FORMATS)
def test_estimate_emits_the_config_alone_on_stdout(fmt, tomllib):
    r = _cli(["estimate", *GPT, "--plan", PLAN, "--emit", fmt])
    assert r.exit_code == 0, r.output
    _check_config(fmt, r.stdout, tomllib)
    assert "where the step goes" in r.stderr  # the tables, on stderr
    if fmt != "torchtitan":  # no comments in JSON or arguments: the caveats are notes
        assert f"note: {fmt}: zero=2" in r.stderr.replace("\n", " ")


def test_plan_search_emits_unwrapped_toml_at_80_columns(tomllib, tmp_path):
    args = ["plan", *GPT, "--gpus", "8", "--gbs", "16", "--fix", "pp=2,zero=2,sp=1", "--top", "2"]
    r = _cli([*args, "--emit", "torchtitan"])
    assert r.exit_code == 0, r.output
    doc = tomllib.loads(r.stdout)  # a wrapped comment or a table line would not parse
    assert doc["parallelism"]["pipeline_parallel_degree"] == 2
    assert max(map(len, r.stdout.splitlines())) > 80  # long comments stay on their line
    assert "best plans" in r.stderr and "best plans" not in r.stdout
    out = tmp_path / "job.toml"
    r = _cli([*args, "--emit", "torchtitan", "--emit-file", str(out)])
    assert r.exit_code == 0, r.output
    assert tomllib.loads(out.read_text()) == doc
    assert "best plans" in r.stdout and "wrote" in r.stdout and str(out) in r.stdout
    assert "[parallelism]" not in r.stdout


@pytest.mark.parametrize("extra, message", [
    (["--emit", "nemo"], "--emit 'nemo': use torchtitan, deepspeed, megatron"),
    (["--emit-file", "x.toml"], "say which configuration with --emit"),
    (["--emit", "deepspeed", "--json"], "--json and --emit both print to stdout"),
])
def test_emit_options_are_checked_before_tracing(extra, message, tmp_path):
    r = _cli(["estimate", str(tmp_path / "no-such-model.py"), "--plan", PLAN, *extra])
    assert r.exit_code == 2 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
