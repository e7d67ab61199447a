"""``archcost sweep``: axes, the hardware they change, elasticities against direct doubling,
energy = power x time and cost = price x GPU-hours."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from archcost.cli import app
from archcost.errors import ConfigError
from archcost.hardware.profile import load_cluster
from archcost.plan import Plan
from archcost.plan.costmodel import CostModel
from archcost.plan.evaluate import estimate_plan
from archcost.plan.search import economics
from archcost.sweep.axes import apply_hardware, parse_vary
from archcost.sweep.grid import sensitivity
from tests.conftest import MODELS
from tests.test_plan_cost import synthetic

TINY = [str(MODELS / "llama.py"), "--set", "preset=tiny", "-s", "128"]


def test_parse_vary_reads_multipliers_units_counts_and_names():
    axes = parse_vary(["mem_bw=1x,2x", "nvlink_bw=900GB/s,1.8TB/s", "scaleup_domain=8,72",
                       "gpu=h100-sxm,b200", "seq_len=2048,4096"])
    assert [a.key for a in axes] == ["mem_bw", "link_bw", "scaleup_domain", "gpu", "seq_len"]
    assert axes[0].values == (("x", 1.0), ("x", 2.0))
    assert axes[1].values == (900e9, 1.8e12)
    assert axes[2].values == (8, 72)
    assert axes[3].values == ("h100-sxm", "b200")
    for bad, msg in (("mem_bww=2x", "did you mean 'mem_bw'"), ("mem_bw=fast", "mem_bw=fast"),
                     ("mem_bw", "KEY=V1,V2"), ("gpus=0", ">= 1"), ("mem_bw=0x", "> 0"),
                     ("mem_bw=100GB", "mem_bw=100GB")):
        with pytest.raises(ConfigError, match=msg):
            parse_vary([bad])


def test_apply_hardware_changes_one_figure():
    base = load_cluster("dgx-h100-ndr", 16)
    fast = apply_hardware(base, "peak_flops", ("x", 2.0))
    assert fast.gpu.peak_flops_per_s["bf16"] == 2 * base.gpu.peak_flops_per_s["bf16"]
    assert fast.gpu.peak_flops_per_s["fp32"] == 2 * base.gpu.peak_flops_per_s["fp32"]
    # the efficiency curve moves right with the peak: same efficiency at the same duration
    x0, y0 = base.gpu.matmul_efficiency.points[0]
    assert fast.gpu.matmul_efficiency.points[0] == (2 * x0, y0)
    assert apply_hardware(base, "link_bw", 1.8e12).levels[0].bandwidth_per_gpu_bytes_per_s \
        == 1.8e12
    assert apply_hardware(base, "net_latency", ("x", 3.0)).levels[-1].latency_s == \
        pytest.approx(3 * base.levels[-1].latency_s)
    assert apply_hardware(base, "scaleup_domain", 72).levels[0].domain_size == 72
    own = dataclasses.replace(base, levels=(dataclasses.replace(
        base.levels[0], collectives=(("all_reduce", 5e-6, 300e9),)), *base.levels[1:]))
    assert apply_hardware(own, "link_bw", ("x", 2.0)).levels[0].figures("all_reduce") == \
        pytest.approx((5e-6, 600e9))  # a collective's own figures keep their ratio to the level's
    assert apply_hardware(base, "gpu", "b200").gpu.name == "b200"
    assert base.gpu.peak_flops_per_s["bf16"] == 989e12  # the base is untouched


@pytest.fixture(scope="module")
def one_gpu():
    """A compute-bound workload on one GPU: no communication at all."""
    return CostModel(synthetic(layers=4), load_cluster("dgx-h100-ndr", 1))


def test_doubling_a_resource_that_is_not_binding_changes_nothing(one_gpu):
    plan = Plan(gbs=4, mbs=1)
    base = estimate_plan(plan, one_gpu)[0]["step_time_s"]
    for key in ("link_bw", "net_bw", "link_latency", "net_latency"):
        cm = CostModel(one_gpu.workload, apply_hardware(one_gpu.cluster, key, ("x", 2.0)))
        assert estimate_plan(plan, cm)[0]["step_time_s"] == base
    rows = {r["resource"]: r for r in sensitivity(one_gpu, plan)}
    assert rows["link_bw"]["elasticity"] == 0.0 and rows["net_bw"]["elasticity"] == 0.0


def test_doubling_the_binding_resource_moves_step_time_by_its_elasticity(one_gpu):
    plan = Plan(gbs=4, mbs=1)
    rows = sensitivity(one_gpu, plan)
    top = rows[0]
    assert top["resource"] == "peak_flops" and top["elasticity"] < -0.9  # compute-bound
    assert top["step_time_if_doubled_s"] == pytest.approx(top["predicted_if_doubled_s"],
                                                          rel=0.02)


def test_energy_is_power_times_time_and_cost_is_price_times_gpu_hours():
    cluster = dataclasses.replace(load_cluster("dgx-h100-ndr", 16), price_per_gpu_hour_usd=2.5)
    cm = CostModel(synthetic(layers=4), cluster)
    step, busy, gpus, tokens = 10.0, 6.0, 16, 1e6
    e = economics(cm, step, busy, gpus, tokens)
    gpu = cluster.gpu
    watts = gpus * gpu.tdp_w * (gpu.idle_power_fraction + (1 - gpu.idle_power_fraction) * 0.6) \
        + 2 * cluster.node_power_overhead_w  # two 8-GPU nodes
    assert e["joules_per_step"] == pytest.approx(watts * step)
    assert e["joules_per_token"] == pytest.approx(watts * step / tokens)
    assert e["usd_per_step"] == pytest.approx(2.5 * gpus * step / 3600)
    assert e["usd_per_million_tokens"] == pytest.approx(2.5 * gpus * step / 3600 / tokens * 1e6)


def test_sweep_cli_grid_json_and_csv(runner, tmp_path):
    out = tmp_path / "sweep.json"
    r = runner.invoke(app, ["sweep", *TINY, "--hardware", "dgx-h100-ndr", "--gpus", "8,16",
                            "--gbs", "16", "--vary", "mem_bw=1x,2x", "-o", str(out), "--csv"])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "sweep" and doc["grid_points"] == 4 == len(doc["points"])
    assert {p["gpus"] for p in doc["points"]} == {8, 16}
    for p in doc["points"]:
        assert p["fits"] and p["plan"] and p["bottleneck"] in p["components_s"]
        assert p["step_time_s"] > 0 and p["joules_per_token"] > 0
    assert [a["key"] for a in doc["axes"]] == ["gpus", "mem_bw"]  # --gpus 8,16: an axis
    rows = list(csv.DictReader(io.StringIO(r.stdout)))  # --csv: the rows alone on stdout
    assert len(rows) == 4 and rows[0]["mem_bw"] == "1x" and rows[0]["gpus"] == "8"
    sens = doc["sensitivity"]["resources"]
    assert sens and all("elasticity" in s for s in sens)


def test_sweep_bad_input(runner):
    r = runner.invoke(app, ["sweep", *TINY, "--gpus", "8", "--vary", "warp_speed=2x"])
    assert r.exit_code == 2 and "unknown key" in r.output
