"""The plan space: parsing, every validity rule on a crafted plan, and enumeration against a
brute-force nested loop over the same axes filtered by ``validate``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from archcost.errors import ConfigError, PlanError
from archcost.plan import (
    PLAN_DTYPE,
    Axis,
    ModelShape,
    Offload,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    check,
    enumerate_plans,
    parse_plan,
    plan_from_row,
    plans_to_array,
    validate,
)

DENSE = ModelShape(layers=32, heads=32, kv_heads=8, hidden=4096, seq_len=4096)
MOE = ModelShape(layers=32, heads=32, kv_heads=8, hidden=4096, seq_len=4096, experts=8)


# ---------------------------------------------------------------- parsing ---------------------

def test_parse_the_documented_example():
    plan = parse_plan("dp=8,tp=8,pp=4,cp=1,ep=1,zero=1,mbs=1,gbs=512,recompute=selective,sp=1,"
                      "vpp=2,schedule=interleaved-1f1b")
    assert plan == Plan(dp=8, tp=8, pp=4, zero=ZeroStage.OPTIMIZER, mbs=1, gbs=512,
                        recompute=Recompute.SELECTIVE, sp=True, vpp=2,
                        schedule=Schedule.INTERLEAVED)
    assert plan.gpus == 256 and plan.num_microbatches == 64 and plan.grad_accum_steps == 1
    assert parse_plan(plan.to_string()) == plan


def test_left_out_keys_take_defaults():
    plan = parse_plan(" tp = 2 , gbs=64 ")
    assert plan == Plan(tp=2, gbs=64)
    assert (plan.dp, plan.pp, plan.zero, plan.schedule, plan.recompute, plan.offload) == (
        1, 1, ZeroStage.NONE, Schedule.ONE_F_ONE_B, Recompute.NONE, Offload.NONE)
    assert plan.placement == (Axis.TP, Axis.CP, Axis.DP, Axis.PP)
    assert plan.grad_accum_steps == 64
    assert parse_plan("tp=2", gbs=64, zero="2") == Plan(tp=2, gbs=64, zero=ZeroStage.GRADIENTS)
    assert parse_plan("gbs=8,zero=1", zero=3).zero is ZeroStage.OPTIMIZER  # text beats defaults


def test_round_trip_of_every_optional_key():
    plan = Plan(dp=8, cp=2, zero=ZeroStage.PARAMETERS, hybrid_shard=True, shard_group=4, gbs=64,
                offload=Offload.OPTIMIZER, placement=(Axis.TP, Axis.DP, Axis.CP, Axis.PP))
    text = plan.to_string()
    assert "hybrid_shard=1,shard_group=4" in text and "placement=tp-dp-cp-pp" in text
    assert parse_plan(text) == plan
    assert parse_plan("dp=8,zero=fsdp-hybrid,shard_group=4,gbs=8") == Plan(
        dp=8, zero=ZeroStage.PARAMETERS, hybrid_shard=True, shard_group=4, gbs=8)
    assert parse_plan("dp=8,zero=fsdp-full,gbs=8").zero is ZeroStage.PARAMETERS


@pytest.mark.parametrize("text, message", [
    ("tp=2,gbs=8,schedul=gpipe", "unknown plan key 'schedul': did you mean 'schedule'?"),
    ("recomput=full,gbs=8", "did you mean 'recompute'?"),
    ("tp=2", "plan has no gbs: add gbs="),
    ("tp=0,gbs=8", "tp=0: expected a positive integer"),
    ("tp=two,gbs=8", "tp='two': expected a positive integer"),
    ("schedule=zigzag,gbs=8", "schedule='zigzag': allowed gpipe, 1f1b, interleaved-1f1b"),
    ("recompute=some,gbs=8", "recompute='some': allowed none, selective, full"),
    ("zero=4,gbs=8", "zero='4': allowed 0, 1, 2, 3, fsdp-full, fsdp-grad-op"),
    ("schedule=1f2b,gbs=8", "allowed gpipe, 1f1b, interleaved-1f1b, interleaved"),
    ("offload=disk,gbs=8", "offload='disk': allowed none, optimizer, activations"),
    ("sp=maybe,gbs=8", "sp='maybe': allowed 0, 1"),
    ("placement=tp-dp,gbs=8", "list tp, cp, dp, pp once each"),
    ("tp=2,tp=4,gbs=8", "plan key 'tp' given twice"),
    ("tp 2,gbs=8", "write key=value"),
    ("dp=8,hybrid_shard=1,zero=3,gbs=8", "hybrid_shard and shard_group go together"),
    ("dp=8,shard_group=4,zero=3,gbs=8", "hybrid_shard and shard_group go together"),
    ("zero=fsdp-hybrid,hybrid_shard=0,gbs=8", "conflicts with hybrid_shard=0"),
])
def test_bad_text_names_the_key_and_the_fix(text, message):
    with pytest.raises(PlanError) as err:
        parse_plan(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_plan_coerces_text_and_rejects_bad_fields():
    assert Plan(gbs="8", schedule="gpipe", zero=2, sp=1) == Plan(
        gbs=8, schedule=Schedule.GPIPE, zero=ZeroStage.GRADIENTS, sp=True)
    with pytest.raises(PlanError, match=r"dp=0: expected a positive integer"):
        Plan(dp=0, gbs=8)
    with pytest.raises(PlanError, match="schedule='fast'"):
        Plan(gbs=8, schedule="fast")
    with pytest.raises(ConfigError, match=r"heads\(12\) % kv_heads\(5\)"):
        ModelShape(layers=2, heads=12, kv_heads=5, hidden=64, seq_len=8)


# ---------------------------------------------------------------- validity --------------------

SHAPE_4L = ModelShape(layers=4, heads=32, hidden=4096, seq_len=4096)
SHAPE_12H = ModelShape(layers=32, heads=12, hidden=768, seq_len=1024)
L405 = ModelShape(layers=126, heads=128, kv_heads=8, hidden=16384, seq_len=8192)


@pytest.mark.parametrize("text, shape, gpus, expected", [
    ("dp=8,tp=8,pp=2,gbs=512", DENSE, 64, "dp(8) * tp(8) * pp(2) * cp(1) = 128 != GPUs(64)"),
    ("tp=8,gbs=8", SHAPE_12H, 8, "heads(12) % tp(8) != 0: use tp in 1, 2, 3, 4, 6, 12"),
    ("tp=16,sp=1,gbs=8", DENSE, 16, "kv_heads(8) % tp(16) != 0"),
    ("dp=2,ep=2,gbs=8", DENSE, 2, "ep(2) > 1 on a dense model"),
    ("dp=3,ep=3,gbs=6", MOE, 3, "experts(8) % ep(3) != 0"),
    ("dp=2,ep=4,gbs=8", MOE, 2, "ep(4) must divide dp*cp(2)"),
    ("dp=2,tp=2,ep=2,gbs=8", MOE, 4, "ep(2) with tp(2) needs sp=1"),
    ("pp=8,gbs=8", SHAPE_4L, 8, "pp(8) > layers(4)"),
    ("pp=4,vpp=2,schedule=interleaved-1f1b,gbs=8", SHAPE_4L, 4,
     "layers(4) < pp(4)*vpp(2): every interleaved chunk needs a layer"),
    ("pp=2,vpp=2,gbs=8", DENSE, 2, "vpp(2) > 1 needs schedule interleaved-1f1b, not 1f1b"),
    ("pp=2,schedule=interleaved-1f1b,gbs=8", DENSE, 2,
     "schedule interleaved-1f1b needs vpp > 1"),
    ("schedule=gpipe,gbs=8", DENSE, 1, "schedule gpipe needs pp > 1"),
    ("dp=3,mbs=2,gbs=512", DENSE, 3, "gbs(512) % (dp(3)*mbs(2)) != 0"),
    ("pp=4,vpp=2,schedule=interleaved-1f1b,gbs=6", DENSE, 4, "num_microbatches(6) % pp(4) != 0"),
    ("tp=4,sp=1,cp=2,gbs=8", ModelShape(layers=2, heads=8, hidden=64, seq_len=4100), 8,
     "seq_len(4100) % (tp(4)*2*cp(2)) != 0"),
    ("cp=2,gbs=8", ModelShape(layers=2, heads=8, hidden=64, seq_len=4098), 2,
     "seq_len(4098) % (2*cp(2)) != 0"),
    ("dp=2,pp=2,zero=3,gbs=8", DENSE, 4, "zero(3) with pp(2) > 1 is unsupported"),
    ("tp=1,sp=1,gbs=8", DENSE, 1, "sp needs tp > 1"),
    ("zero=1,gbs=8", DENSE, 1, "zero(1) needs dp*cp > 1"),
    ("dp=4,hybrid_shard=1,shard_group=2,gbs=8", DENSE, 4, "hybrid_shard needs zero >= 1"),
    ("dp=4,zero=3,hybrid_shard=1,shard_group=3,gbs=8", DENSE, 4,
     "shard_group(3) must divide dp*cp(4)"),
    ("dp=4,zero=3,hybrid_shard=1,shard_group=4,gbs=8", DENSE, 4,
     "shard_group(4) must divide dp*cp(4) and lie strictly between 1 and it"),
    ("dp=2,offload=optimizer,gbs=8", DENSE, 2, "offload=optimizer needs zero >= 1"),
])
def test_each_reason_fires_alone_on_a_crafted_plan(text, shape, gpus, expected):
    reasons = validate(parse_plan(text), shape, gpus)
    assert len(reasons) == 1 and expected in reasons[0], reasons
    with pytest.raises(PlanError, match="is invalid: "):
        check(parse_plan(text), shape, gpus)


def test_valid_plans_have_no_reasons():
    for text, shape, gpus in [
        ("dp=8,tp=8,pp=4,zero=1,sp=1,vpp=2,schedule=interleaved-1f1b,gbs=512", DENSE, 256),
        ("dp=16,ep=8,tp=2,sp=1,zero=3,gbs=64", MOE, 32),
        ("dp=8,cp=2,zero=3,hybrid_shard=1,shard_group=8,offload=optimizer,gbs=16", DENSE, 16),
        ("pp=4,schedule=gpipe,mbs=2,gbs=2", DENSE, 4),  # fewer micro-batches than stages: allowed
        # chunks one layer apart (126 layers): torchtitan's and Megatron-Bridge's Llama 3.1 405B
        ("dp=8,tp=8,pp=8,sp=1,vpp=2,schedule=interleaved-1f1b,mbs=4,gbs=256", L405, 512),
        ("dp=8,tp=8,pp=8,cp=2,sp=1,vpp=8,schedule=interleaved-1f1b,gbs=512", L405, 1024),
    ]:
        plan = parse_plan(text)
        assert validate(plan, shape, gpus) == [] and check(plan, shape, gpus) is plan
    assert validate(parse_plan("dp=8,gbs=8"), DENSE, None) == []  # no GPU count: no product rule


def test_all_reasons_are_reported_and_joined():
    plan = parse_plan("dp=3,tp=16,sp=0,zero=3,pp=2,ep=2,mbs=2,gbs=8")
    reasons = validate(plan, DENSE, 64)
    # product, kv_heads, ep on a dense model, ep carved from dp*cp, ep+tp needs sp, gbs, zero 3
    assert len(reasons) == 7, reasons
    with pytest.raises(PlanError) as err:
        check(plan, DENSE, 64)
    assert str(err.value).count("; ") == 6 and "\n" not in str(err.value)


# ---------------------------------------------------------------- enumeration -----------------

def _brute_force(shape, gpus, gbs, max_tp=8):
    """Every combination of the documented axes, kept when ``validate`` finds nothing."""
    divs = [d for d in range(1, gpus + 1) if gpus % d == 0]
    mbss = [1 << k for k in range(gbs.bit_length())]
    found = set()
    for dp, tp, pp, cp in itertools.product(divs, repeat=4):
        if dp * tp * pp * cp != gpus or tp > max_tp:
            continue
        for ep, zero, sp, vpp, schedule, mbs, recompute in itertools.product(
                divs, ZeroStage, (False, True), (1, 2, 4), Schedule, mbss, Recompute):
            plan = Plan(dp=dp, tp=tp, pp=pp, cp=cp, ep=ep, zero=zero, sp=sp, vpp=vpp,
                        schedule=schedule, mbs=mbs, gbs=gbs, recompute=recompute)
            if not validate(plan, shape, gpus):
                found.add(plan)
    return found


@pytest.mark.parametrize("shape, gpus, gbs", [
    (ModelShape(layers=4, heads=8, kv_heads=8, hidden=64, seq_len=64), 8, 16),
    (ModelShape(layers=4, heads=4, kv_heads=2, hidden=64, seq_len=32, experts=4), 4, 8),
])
def test_enumeration_equals_brute_force(shape, gpus, gbs):
    rows = enumerate_plans(shape, gpus, gbs)
    plans = [plan_from_row(r) for r in rows]
    assert len(set(plans)) == len(plans)  # no duplicates
    assert set(plans) == _brute_force(shape, gpus, gbs)
    assert np.array_equal(plans_to_array(plans), rows)
    assert (rows["num_micro"] == rows["gbs"] // (rows["dp"] * rows["mbs"])).all()
    assert (rows["gpus"] == gpus).all()


def test_plan_dtype_is_int32_rows():
    assert all(PLAN_DTYPE[name] == np.int32 for name in PLAN_DTYPE.names)
    for name in ("dp", "tp", "pp", "cp", "ep", "zero", "sp", "vpp", "schedule", "mbs", "gbs",
                 "recompute", "num_micro"):
        assert name in PLAN_DTYPE.names


SMALL = ModelShape(layers=8, heads=16, kv_heads=4, hidden=256, seq_len=256, experts=8)


def test_constraints_and_fixed_values_filter():
    full = enumerate_plans(SMALL, 16, 32)
    got = enumerate_plans(SMALL, 16, 32, constraints=["tp<=2", "pp>=2", "dp=2"])
    want = full[(full["tp"] <= 2) & (full["pp"] >= 2) & (full["dp"] == 2)]
    assert len(want) and np.array_equal(got, want)
    assert np.array_equal(enumerate_plans(SMALL, 16, 32, fixed={"pp": 4}), full[full["pp"] == 4])
    gpipe = Schedule.GPIPE.code
    assert np.array_equal(enumerate_plans(SMALL, 16, 32, fixed="schedule=gpipe,zero=1"),
                          full[(full["schedule"] == gpipe) & (full["zero"] == 1)])
    assert np.array_equal(enumerate_plans(SMALL, 16, 32, fixed=["pp=2"], constraints="mbs>1"),
                          full[(full["pp"] == 2) & (full["mbs"] > 1)])
    assert np.array_equal(
        enumerate_plans(SMALL, 16, 32, constraints=["schedule!=gpipe", "num_microbatches>=4"]),
        full[(full["schedule"] != gpipe) & (full["num_micro"] >= 4)])


def test_fixed_values_outside_the_default_axes():
    wide = ModelShape(layers=8, heads=32, hidden=256, seq_len=256)
    assert not (enumerate_plans(wide, 32, 32)["tp"] == 16).any()  # max_tp = 8
    rows = enumerate_plans(wide, 32, 32, fixed={"tp": 16, "sp": True})
    assert len(rows) and (rows["tp"] == 16).all() and (rows["sp"] == 1).all()
    rows = enumerate_plans(wide, 32, 32, fixed={"offload": Offload.OPTIMIZER})
    assert len(rows) and (rows["zero"] >= 1).all()
    rows = enumerate_plans(wide, 32, 32, fixed="hybrid_shard=1")
    assert len(rows) and (rows["hybrid_shard"] == 1).all()
    for row in rows[:: max(1, len(rows) // 200)]:
        plan = plan_from_row(row)
        assert validate(plan, wide, 32) == [] and plan.shard_group == row["shard_group"]
        assert parse_plan(plan.to_string()) == plan
    assert {int(g) for g in rows["shard_group"]} == {2, 4, 8, 16}


@pytest.mark.parametrize("kwargs, message", [
    (dict(constraints=["tp<<2"]), "constraint 'tp<<2': write key, operator, value"),
    (dict(constraints=["tpx<=2"]), "did you mean 'tp'?"),
    (dict(constraints=["schedule<1f1b"]), "schedule has no order, use = or !="),
    (dict(constraints=["recompute=most"]), "recompute='most': allowed none, selective, full"),
    (dict(fixed={"gbs": 8}), "fixed gbs: gbs and gpus are arguments of enumerate_plans"),
    (dict(fixed={"tpp": 8}), "unknown plan key 'tpp'"),
    (dict(fixed="shard_group=4"), "fixed shard_group needs hybrid_shard=1"),
    (dict(fixed={"tp": 0}), "tp=0: expected a positive integer"),
])
def test_bad_constraints_name_the_fix(kwargs, message):
    with pytest.raises(PlanError) as err:
        enumerate_plans(SMALL, 16, 32, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("shape", [
    ModelShape(layers=80, heads=64, kv_heads=8, hidden=8192, seq_len=8192),
    ModelShape(layers=64, heads=64, kv_heads=8, hidden=8192, seq_len=4096, experts=64),
])
def test_4096_gpus_enumerate_validly(shape):
    rows = enumerate_plans(shape, 4096, 2048)
    assert len(rows) > 1000 and (rows["dp"] * rows["tp"] * rows["pp"] * rows["cp"] == 4096).all()
    for row in np.random.default_rng(0).choice(rows, 300, replace=False):
        assert validate(plan_from_row(row), shape, 4096) == []
