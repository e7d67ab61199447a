"""Hardware profiles: bundled figures equal the datasheets, malformed files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from archcost.cli import app
from archcost.errors import ProfileError
from archcost.hardware.profile import EfficiencyCurve, list_profiles, load_cluster, load_gpu
from archcost.hardware.units import UnitError, parse_quantity
from tests.conftest import DATA

BAD = sorted((DATA / "bad_profiles").glob("*.yaml"))

# datasheet figures (REFERENCES.md "Hardware figures"): bf16 dense FLOP/s, memory, bandwidth, TDP
DATASHEET = {
    "a100-sxm-40gb": (312e12, 40e9, 1555e9, 400),
    "a100-sxm-80gb": (312e12, 80e9, 2039e9, 400),
    "h100-sxm": (989e12, 80e9, 3.35e12, 700),
    "h100-pcie": (756e12, 80e9, 2.0e12, 350),
    "h200": (989e12, 141e9, 4.8e12, 700),
    "b200": (2250e12, 180e9, 8e12, 1000),
    "gb200": (2500e12, 186e9, 8e12, 1200),
    "mi300x": (1307.4e12, 192e9, 5.3e12, 750),
    "l4": (121e12, 24e9, 300e9, 72),
}


def test_every_bundled_profile_loads():
    names = list_profiles()
    assert set(DATASHEET) | {"cpu"} == set(names["gpus"])
    assert {"dgx-a100-hdr", "dgx-h100-ndr", "gb200-nvl72", "mi300x-ib"} <= set(names["clusters"])
    for name in names["clusters"]:
        load_cluster(name)


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_gpu_figures_equal_the_datasheet(name):
    g = load_gpu(name)
    bf16, mem, bw, tdp = DATASHEET[name]
    assert g.peak_flops_per_s["bf16"] == pytest.approx(bf16)
    assert g.mem_bytes == pytest.approx(mem)
    assert g.mem_bw_bytes_per_s == pytest.approx(bw)
    assert g.tdp_w == tdp


def test_fp8_absent_where_unsupported():
    assert "fp8" not in load_gpu("a100-sxm-80gb").peak_flops_per_s
    assert load_gpu("h100-sxm").peak_flops_per_s["fp8"] == pytest.approx(1979e12)


def test_clusters_match_their_published_layouts():
    a100 = load_cluster("dgx-a100-hdr")
    assert a100.gpus_per_node == 8 and a100.gpu.name == "a100-sxm-80gb"
    assert a100.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(300e9)
    assert a100.levels[1].bandwidth_per_gpu_bytes_per_s == pytest.approx(200e9 / 8)  # HDR, bits
    h100 = load_cluster("dgx-h100-ndr")
    assert h100.levels[1].bandwidth_per_gpu_bytes_per_s == pytest.approx(400e9 / 8)
    assert load_cluster("gb200-nvl72").levels[0].domain_size == 72


def test_node_count_scales_to_the_gpus_asked_for():
    c = load_cluster("dgx-h100-ndr", gpus=1024)
    assert (c.nodes, c.gpus) == (128, 1024)
    assert load_cluster("dgx-h100-ndr", gpus=4).nodes == 1
    with pytest.raises(ProfileError, match="whole number of 8-GPU nodes"):
        load_cluster("dgx-h100-ndr", gpus=12)


@pytest.mark.parametrize(
    "text, kind, value",
    [("989 TFLOP/s", "flops_rate", 989e12), ("80 GB", "bytes", 80e9), ("80 GiB", "bytes", 80 * 2**30),
     ("3.35 TB/s", "bandwidth", 3.35e12), ("400 Gb/s", "bandwidth", 50e9), ("3 us", "time", 3e-6),
     ("1.5 ms", "time", 1.5e-3), ("700 W", "power", 700.0), ("50 MB", "bytes", 50e6)],
)
def test_units(text, kind, value):
    assert parse_quantity(text, kind) == pytest.approx(value)


@pytest.mark.parametrize("text, kind", [("3.35 TB", "bandwidth"), ("80", "bytes"), ("3 parsecs", "time")])
def test_units_reject_the_wrong_kind(text, kind):
    with pytest.raises(UnitError):
        parse_quantity(text, kind)


def test_efficiency_curve_interpolates_in_log_space():
    c = EfficiencyCurve(((1e6, 0.1), (1e8, 0.5)))
    assert c.at(1e7) == pytest.approx(0.3)  # halfway in log10
    assert c.at(1e3) == 0.1 and c.at(1e12) == 0.5  # clamped


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_malformed_profile_one_clear_line(path: Path):
    loader = load_cluster if path.stem.startswith("cluster_") else load_gpu
    with pytest.raises(ProfileError) as info:
        loader(str(path))
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg


def test_bad_profile_corpus_is_large_enough():
    assert len(BAD) >= 10


@pytest.mark.parametrize(
    "name, message",
    [("cluster_unknown_topology", "'hypercube' is unknown"), ("cluster_unknown_gpu", "no GPU profile named"),
     ("cluster_wrong_unit", "is not a bandwidth"), ("cluster_bad_count", "must be a positive whole number"),
     ("misspelled_field", "did you mean 'memory_bandwidth'"), ("zero_rate", "must be positive")],
)
def test_cli_exit_2_on_malformed_profile(runner, name, message):
    res = runner.invoke(app, ["profiles", "show", str(DATA / "bad_profiles" / f"{name}.yaml")])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and f"{name}.yaml" in res.output and message in res.output


def test_cli_list_and_show(runner):
    res = runner.invoke(app, ["profiles", "list"])
    assert res.exit_code == 0 and "h100-sxm" in res.output and "dgx-h100-ndr" in res.output
    res = runner.invoke(app, ["profiles", "show", "h200", "--json"])
    assert res.exit_code == 0 and '"mem_bytes": 141000000000.0' in res.output
    res = runner.invoke(app, ["profiles", "show", "h100-sxn"])
    assert res.exit_code == 2 and "did you mean 'h100-sxm'" in res.output
