"""Hardware profiles: bundled figures equal the datasheets, units parse, malformed files fail clearly.

Expected values are literals from REFERENCES.md ("Hardware figures"), the public MAMF table and
hand computation, never from the code under test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from archcost.cli import app as main_app
from archcost.cli import profiles as profiles_cli
from archcost.errors import ProfileError
from archcost.hardware.profile import (
    DTYPES,
    ClusterProfile,
    Dtype,
    EfficiencyCurve,
    GpuProfile,
    Topology,
    list_profiles,
    load_any,
    load_cluster,
    load_gpu,
)
from archcost.hardware.units import Quantity, UnitError, parse_quantity
from tests.conftest import DATA, ROOT

BAD = DATA / "bad_profiles"
BUNDLED = ROOT / "hardware_profiles"

MIB = 2**20
# REFERENCES.md "Hardware figures", per GPU, dense: bf16 TFLOP/s, fp8 TFLOP/s, memory, mem BW, TDP;
# the memory the driver reports where public nvidia-smi outputs give it (each file names them),
# else the datasheet's
DATASHEET = {
    "a100-sxm-40gb": (312, None, 40960 * MIB, 1555e9, 400),
    "a100-sxm-80gb": (312, None, 81920 * MIB, 2039e9, 400),
    "h100-sxm": (989, 1979, 81559 * MIB, 3.35e12, 700),
    "h100-pcie": (756, 1513, 80e9, 2.0e12, 350),
    "h200": (989, 1979, 143771 * MIB, 4.8e12, 700),
    "b200": (2250, 4500, 180e9, 8e12, 1000),
    "gb200": (2500, 5000, 186e9, 8e12, 1200),
    "mi300x": (1307, 2615, 192e9, 5.3e12, 750),
    "l4": (121, 242, 23034 * MIB, 300e9, 72),
    # no datasheet: torchtitan's figures (2.4 TB/s, 500 W, 95 GB) and the file's peak rule
    "h100-sxm-96gb-500w": (960, 1921, 95 * 2**30, 2.4e12, 500),
}
# inference and edge parts, from their own sources (each file names them): bf16 (Apple: the ALU
# rate), fp8, int8 TOPS, memory a model may use (unified: the GPU's share of the whole), mem BW,
# TDP. L40S datasheet (sparse / 2); RTX 4090: Ada whitepaper appendix, FP32-accumulate rates;
# Jetson AGX Orin 64GB: data sheet and technical brief, 90 % of 64 GiB (NB); Apple M3 Max:
# newsroom and technical specifications, macOS's 75 % of 128 GiB.
EDGE = {
    "l40s": (366.5, 733, 733, 46068 * MIB, 864e9, 350),
    "rtx-4090": (165.2, 330.3, 660.6, 24e9, 1008e9, 450),
    "jetson-agx-orin": (42.5, None, 85, 0.9 * 64 * 2**30, 204.8e9, 60),
    "apple-m3-max": (14.3, None, None, 0.75 * 128 * 2**30, 400e9, 60),
}


# --- bundled profiles ----------------------------------------------------------------------------
def test_every_bundled_profile_loads_under_its_file_name():
    names = list_profiles()
    assert set(names["gpus"]) == set(DATASHEET) | set(EDGE) | {"cpu"}
    assert set(names["clusters"]) == {"cpu-host", "dgx-a100-hdr", "dgx-h100-ndr", "dgx-h200",
                                      "gb200-nvl72", "gb200-nvl72-64", "mi300x-ib",
                                      "grand-teton-h100", "l40s-pcie"}
    for name in names["gpus"]:
        g = load_gpu(name)
        assert isinstance(g, GpuProfile) and g.name == name and "fp32" in g.peak_flops_per_s
        assert set(g.peak_flops_per_s) <= set(DTYPES)
    for name in names["clusters"]:
        c = load_cluster(name)
        assert isinstance(c, ClusterProfile) and c.name == name and (c.nodes, c.gpus) == (1, c.gpus_per_node)


def test_bundled_files_are_the_source_checkout():
    for kind in ("gpus", "clusters"):
        assert list_profiles()[kind] == sorted(p.stem for p in (BUNDLED / kind).glob("*.yaml"))


FIGURE_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "mxfp8", "nvfp4", "int8", "gpu_share",
               "memory", "memory_bandwidth", "l2_cache",
               "kernel_launch", "tdp", "idle_power_fraction", "gpus_per_node", "domain_size",
               "bandwidth_per_gpu", "latency", "node_power_overhead")


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*/*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_figure_cites_a_source(path: Path):
    uncited = [
        line for line in path.read_text().splitlines()
        if re.match(rf"\s*(?:{'|'.join(FIGURE_KEYS)}):\s*[^#\s]*\d", line) and "#" not in line
    ]
    assert not uncited, f"figures without a source comment: {uncited}"


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_gpu_figures_equal_the_datasheet_table(name):
    g = load_gpu(name)
    bf16, fp8, mem, bw, tdp = DATASHEET[name]
    # the table rounds to 3-4 digits (MI300X 1307.4 -> 1307, L4 fp8 242.5 -> 242)
    assert g.peak_flops_per_s["bf16"] == pytest.approx(bf16 * 1e12, rel=5e-3)
    if fp8 is None:
        assert "fp8" not in g.peak_flops_per_s  # null in the file: unsupported, not zero
    else:
        assert g.peak_flops_per_s["fp8"] == pytest.approx(fp8 * 1e12, rel=5e-3)
    assert g.mem_bytes == pytest.approx(mem)
    assert g.mem_bw_bytes_per_s == pytest.approx(bw)
    assert g.tdp_w == pytest.approx(tdp)


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_and_inference_figures_equal_their_sources(name):
    g = load_gpu(name)
    bf16, fp8, int8, mem, bw, tdp = EDGE[name]
    peaks = g.peak_flops_per_s
    assert peaks["bf16"] == pytest.approx(bf16 * 1e12, rel=1e-3)
    for key, want in (("fp8", fp8), ("int8", int8)):
        if want is None:
            assert key not in peaks  # unsupported, not zero
        else:
            assert peaks[key] == pytest.approx(want * 1e12, rel=1e-3)
    assert g.mem_bytes == pytest.approx(mem)
    assert g.mem_bw_bytes_per_s == pytest.approx(bw)
    assert g.tdp_w == pytest.approx(tdp)


def test_every_int8_tensor_core_part_has_its_int8_peak():
    """Datasheet int8 TOPS (dense = sparse / 2): A100 624, H100 SXM / H200 1979, H100 PCIe 1513,
    L4 242.5; the 500 W H100 follows its peak rule (x 0.78 x 989 / 794.5)."""
    want = {"a100-sxm-40gb": 624, "a100-sxm-80gb": 624, "h100-sxm": 1979, "h200": 1979,
            "h100-pcie": 1513, "l4": 242.5, "h100-sxm-96gb-500w": 1979 * 0.78 * 989 / 794.5}
    for name, tops in want.items():
        assert load_gpu(name).peak_flops_per_s["int8"] == pytest.approx(tops * 1e12, rel=2e-3)
    for name in ("b200", "gb200", "mi300x", "cpu"):  # not stated (yet): absent, never zero
        assert "int8" not in load_gpu(name).peak_flops_per_s


def test_sparse_peaks_are_the_datasheets_twice_dense():
    """2:4 sparsity doubles the tensor-core rate; every stated sparse peak is the dense one x 2
    (within the datasheets' rounding: L4 fp8 485 over 242), and the literals match."""
    stated = 0
    for name in list_profiles()["gpus"]:
        g = load_gpu(name)
        for dt, sparse in g.sparse_peak_flops_per_s.items():
            assert sparse / g.peak_flops_per_s[dt] == pytest.approx(2.0, rel=5e-3), (name, dt)
            stated += 1
    assert stated >= 35
    assert load_gpu("h100-sxm").sparse_peak_flops_per_s["bf16"] == 1979e12
    assert load_gpu("a100-sxm-80gb").sparse_peak_flops_per_s["int8"] == 1248e12
    assert load_gpu("rtx-4090").sparse_peak_flops_per_s["fp16"] == pytest.approx(330.4e12)
    assert load_gpu("jetson-agx-orin").sparse_peak_flops_per_s["int8"] == 170e12
    assert load_gpu("apple-m3-max").sparse_peak_flops_per_s == {}
    doubled = load_gpu("l40s").scaled(flops=0.5)
    assert doubled.sparse_peak_flops_per_s["fp8"] == pytest.approx(733e12)


def test_edge_peaks_follow_their_stated_derivations():
    """Orin: the module's 275 sparse INT8 TOPS less the DLAs' 105 is the GPU's 170; dense is
    half; Ampere tensor cores run fp16 at half the int8 rate and tf32 at a quarter; fp32 is
    2048 cores x 2 x 1.3 GHz. RTX 4090: bf16/fp16 with FP32 accumulate at half the FP16-accumulate
    330.3 TFLOP/s, fp8 at half 660.6. M3 Max: 40 cores x 256 ops/clock x 1.398 GHz, fp16 = fp32."""
    orin = load_gpu("jetson-agx-orin").peak_flops_per_s
    int8 = (275 - 105) / 2 * 1e12
    assert orin["int8"] == int8
    assert orin["fp16"] == orin["bf16"] == int8 / 2 and orin["tf32"] == int8 / 4
    assert orin["fp32"] == pytest.approx(2048 * 2 * 1.3e9, rel=5e-3)
    assert int8 / (64 * 1.3e9) == pytest.approx(624e12 / (432 * 1.41e9), rel=5e-3)  # A100 per TC
    rtx = load_gpu("rtx-4090").peak_flops_per_s
    assert rtx["bf16"] == rtx["fp16"] == pytest.approx(330.3e12 / 2, rel=1e-3)
    assert rtx["fp8"] == pytest.approx(660.6e12 / 2, rel=1e-3)
    m3 = load_gpu("apple-m3-max").peak_flops_per_s
    assert m3["fp32"] == m3["fp16"] == pytest.approx(40 * 256 * 1.398e9, rel=2e-3)
    assert "tf32" not in m3 and "fp8" not in m3  # no tensor cores


def test_unified_memory_gives_the_gpu_its_share():
    """memory: the whole shared memory; mem_bytes (the capacity every estimate reads) the share
    the GPU may use: macOS's default wired limit 0.75 of 128 GiB = 96 GiB."""
    m3 = load_gpu("apple-m3-max")
    assert m3.unified_memory_bytes == 128 * 2**30 and m3.mem_bytes == 96 * 2**30
    orin = load_gpu("jetson-agx-orin")
    assert orin.unified_memory_bytes == 64 * 2**30 and orin.mem_bytes == pytest.approx(57.6 * 2**30)
    for name in DATASHEET:  # discrete parts: their own memory, all of it
        assert load_gpu(name).unified_memory_bytes is None
    for g in (m3, orin):  # offloading to the host's memory frees nothing: no host link given
        assert g.host_link_bw_bytes_per_s is None


def test_an_estimate_on_unified_memory_fits_against_the_gpus_share(runner):
    res = runner.invoke(main_app, ["analyze", str(ROOT / "models" / "llama.py"), "--set",
                                   "preset=tiny", "--hardware", "apple-m3-max", "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.output)["estimate"]
    assert est["hardware"] == "apple-m3-max" and est["peak_flops_per_s"] == 14.3e12  # fp32 run
    assert est["memory_bytes"]["capacity"] == 96 * 2**30


def test_sustained_clocks_follow_the_stated_rule():
    """The 700 W GH100 parts share one fitted clock, the 400 W GA100 parts another; the 500 W
    H100's is the 700 W figure x (500/700)^(1/3) (dynamic power ~ f^3 at the power limit) over its
    own tables' clock (its peaks carry 0.78 x 989 / 794.5 of the 700 W part's); every other
    bundled part keeps 1."""
    sxm, h200, capped = load_gpu("h100-sxm"), load_gpu("h200"), load_gpu("h100-sxm-96gb-500w")
    assert 0 < sxm.sustained_clock < 1 and h200.sustained_clock == sxm.sustained_clock
    rule = sxm.sustained_clock * (500 / 700) ** (1 / 3) / (0.78 * 989 / 794.5)
    assert capped.sustained_clock == pytest.approx(rule, abs=5e-4)
    a80, a40 = load_gpu("a100-sxm-80gb"), load_gpu("a100-sxm-40gb")
    assert 0 < a80.sustained_clock < 1 and a40.sustained_clock == a80.sustained_clock
    fitted = {"h100-sxm", "h200", "h100-sxm-96gb-500w", "a100-sxm-80gb", "a100-sxm-40gb"}
    for path in sorted((ROOT / "hardware_profiles" / "gpus").glob("*.yaml")):
        if path.stem not in fitted:
            assert load_gpu(path.stem).sustained_clock == 1.0, path.stem


def test_the_500w_h100_peaks_follow_the_stated_clock_rule():
    """Every peak of the 500 W part is the SXM5 datasheet's x 771.42 / 794.5 (torchao's large
    GEMM on this variant, 0.78 x 989, over the 700 W part's MAMF), inside torchtitan's bracket
    of 835 (H100 NVL) to 989 TFLOP/s (SXM)."""
    capped, sxm = load_gpu("h100-sxm-96gb-500w"), load_gpu("h100-sxm")
    clock = 0.78 * 989 / 794.5
    assert set(capped.peak_flops_per_s) == set(sxm.peak_flops_per_s)
    for dt, peak in capped.peak_flops_per_s.items():
        assert peak == pytest.approx(sxm.peak_flops_per_s[dt] * clock, rel=2e-3), dt
    assert 835e12 < capped.peak_flops_per_s["bf16"] < 989e12
    c = load_cluster("grand-teton-h100", 512)
    assert (c.gpu.name, c.gpus_per_node, c.nodes) == ("h100-sxm-96gb-500w", 8, 64)
    assert c.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(900e9 / 2)
    assert c.levels[1].bandwidth_per_gpu_bytes_per_s == pytest.approx(400e9 / 8)


def test_blackwell_block_scaled_peaks():
    """MXFP8 runs at the FP8 rate, NVFP4 at twice it (HGX B200 and GB200 NVL72 specs)."""
    for name, fp4 in (("b200", 9000e12), ("gb200", 10000e12)):
        g = load_gpu(name)
        assert g.peak_flops_per_s["mxfp8"] == g.peak_flops_per_s["fp8"] == fp4 / 2
        assert g.peak_flops_per_s["nvfp4"] == fp4
    assert "mxfp8" not in load_gpu("h100-sxm").peak_flops_per_s


def test_clusters_match_their_published_layouts():
    # scale-up links: REFERENCES.md gives bidirectional figures; profiles hold one direction
    a100 = load_cluster("dgx-a100-hdr")
    assert (a100.gpu.name, a100.gpus_per_node) == ("a100-sxm-80gb", 8)
    assert a100.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(600e9 / 2)
    assert a100.levels[1].bandwidth_per_gpu_bytes_per_s == pytest.approx(200e9 / 8)  # HDR, bits
    assert a100.levels[1].topology is Topology.FAT_TREE and a100.levels[1].domain_size is None
    h100 = load_cluster("dgx-h100-ndr")
    assert h100.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(900e9 / 2)
    assert h100.levels[1].bandwidth_per_gpu_bytes_per_s == pytest.approx(400e9 / 8)  # NDR, bits
    nvl = load_cluster("gb200-nvl72")
    assert (nvl.gpus_per_node, nvl.levels[0].domain_size) == (4, 72)
    assert nvl.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(1.8e12 / 2)
    # 16 of a rack's 18 trays per job segment; every per-GPU figure that of the whole rack
    seg = load_cluster("gb200-nvl72-64")
    assert seg.levels[0].domain_size == 16 * 4
    assert dataclasses.replace(seg, name=nvl.name, source_path=nvl.source_path, levels=(
        dataclasses.replace(seg.levels[0], domain_size=72), *seg.levels[1:])) == nvl
    mi = load_cluster("mi300x-ib")
    assert mi.levels[0].topology is Topology.FULL_MESH
    assert mi.levels[0].bandwidth_per_gpu_bytes_per_s == pytest.approx(896e9 / 2)  # 7 x 64 GB/s


# H200 curves (measured anchor: GEMM 0.80 of peak, copy 0.90 of bandwidth; REFERENCES.md)
H200_MATMUL = [(1e6, .01), (1e8, .12), (1e9, .35), (1e10, .60), (1e11, .72), (1e12, .80)]
H200_ATTENTION = [(1e7, .05), (1e9, .25), (1e11, .45), (1e12, .55)]
H200_MEMORY = [(1e4, .03), (1e5, .20), (1e6, .50), (1e7, .75), (1e8, .85), (1e9, .90)]
# rule stated in each file: x * (peak / H200's), y * (ceiling / H200's); ceilings from the MAMF
# table (A100 SXM 85.9 %, B200 77.6 %, GB200 72.9 %, MI300X 60.1 %), torchao's roofline figures
# for the 500 W H100 (GEMM 771 of 960 TFLOP/s, copy 0.92) or, where nothing is published, H200's
# own (NB)
DERIVED = {  # name: (bf16 TFLOP/s, GEMM ceiling, mem TB/s, copy ceiling)
    "a100-sxm-40gb": (312, 0.859, 1.555, 0.90), "a100-sxm-80gb": (312, 0.859, 2.039, 0.90),
    "h100-sxm": (989, 0.80, 3.35, 0.90), "h100-pcie": (756, 0.80, 2.0, 0.90),
    "b200": (2250, 0.776, 8.0, 0.90), "gb200": (2500, 0.729, 8.0, 0.90), "l4": (121, 0.80, 0.3, 0.90),
    "h100-sxm-96gb-500w": (960, 0.80, 2.4, 0.92),
    "mi300x": (1307.4, 0.601, 5.3, 0.80),
    "l40s": (366.5, 0.80, 0.864, 0.90), "rtx-4090": (165.2, 0.80, 1.008, 0.90),
    "jetson-agx-orin": (42.5, 0.80, 0.2048, 0.90), "apple-m3-max": (14.3, 0.80, 0.4, 0.90),
}


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_curves_follow_the_stated_rule(name):
    g = load_gpu(name)
    peak, gemm, bw, copy = DERIVED[name]
    for curve, anchor, xs, ys in [
        (g.matmul_efficiency, H200_MATMUL, peak / 989, gemm / 0.80),
        (g.attention_efficiency, H200_ATTENTION, peak / 989, gemm / 0.80),
        (g.memory_efficiency, H200_MEMORY, bw / 4.8, copy / 0.90),
    ]:
        assert len(curve.points) == len(anchor)
        for (x, y), (ax, ay) in zip(curve.points, anchor):
            assert x == pytest.approx(ax * xs, rel=1e-2) and y == pytest.approx(ay * ys, abs=1e-3)


def test_h200_curves_are_the_measured_anchor():
    g = load_gpu("h200")
    assert g.matmul_efficiency.points == tuple(H200_MATMUL)
    assert g.matmul_efficiency.at(2 * 8192**3) == pytest.approx(0.80, abs=0.01)  # 790 / 989
    assert g.memory_efficiency.points == tuple(H200_MEMORY)


# --- units ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, kind, value",
    [("989 TFLOP/s", "flops_rate", 989e12), ("67 TFLOPS", "flops_rate", 67e12),
     ("80 GB", "bytes", 80e9), ("80 GiB", "bytes", 80 * 2**30), ("50 MB", "bytes", 50e6),
     ("640 Gb", "bytes", 80e9), ("3.35 TB/s", "bandwidth", 3.35e12), ("450 GB/s", "bandwidth", 450e9),
     ("200 Gb/s", "bandwidth", 25e9), ("400 Gbps", "bandwidth", 50e9), ("1 GiB/s", "bandwidth", 2**30),
     ("3 us", "time", 3e-6), ("3 \u00b5s", "time", 3e-6), ("1.5 ms", "time", 1.5e-3),
     ("700 W", "power", 700.0), ("10.2 kW", "power", 10200.0), ("$2.50/h", "usd_per_hour", 2.5),
     ("2.50 $/h", "usd_per_hour", 2.5), (2.5, "usd_per_hour", 2.5), ("1e3 GB", "bytes", 1e12),
     ("624 TOPS", "flops_rate", 624e12), ("1.5 POP/s", "flops_rate", 1.5e15)],
)
def test_units_parse_to_si(text, kind, value):
    assert parse_quantity(text, kind) == pytest.approx(value)
    assert parse_quantity(text, Quantity(kind)) == pytest.approx(value)


def test_bits_and_bytes_differ_by_eight_and_gib_is_binary():
    assert parse_quantity("200 GB/s", "bandwidth") == 8 * parse_quantity("200 Gb/s", "bandwidth")
    assert parse_quantity("80 GiB", "bytes") / parse_quantity("80 GB", "bytes") == pytest.approx(2**30 / 1e9)


@pytest.mark.parametrize(
    "value, kind, message",
    [("3.35 TB", "bandwidth", "'3.35 TB' is a size in bytes, not a bandwidth; write it like '3.35 TB/s'"),
     ("80 GB/s", "bytes", "write it like '80 GB'"), ("989 TFLOP", "flops_rate", "write it like '989 TFLOP/s'"),
     ("80", "bytes", "has no unit"), (80, "bytes", "has no unit"), ("3 parsecs", "time", "not a time"),
     ("fast", "time", "not a number with a unit"), (True, "power", "not a power"),
     ("$2.50", "bandwidth", "not a bandwidth"), ("3 KiW", "power", "not a power")],
)
def test_units_reject_the_wrong_kind(value, kind, message):
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_quantity(value, kind)


# --- efficiency curves ---------------------------------------------------------------------------
def test_efficiency_curve_interpolates_in_log10_and_clamps():
    c = EfficiencyCurve(((1e6, 0.1), (1e8, 0.5)))
    assert c.at(1e7) == pytest.approx(0.3)  # halfway in log10
    assert c.at(10**6.5) == pytest.approx(0.2)  # a quarter of the way
    assert c.at(1e3) == 0.1 and c.at(0) == 0.1 and c.at(1e12) == 0.5  # clamped at both ends
    three = EfficiencyCurve(((1e3, 0.2), (1e4, 0.4), (1e6, 0.8)))
    assert three.at(1e4) == pytest.approx(0.4)  # on a point
    assert three.at(1e5) == pytest.approx(0.6)  # second segment, halfway
    assert three.at(2e3) == pytest.approx(0.2 + 0.2 * 0.30103, rel=1e-5)  # log10(2) = 0.30103
    assert three.xs_log10.tolist() == pytest.approx([3.0, 4.0, 6.0])
    assert three.ys.tolist() == pytest.approx([0.2, 0.4, 0.8])


_MEM = EfficiencyCurve(((1e3, 0.2), (1e5, 1.0), (2e6, 0.4), (3e6, 0.2), (1e9, 0.1)))
_OP = EfficiencyCurve(((1e4, 0.3), (1e6, 0.5), (1e8, 0.15)))


def test_an_op_curve_is_capped_by_the_memory_curve_between_its_points():
    """Closed form: between its own points an op's curve reads no higher than the memory curve
    times the op's largest ratio to it at its own points (here 0.15 / mem(1e8), mem(1e8) =
    0.2 - 0.1 x log10(1e8 / 3e6) / log10(1e9 / 3e6)); its points and ends stay; brute force over
    a log grid: never above the straight reading."""
    capped = _OP.capped_by(_MEM)
    for x, y in _OP.points:
        assert capped.at(x) == y
    assert capped.at(1.0) == 0.3 and capped.at(1e12) == 0.15
    mem_1e8 = 0.2 - 0.1 * math.log10(1e8 / 3e6) / math.log10(1e9 / 3e6)
    ratio = 0.15 / mem_1e8
    assert ratio == pytest.approx(max(y / _MEM.at(x) for x, y in _OP.points))
    straight_3e6 = 0.5 - 0.35 * math.log10(3) / 2
    assert capped.at(3e6) == pytest.approx(0.2 * ratio) and 0.2 * ratio < 0.6 * straight_3e6
    assert capped.at(2e6) == pytest.approx(min(0.4 * ratio, 0.5 - 0.35 * math.log10(2) / 2))
    assert capped.at(1e5) == pytest.approx(_OP.at(1e5))  # under the cap there: unchanged
    for x in np.logspace(2, 10, 161):
        assert capped.at(x) <= _OP.at(x) + 1e-12
    # a curve without the memory curve's points inside its range is itself
    assert EfficiencyCurve(((4e6, 0.1), (5e8, 0.1))).capped_by(_MEM).points == ((4e6, 0.1),
                                                                               (5e8, 0.1))


def test_the_engine_prices_an_op_between_its_points_on_the_capped_curve():
    """An aten.mul of 3 MB on a profile whose memory curve drops at 2-3 MB (a core's cache
    edge) between the op's points: bytes / (bw x capped curve) + overhead, slower than its
    own curve read straight across; an op without a curve reads the memory curve."""
    from archcost.cost.compute import memory_curve_index, overhead_seconds, roofline_seconds

    g = dataclasses.replace(load_gpu("cpu"), memory_efficiency=_MEM,
                            op_efficiency={"aten.mul": _OP})
    ops = ["aten.mul", "aten.add"]
    t, _ = roofline_seconds(g, np.zeros(2), np.full(2, 3e6), np.full(2, 1e12), np.full(2, -1),
                            memory_curve_index(g, ops), overhead_seconds(g, ["forward"] * 2))
    bw, over = g.mem_bw_bytes_per_s, g.overhead_s("forward")
    assert t[0] == pytest.approx(3e6 / (bw * _OP.capped_by(_MEM).at(3e6)) + over, rel=1e-12)
    assert t[0] > 1.5 * (3e6 / (bw * _OP.at(3e6)) + over) - over
    assert t[1] == pytest.approx(3e6 / (bw * 0.2) + over, rel=1e-12)


@pytest.mark.parametrize("points", [(), ((1e6, 0.0),), ((1e6, 1.5),), ((1e6, 0.5), (1e5, 0.6)), ((0, 0.5),)])
def test_efficiency_curve_refuses_invalid_points(points):
    with pytest.raises(ValueError):
        EfficiencyCurve(points)


# --- cluster sizing ------------------------------------------------------------------------------
def test_with_gpus_scales_whole_nodes():
    c = load_cluster("dgx-h100-ndr", gpus=1024)
    assert (c.nodes, c.gpus) == (128, 1024)
    assert load_cluster("dgx-h100-ndr").with_gpus(8).nodes == 1
    part = load_cluster("dgx-h100-ndr", gpus=4)  # inside one node: any count
    assert (part.nodes, part.gpus) == (1, 4)
    nvl = load_cluster("gb200-nvl72", gpus=72)
    assert (nvl.nodes, nvl.gpus) == (18, 72)  # 18 compute trays of 4
    with pytest.raises(ProfileError, match="not a whole number of 8-GPU nodes.*e.g. 8 or 16"):
        load_cluster("dgx-h100-ndr", gpus=12)
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ProfileError, match="whole number >= 1"):
            load_cluster("dgx-h100-ndr").with_gpus(bad)


def test_with_gpus_respects_max_nodes_and_bounded_fabrics(tmp_path):
    (tmp_path / "gpu.yaml").write_text((BUNDLED / "gpus" / "h100-sxm.yaml").read_text())
    (tmp_path / "small.yaml").write_text(
        "name: small\ngpu: ./gpu.yaml\ngpus_per_node: 8\nmax_nodes: 2\n"
        "node_power_overhead: 4.6 kW\nprice_per_gpu_hour: $3.10/h\n"
        "levels:\n  - {name: nvl, domain_size: 8, bandwidth_per_gpu: 450 GB/s, latency: 3 us, topology: switch}\n"
        "  - {name: ib, domain_size: 32, bandwidth_per_gpu: 400 Gb/s, latency: 6 us, topology: fat-tree}\n"
    )
    c = load_cluster(str(tmp_path / "small.yaml"))
    assert c.gpu.name == "h100-sxm" and c.max_nodes == 2  # GPU path relative to the cluster file
    assert c.node_power_overhead_w == 4600.0 and c.price_per_gpu_hour_usd == 3.10
    assert c.with_gpus(16).nodes == 2
    with pytest.raises(ProfileError, match="at most 2; ask for at most 16 GPUs"):
        c.with_gpus(24)


# --- malformed files: one line naming the file and the field -------------------------------------
MALFORMED = {  # file stem: (what the message must name, a phrase of the fix)
    "misspelled_field": ("field 'memory_bandwith'", "did you mean 'memory_bandwidth'"),
    "missing_field": ("field 'l2_cache'", "missing; add it, e.g. l2_cache: '50 MB'"),
    "wrong_unit_bandwidth": ("field 'memory_bandwidth'", "write it like '3.35 TB/s'"),
    "wrong_unit_memory": ("field 'memory'", "write it like '80 GB'"),
    "no_unit": ("field 'memory'", "has no unit"),
    "unparsable_number": ("field 'kernel_launch'", "'fast' is not a number with a unit"),
    "zero_rate": ("field 'peak_flops.bf16'", "must be positive"),
    "negative_power": ("field 'tdp'", "must be positive"),
    "efficiency_above_one": ("field 'matmul_efficiency'", "efficiency must be in (0, 1]"),
    "curve_not_increasing": ("field 'memory_efficiency'", "x must increase"),
    "curve_bad_point": ("field 'attention_efficiency'", "is not a pair"),
    "fraction_out_of_range": ("field 'idle_power_fraction'", "in [0, 1)"),
    "sustained_clock_above_one": ("field 'sustained_clock'", "must be a number in (0, 1]"),
    "unknown_dtype": ("field 'peak_flops.fp4'", "unknown dtype"),
    "duplicate_field": ("field 'memory'", "given twice"),
    "price_not_a_price": ("field 'price_per_gpu_hour'", "write it like '$2.50/h'"),
    "gpu_given_a_cluster": ("'levels'", "this is a cluster profile"),
    "cluster_unknown_topology": ("field 'levels[0].topology'", "'hypercube' is unknown; use one of switch"),
    "cluster_unknown_gpu": ("field 'gpu'", "did you mean 'h100-sxm'"),
    "cluster_wrong_unit": ("field 'levels[1].bandwidth_per_gpu'", "write it like '400 Gb/s'"),
    "cluster_bad_count": ("field 'gpus_per_node'", "must be a positive whole number"),
    "cluster_bad_gpus_per_link": ("field 'levels[1].gpus_per_link'",
                                  "must be a positive whole number"),
    "cluster_levels_not_nested": ("field 'levels[1].domain_size'", "must be larger than the level inside it"),
    "cluster_unbounded_inner": ("field 'levels[0].domain_size'", "only the outermost level may be unbounded"),
    "cluster_level_missing_latency": ("field 'levels[0].latency'", "missing"),
    "cluster_misspelled_level_field": ("field 'levels[0].bandwith_per_gpu'", "did you mean 'bandwidth_per_gpu'"),
    "cluster_given_a_gpu": ("'peak_flops'", "this is a GPU profile"),
    "yaml_syntax": ("line 4", "YAML syntax error"),
    "not_a_mapping": ("top level", "must be a mapping"),
    # measured tables (hardware/tables.py) and the parts that carry them
    "tables_shape_unknown_dtype": ("field 'matmul_shape_efficiency.bf61'", "did you mean 'bf16'"),
    "tables_shape_alias_without_table": ("field 'matmul_shape_efficiency.fp16'",
                                         "names 'fp8', which has no table here"),
    "tables_shape_wrong_rows": ("field 'matmul_shape_efficiency.bf16.values'",
                                "must be a 7 x 5 x 5 nested list"),
    "tables_shape_cell_above_one": ("field 'matmul_shape_efficiency.bf16.values'",
                                    "cell (16384, 256, 256) is 1.2; efficiency must be in (0, 1]"),
    "tables_attention_misspelled_phase": ("field 'attention_kernels.flash3.backwards'",
                                          "did you mean 'backward'"),
    "tables_attention_row_length": ("field 'attention_kernels.flash3.forward.full'",
                                    "must be 3 rows (one per head dim) of 6 values"),
    "tables_attention_bad_kernel_name": ("field 'attention_kernels.FlashAttention3'",
                                         "a kernel name is lower-case"),
    "tables_attention_seq_not_increasing": ("field 'attention_kernels.flash3.seq_lens'",
                                            "must be increasing positive sizes"),
    "blackwell_nvfp4_no_unit": ("field 'peak_flops.nvfp4'", "has no unit"),
    "cluster_grand_teton_unknown_gpu": ("field 'gpu'", "did you mean 'h100-sxm-96gb-500w'"),
    # inference and edge fields: int8 and 2:4-sparse peaks, unified memory
    "negative_int8": ("field 'peak_flops.int8'", "must be positive"),
    "sparse_above_twice": ("field 'sparse_peak_flops.bf16'",
                           "must lie above the dense bf16 peak (366.5 TFLOP/s) and at most twice"),
    "sparse_not_above_dense": ("field 'sparse_peak_flops.tf32'", "must lie above the dense"),
    "sparse_without_dense": ("field 'sparse_peak_flops.fp8'", "peak_flops has no fp8 rate"),
    "unified_share_above_one": ("field 'unified_memory.gpu_share'", "1.25 must be a number in (0, 1]"),
    "unified_not_a_mapping": ("field 'unified_memory'", "must be a mapping such as {gpu_share: 0.75}"),
    "unified_misspelled_share": ("field 'unified_memory.gpu_shares'", "did you mean 'gpu_share'"),
}


def test_the_malformed_corpus_is_complete():
    assert {p.stem for p in BAD.glob("*.yaml")} == set(MALFORMED) and len(MALFORMED) >= 10


@pytest.mark.parametrize("stem", sorted(MALFORMED))
def test_malformed_profile_gives_one_line_naming_file_and_field(stem):
    loader = load_cluster if stem.startswith("cluster_") else load_gpu
    with pytest.raises(ProfileError) as info:
        loader(str(BAD / f"{stem}.yaml"))
    msg = str(info.value)
    names, fix = MALFORMED[stem]
    assert msg.startswith(f"{stem}.yaml: ") and "\n" not in msg
    assert names in msg and fix in msg, msg


def test_missing_file_and_unknown_name_list_the_bundled_profiles():
    with pytest.raises(ProfileError, match=r"no such profile file; .*h100-sxm"):
        load_gpu("nowhere/h100.yaml")
    with pytest.raises(ProfileError, match=r"no GPU profile named 'h100'; did you mean 'h100-pcie' "
                                           r"or 'h100-sxm' or 'h100-sxm-96gb-500w'\?"):
        load_gpu("h100")
    with pytest.raises(ProfileError, match=r"no cluster profile named 'dgx'.*dgx-h100-ndr"):
        load_cluster("dgx")
    with pytest.raises(ProfileError, match="GPUs: .*clusters: "):
        load_any("tpu-v5")


def test_load_any_tells_a_gpu_from_a_cluster_file():
    assert isinstance(load_any("h200"), GpuProfile)
    assert isinstance(load_any("mi300x-ib"), ClusterProfile)
    assert isinstance(load_any(str(BUNDLED / "clusters" / "gb200-nvl72.yaml")), ClusterProfile)
    assert {d.value for d in Dtype} == set(DTYPES)


# --- CLI sub-app ---------------------------------------------------------------------------------
def test_cli_list_shows_every_profile(runner):
    res = runner.invoke(profiles_cli.app, ["list"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    for name in [*DATASHEET, "cpu", "dgx-a100-hdr", "dgx-h100-ndr", "gb200-nvl72", "gb200-nvl72-64",
                 "mi300x-ib"]:
        assert name in res.output
    # 81,559 MiB of memory in GiB: 79.6
    assert re.search(r"h100-sxm\s.*\s989\s.*\s1,979\s.*\s79\.6\s.*\s3\.35\s.*\s700", res.output)
    doc = json.loads(runner.invoke(profiles_cli.app, ["list", "--json"]).output)
    assert len(doc["gpus"]) == 15 and doc["clusters"][0]["kind"] == "cluster"


def test_cli_show_prints_units_and_json_in_si(runner):
    res = runner.invoke(profiles_cli.app, ["show", "h100-sxm"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    # memory in IEC units: 81,559 MiB = 79.65 GiB, a 50e6 B cache / 2**20 = 47.68 MiB
    for text in ("989 TFLOP/s", "79.65 GiB (85,520,809,984 bytes)", "3.35 TB/s", "47.68 MiB",
                 "4 us", "700 W"):
        assert text in res.output
    res = runner.invoke(profiles_cli.app, ["show", "h200", "--json"])
    doc = json.loads(res.output)
    assert doc["kind"] == "gpu" and doc["mem_bytes"] == 143771 * MIB and doc["peak_flops_per_s"]["bf16"] == 989e12
    doc = json.loads(runner.invoke(profiles_cli.app, ["show", "dgx-a100-hdr", "--gpus", "3072", "--json"]).output)
    assert (doc["nodes"], doc["gpus"]) == (384, 3072)  # Narayanan et al. SC'21's largest run
    assert doc["levels"][1] == {"name": "ib-hdr", "domain_size": None, "bandwidth_per_gpu_bytes_per_s": 25e9,
                                "latency_s": 6e-6, "topology": "fat-tree",
                                "collectives": {}, "gpus_per_link": 1}
    a100 = runner.invoke(profiles_cli.app, ["show", "a100-sxm-80gb"], env={"COLUMNS": "160"}).output
    assert "- (unsupported)" in a100  # fp8 on Ampere
    l40s = runner.invoke(profiles_cli.app, ["show", "l40s"], env={"COLUMNS": "160"}).output
    assert re.search(r"peak int8 \(dense\)\s+733 TOP/s", l40s)
    assert re.search(r"peak bf16 \(2:4 sparse\)\s+733 TFLOP/s", l40s)
    m3 = runner.invoke(profiles_cli.app, ["show", "apple-m3-max"], env={"COLUMNS": "160"}).output
    assert "96 GiB (103,079,215,104 bytes)" in m3  # 0.75 x 128 GiB
    assert "128 GiB; the GPU may use 75% of it" in m3 and "unified memory" in m3
    doc = json.loads(runner.invoke(profiles_cli.app, ["show", "jetson-agx-orin", "--json"]).output)
    assert doc["unified_memory_bytes"] == 64 * 2**30 and doc["sparse_peak_flops_per_s"]["int8"] == 170e12


@pytest.mark.parametrize(
    "args, message",
    [(["show", "h100-sxn"], "did you mean 'h100-sxm'"),
     (["show", "h100-sxm", "--gpus", "8"], "--gpus sizes a cluster"),
     (["show", "dgx-h100-ndr", "--gpus", "12"], "not a whole number of 8-GPU nodes"),
     (["show", str(BAD / "cluster_unknown_topology.yaml")], "'hypercube' is unknown"),
     (["show", str(BAD / "wrong_unit_bandwidth.yaml")], "write it like '3.35 TB/s'")],
)
def test_cli_errors_are_one_line_exit_2(runner, args, message):
    res = runner.invoke(profiles_cli.app, args, env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_main_app_mounts_the_profiles_commands(runner):
    res = runner.invoke(main_app, ["profiles", "show", "gb200-nvl72"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "72 GPUs" in res.output and "gb200" in res.output


# --- packaging: profiles ship inside the package -------------------------------------------------
def test_pyproject_ships_every_subpackage_and_the_profiles():
    tomllib = pytest.importorskip("tomllib")
    st = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # an explicit list: setuptools' find cannot see hardware_profiles/ as archcost.profiles,
    # so a new archcost.* subpackage must be added here by hand -- this test says so
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "archcost").rglob("__init__.py")}
    assert set(st["packages"]) == on_disk | {"archcost.profiles", "archcost.runtime_profiles"}
    assert Path(st["package-dir"]["archcost.profiles"]) == Path("hardware_profiles")
    globs = st["package-data"]["archcost.profiles"]
    shipped = {p for g in globs for p in BUNDLED.glob(g)}
    assert shipped == set(BUNDLED.glob("*/*.yaml"))
    runtimes = ROOT / "runtime_profiles"
    assert Path(st["package-dir"]["archcost.runtime_profiles"]) == Path("runtime_profiles")
    shipped = {p for g in st["package-data"]["archcost.runtime_profiles"] for p in runtimes.glob(g)}
    assert shipped == set(runtimes.glob("*.yaml")) and len(shipped) >= 7


# --- the optional calibration record (archcost calibrate) ------------------------------------------
def test_calibration_is_an_optional_mapping_kept_on_the_profile(tmp_path):
    gpu_text = (BUNDLED / "gpus" / "h100-sxm.yaml").read_text()
    assert load_gpu("h100-sxm").calibration is None and load_cluster("dgx-h100-ndr").calibration is None
    (tmp_path / "gpu.yaml").write_text(gpu_text + "calibration:\n  date: '2026-01-31'\n"
                                       "  matmul: {fp32: [{m: 64, median_s: 1.0e-05}]}\n")
    g = load_gpu(str(tmp_path / "gpu.yaml"))
    assert g.calibration == {"date": "2026-01-31", "matmul": {"fp32": [{"m": 64, "median_s": 1e-05}]}}
    assert g == dataclasses.replace(g, calibration=None)  # a record, not part of the figures
    (tmp_path / "c.yaml").write_text(
        "name: c\ngpu: ./gpu.yaml\ngpus_per_node: 2\ncalibration: {backend: gloo}\nlevels:\n"
        "  - {name: loopback, domain_size: 2, bandwidth_per_gpu: 1 GB/s, latency: 300 us, topology: switch}\n")
    c = load_cluster(str(tmp_path / "c.yaml"))
    assert c.calibration == {"backend": "gloo"} and c.gpu.calibration["date"] == "2026-01-31"


@pytest.mark.parametrize("loader, text", [
    (load_gpu, (BUNDLED / "gpus" / "h100-sxm.yaml").read_text() + "calibration: [1, 2]\n"),
    (load_cluster, (BUNDLED / "clusters" / "dgx-h100-ndr.yaml").read_text() + "calibration: yes\n"),
])
def test_calibration_that_is_not_a_mapping_is_one_line(tmp_path, loader, text):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ProfileError) as info:
        loader(str(tmp_path / "p.yaml"))
    msg = str(info.value)
    assert msg.startswith("p.yaml: field 'calibration': must be a mapping") and "\n" not in msg


# --- measured refinements: conv curve, per-op curves, per-phase overhead ---------------------------
_REFINED = """conv_efficiency: [[1.0e+6, 0.05], [1.0e+9, 0.5]]
conv_backward_efficiency: [[1.0e+6, 0.02], [1.0e+9, 0.2]]
op_efficiency:
  aten.gelu: [[1.0e+4, 0.01], [1.0e+7, 0.04]]
op_overhead: {forward: 30 us, backward: 20 us, optimizer: 7 us}
"""


def _cpu_with(tmp_path, extra: str, name: str = "g.yaml") -> str:
    """The bundled cpu profile with ``extra`` YAML appended, written as ``name``: its path."""
    path = tmp_path / name
    path.write_text((BUNDLED / "gpus" / "cpu.yaml").read_text() + extra)
    return str(path)


def test_refinements_load_and_the_engine_uses_them_exactly(tmp_path):
    """Closed forms: a gelu in the table takes bytes / (bw x its curve) + the phase's overhead;
    an op outside it the memory curve; a conv its own curve; recomputation pays forward's."""
    import numpy as np

    from archcost.cost.compute import (
        CURVE_CONV,
        CURVE_CONV_BACKWARD,
        curve_for,
        memory_curve_index,
        overhead_seconds,
        roofline_seconds,
    )

    g = load_gpu(_cpu_with(tmp_path, _REFINED))
    assert g.op_overhead_s == pytest.approx({"forward": 30e-6, "backward": 20e-6,
                                             "optimizer": 7e-6})
    assert g.overhead_s("recompute") == g.overhead_s("forward")
    assert load_gpu("cpu").overhead_s("backward") == load_gpu("cpu").kernel_launch_s
    ops = ["aten.gelu", "aten.relu", "aten.convolution", "aten.convolution_backward"]
    flops = np.array([1e3, 1e3, 1e8, 1e8])
    nbytes = np.array([1e6, 1e6, 1e3, 1e3])
    peak = np.full(4, g.peak_flops_per_s["fp32"])
    curves = np.array([curve_for(c, op) for c, op in zip(["elementwise", "elementwise", "conv",
                                                          "conv"], ops)])
    assert list(curves) == [-1, -1, CURVE_CONV, CURVE_CONV_BACKWARD]
    t, _ = roofline_seconds(g, flops, nbytes, peak, curves, memory_curve_index(g, ops),
                            overhead_seconds(g, ["forward", "backward", "recompute", "backward"]))
    bw = g.mem_bw_bytes_per_s
    gelu_eff = 0.01 + (0.04 - 0.01) * (6 - 4) / (7 - 4)  # log10-linear between the points
    conv_eff = 0.05 + (0.5 - 0.05) * (8 - 6) / (9 - 6)
    assert t[0] == pytest.approx(1e6 / (bw * gelu_eff) + 30e-6, rel=1e-12)
    assert t[1] == pytest.approx(1e6 / (bw * g.memory_efficiency.at(1e6)) + 20e-6, rel=1e-12)
    assert t[2] == pytest.approx(1e8 / (peak[2] * conv_eff) + 30e-6, rel=1e-12)
    assert t[3] == pytest.approx(1e8 / (peak[3] * conv_eff * 0.4) + 20e-6, rel=1e-12)
    # without its own curve a backward convolution reads the forward's
    (tmp_path / "f.yaml").write_text((BUNDLED / "gpus" / "cpu.yaml").read_text()
                                     + _REFINED.replace("conv_backward_efficiency", "# none"))
    plain = load_gpu(str(tmp_path / "f.yaml"))
    t2, _ = roofline_seconds(plain, flops, nbytes, peak, curves, memory_curve_index(plain, ops),
                             overhead_seconds(plain, ["forward", "backward", "recompute", "backward"]))
    assert t2[3] == pytest.approx(1e8 / (peak[3] * conv_eff) + 20e-6, rel=1e-12)


def test_gelus_tanh_form_reads_its_own_curve_traced_and_priced(tmp_path):
    """The trace keys GELU's tanh approximation apart from the exact form, forward and
    backward (the calls' own ``approximate``); a profile with a curve per form prices each by
    its own (closed form), and a profile calibrated before the forms were timed apart prices
    the tanh form by aten.gelu's curve."""
    import torch
    import torch.nn.functional as F

    from archcost.cost.compute import compute_times, lower
    from archcost.trace.graph import efficiency_key
    from archcost.trace.recorder import CaptureState, Recorder
    from archcost.trace.repeats import RepeatTracker

    x = torch.randn(64, 1024, requires_grad=True)
    state = CaptureState(RepeatTracker.empty())
    with Recorder(state):
        (F.gelu(x, approximate="tanh").sum() + F.gelu(x).sum()).backward()
    keys = [efficiency_key(r) for r in state.records if r.op.startswith("aten.gelu")]
    assert sorted(keys) == ["aten.gelu", "aten.gelu(tanh)", "aten.gelu_backward",
                            "aten.gelu_backward(tanh)"]

    import networkx as nx

    def graph(keys):
        g = nx.DiGraph()
        for i, key in enumerate(keys):
            g.add_node(i, op=key.split("(")[0], efficiency_key=key, index=i, flops=0,
                       bytes_read=1_000_000, bytes_written=0, count=1, op_class="elementwise",
                       out_dtypes=["float32"], phase="forward", module="", launches=1.0)
        return g

    tanh_curve = "  aten.gelu(tanh): [[1.0e+4, 0.002], [1.0e+7, 0.008]]\n"
    both = load_gpu(_cpu_with(tmp_path, _REFINED.replace("op_overhead", tanh_curve + "op_overhead"),
                              "both.yaml"))
    older = load_gpu(_cpu_with(tmp_path, _REFINED, "older.yaml"))
    arrays = lower(graph(["aten.gelu", "aten.gelu(tanh)"]))
    bw, over = both.mem_bw_bytes_per_s, both.overhead_s("forward")
    at = (6 - 4) / (7 - 4)  # 1e6 bytes, log10-linear between the points
    exact, tanh = 0.01 + 0.03 * at, 0.002 + 0.006 * at
    t = compute_times(arrays, both).seconds
    assert t == pytest.approx([1e6 / (bw * exact) + over, 1e6 / (bw * tanh) + over], rel=1e-12)
    t = compute_times(arrays, older).seconds
    assert t == pytest.approx([1e6 / (bw * exact) + over] * 2, rel=1e-12)


def test_row_wise_ops_on_rows_under_one_vector_read_their_short_forms_curve(tmp_path):
    """A softmax, log-softmax (forward and backward) or top-k along rows of fewer than 16
    elements, and a concatenation of pieces that short, are traced as the op's "(short)" form;
    rows of 16 or more, a concatenation along the outer dim, are not. Traced from a real step
    and priced: a profile with a curve for the short form prices those calls by it (closed
    form), the long calls and a profile without the form by the op's own curve."""
    import torch
    import torch.nn.functional as F

    from archcost.cost.compute import compute_times, lower
    from archcost.trace.graph import build_graph
    from archcost.trace.recorder import CaptureState, Recorder
    from archcost.trace.repeats import RepeatTracker

    short, long = torch.randn(64, 4, requires_grad=True), torch.randn(64, 16, requires_grad=True)
    state = CaptureState(RepeatTracker.empty())
    with Recorder(state):
        loss = sum(F.softmax(x, -1).sum() + F.log_softmax(x, 1).sum() + x.topk(2)[0].sum()
                   + torch.cat([x, x], -1).sum() for x in (short, long))
        (loss + torch.cat([short, short], 0).sum()).backward()
    g = build_graph(state.records)
    forms = sorted((d["efficiency_key"], d["out_shapes"][0]) for _, d in g.nodes(data=True)
                   if d["op"] in ("aten._softmax", "aten._log_softmax", "aten.topk", "aten.cat",
                                  "aten._softmax_backward_data",
                                  "aten._log_softmax_backward_data"))
    assert forms == sorted([
        ("aten._softmax(short)", [64, 4]), ("aten._softmax", [64, 16]),
        ("aten._log_softmax(short)", [64, 4]), ("aten._log_softmax", [64, 16]),
        ("aten.topk(short)", [64, 2]), ("aten.topk", [64, 2]),
        ("aten.cat(short)", [64, 8]), ("aten.cat", [64, 32]), ("aten.cat", [128, 4]),
        ("aten._softmax_backward_data(short)", [64, 4]),
        ("aten._softmax_backward_data", [64, 16]),
        ("aten._log_softmax_backward_data(short)", [64, 4]),
        ("aten._log_softmax_backward_data", [64, 16])])

    curves = ("  aten._softmax: [[1.0e+3, 0.05], [1.0e+6, 0.05]]\n"
              "  aten._softmax(short): [[1.0e+3, 0.002], [1.0e+6, 0.002]]\n")
    both = load_gpu(_cpu_with(tmp_path, _REFINED.replace("  aten.gelu", curves + "  aten.gelu"),
                              "both.yaml"))
    older = load_gpu(_cpu_with(tmp_path, _REFINED.replace(
        "  aten.gelu", curves.splitlines()[0] + "\n  aten.gelu"), "older.yaml"))
    fwd = [n for n, d in g.nodes(data=True) if d["op"] == "aten._softmax"]
    sub = g.subgraph(fwd).copy()
    arrays = lower(sub)
    nbytes = [d["bytes_read"] + d["bytes_written"] for _, d in sub.nodes(data=True)]
    is_short = [d["efficiency_key"].endswith("(short)") for _, d in sub.nodes(data=True)]
    assert sorted(is_short) == [False, True]
    bw, over = both.mem_bw_bytes_per_s, both.overhead_s("forward")
    want = [b / (bw * (0.002 if s else 0.05)) + over for b, s in zip(nbytes, is_short)]
    assert compute_times(arrays, both).seconds == pytest.approx(want, rel=1e-12)
    assert compute_times(arrays, older).seconds == pytest.approx(
        [b / (bw * 0.05) + over for b in nbytes], rel=1e-12)


def test_where_the_host_runs_ahead_its_time_per_op_is_a_floor_not_an_addition(tmp_path):
    """host_ahead (a GPU calibrated by archcost): an op takes max(roofline + kernel_launch,
    its phase's host figure); a view (no FLOPs, no bytes) still takes nothing; the inference
    phase's figure is the floor of a generation's forward ops. Closed forms on a tiny op (the
    host's figure wins) and a large one (the device's time wins)."""
    from archcost.cost.compute import (
        floor_seconds,
        memory_curve_index,
        overhead_seconds,
        roofline_seconds,
    )

    host = "host_ahead: true\nop_overhead: {forward: 30 us, backward: 20 us, inference: 9 us}\n"
    g = load_gpu(_cpu_with(tmp_path, host))
    plain = load_gpu(_cpu_with(tmp_path, host.replace("true", "false"), "p.yaml"))
    launch = g.kernel_launch_s
    assert g.host_ahead and not plain.host_ahead and not load_gpu("h100-sxm").host_ahead
    assert g.overhead_s("forward") == g.overhead_s("backward") == launch
    assert g.host_floor_s("forward") == g.host_floor_s("recompute") == pytest.approx(30e-6)
    assert plain.host_floor_s("forward") == 0.0
    assert plain.overhead_s("forward") == pytest.approx(30e-6)
    assert g.for_inference().host_floor_s("forward") == pytest.approx(9e-6)  # a generation's
    ops = ["aten.relu", "aten.relu", "aten.view"]
    nbytes = np.array([1e3, 1e10, 0.0])
    args = (g, np.zeros(3), nbytes, np.full(3, g.peak_flops_per_s["fp32"]), np.full(3, -1),
            memory_curve_index(g, ops))
    phases = ["forward", "backward", "forward"]
    t, _ = roofline_seconds(*args, overhead_seconds(g, phases), floor=floor_seconds(g, phases))
    big = 1e10 / (g.mem_bw_bytes_per_s * g.memory_efficiency.at(1e10)) + launch
    assert big > 20e-6  # the device's time wins
    assert list(t) == pytest.approx([g.host_floor_s("forward"), big, 0.0], rel=1e-12)
    t_plain, _ = roofline_seconds(plain, *args[1:], overhead_seconds(plain, phases),
                                  floor=floor_seconds(plain, phases))
    small = 1e3 / (g.mem_bw_bytes_per_s * g.memory_efficiency.at(1e3))
    assert list(t_plain) == pytest.approx([small + plain.overhead_s("forward"),
                                           big - launch + plain.overhead_s("backward"), 0.0],
                                          rel=1e-12)


@pytest.mark.parametrize("extra, message", [
    ("host_ahead: yes please\n", "field 'host_ahead': 'yes please' must be true or false"),
    ("op_overhead: {forwards: 3 us}\n", "field 'op_overhead.forwards': unknown phase"),
    ("op_overhead: {forward: 3}\n", "op_overhead.forward"),
    ("op_efficiency: {gelu: [[1.0, 0.5]]}\n", "keys are aten op names"),
    ("op_efficiency: {aten.gelu: [[1.0, 1.5]]}\n", "efficiency must be in (0, 1]"),
    ("op_efficiency: [1, 2]\n", "must map aten op names to curves"),
])
def test_bad_refinements_are_one_line(tmp_path, extra, message):
    with pytest.raises(ProfileError) as info:
        load_gpu(_cpu_with(tmp_path, extra, "p.yaml"))
    msg = str(info.value)
    assert msg.startswith("p.yaml: ") and "\n" not in msg and message in msg, msg


_OWN = """name: own
gpu: cpu
gpus_per_node: 4
levels:
  - name: loopback
    domain_size: 4
    bandwidth_per_gpu: 2 GB/s
    latency: 100 us
    topology: switch
    collectives:
      all_reduce: {bandwidth_per_gpu: 500 MB/s, latency: 300 us}
      send_recv: {bandwidth_per_gpu: 4 GB/s, latency: 50 us}
  - {name: net, domain_size: null, bandwidth_per_gpu: 1 GB/s, latency: 1 ms, topology: fat-tree}
"""


def test_a_levels_own_collective_figures_replace_its_pair_for_that_collective(tmp_path):
    """Closed forms on one level (n=4, ring): all-reduce 6 alpha + 1.5 S / bw with its own
    figures; all-gather 3 alpha + 0.75 S / bw with the level's; the plan kernels agree."""
    from archcost.cost.comm import Collective, Group, collective_cost, level_arrays
    from archcost.cost.kernels import COLL_ALL_GATHER, COLL_ALL_REDUCE
    from archcost.cost.placement import FIG_LEN, group_figures, group_seconds

    (tmp_path / "own.yaml").write_text(_OWN)
    c = load_cluster(str(tmp_path / "own.yaml"), 4)
    lv = c.levels[0]
    assert lv.figures("all_reduce") == pytest.approx((300e-6, 500e6))
    assert lv.figures("all_gather") == (lv.latency_s, lv.bandwidth_per_gpu_bytes_per_s)
    assert c.levels[1].collectives == ()
    s = 64e6
    ar = collective_cost(Collective.ALL_REDUCE, s, 4, c).seconds
    ag = collective_cost(Collective.ALL_GATHER, s, 4, c).seconds
    assert ar == pytest.approx(6 * 300e-6 + 1.5 * s / 500e6, rel=1e-12)
    assert ag == pytest.approx(3 * 100e-6 + 0.75 * s / 2e9, rel=1e-12)
    dom, bw, lat, share = level_arrays(c)
    assert bw.shape == lat.shape == (2, 6)
    fig = np.empty(FIG_LEN)
    group_figures(Group.axis(4, 1, 4).geo, dom, bw, lat, share, np.empty(2, dtype=np.int64), fig)
    assert group_seconds(COLL_ALL_REDUCE, s, 4, fig)[0] == ar
    assert group_seconds(COLL_ALL_GATHER, s, 4, fig)[0] == ag
    # scaling the level keeps each collective's ratio to it
    half = lv.scaled(bw_factor=0.5, latency_factor=2.0)
    assert half.figures("all_reduce") == pytest.approx((600e-6, 250e6))
    assert half.figures("all_gather") == pytest.approx((200e-6, 1e9))


def test_collective_names_follow_the_kernels_kind_codes():
    from archcost.cost import kernels as k
    from archcost.hardware.profile import COLLECTIVE_NAMES

    for code, name in ((k.COLL_ALL_REDUCE, "all_reduce"), (k.COLL_ALL_GATHER, "all_gather"),
                       (k.COLL_REDUCE_SCATTER, "reduce_scatter"), (k.COLL_ALL_TO_ALL, "all_to_all"),
                       (k.COLL_BROADCAST, "broadcast"), (k.COLL_SEND_RECV, "send_recv")):
        assert COLLECTIVE_NAMES[code] == name


@pytest.mark.parametrize("old, new, message", [
    ("all_reduce: {", "allreduce: {", "field 'levels[0].collectives.allreduce': unknown collective; "
                                      "did you mean 'all_reduce'?"),
    (", latency: 300 us}", "}", "field 'levels[0].collectives.all_reduce.latency': missing"),
    ("500 MB/s", "500 MB", "levels[0].collectives.all_reduce.bandwidth_per_gpu"),
    ("    collectives:\n      all_reduce: {bandwidth_per_gpu: 500 MB/s, latency: 300 us}\n"
     "      send_recv: {bandwidth_per_gpu: 4 GB/s, latency: 50 us}\n",
     "    collectives: [all_reduce]\n", "'levels[0].collectives': must map collectives"),
])
def test_bad_collective_figures_are_one_line(tmp_path, old, new, message):
    assert old in _OWN
    (tmp_path / "own.yaml").write_text(_OWN.replace(old, new, 1))
    with pytest.raises(ProfileError) as info:
        load_cluster(str(tmp_path / "own.yaml"))
    msg = str(info.value)
    assert msg.startswith("own.yaml: ") and "\n" not in msg and message in msg, msg


def test_attention_reads_the_per_slice_curve_at_its_flops_per_slice(tmp_path):
    """Closed form on a traced GPT-2 (batch 3, 4 heads): each attention op takes
    FLOPs / (peak x curve(FLOPs / 12)) + the launch; without the field, curve(FLOPs)."""
    import numpy as np

    from archcost.cost.compute import compute_times, lower
    from archcost.loader import load_model_file
    from archcost.trace import trace_model
    from archcost.trace.precision import parse_precision
    from tests.conftest import ROOT

    text = (BUNDLED / "gpus" / "cpu.yaml").read_text()
    (tmp_path / "s.yaml").write_text(text + "attention_head_efficiency: [[1.0e+3, 1.0e-4], [1.0e+9, 1.0e-3]]\n")
    sliced, plain = load_gpu(str(tmp_path / "s.yaml")), load_gpu("cpu")
    spec = load_model_file(str(ROOT / "models" / "gpt2.py"),
                           {"layers": 1, "hidden": 64, "heads": 4, "vocab": 128})
    arrays = lower(trace_model(spec, 3, 16, parse_precision("fp32"), "adamw").graph)
    att = [i for i, c in enumerate(arrays.op_class) if c == "attention"]
    assert len(att) == 2  # forward and backward
    for gpu, at in ((sliced, lambda f: sliced.attention_head_efficiency.at(f / 12)),
                    (plain, lambda f: plain.attention_efficiency.at(f))):
        t = compute_times(arrays, gpu).seconds
        for i in att:
            f = arrays.flops[i]
            work = max(f / (gpu.peak_flops_per_s["fp32"] * at(f)),
                       arrays.nbytes[i] / (gpu.mem_bw_bytes_per_s * gpu.memory_efficiency.at(arrays.nbytes[i])))
            assert t[i] == pytest.approx((work + gpu.overhead_s(arrays.phase[i])) * arrays.count[i],
                                         rel=1e-12)
    # compute-bound at these efficiencies: the per-slice reading is what sets the time
    res = compute_times(arrays, sliced)
    assert np.all(res.bound[att] == 0)


_TABLE = """matmul_shape_efficiency:
  dims: [16, 256, 4096]
  values:
    - [[0.01, 0.02, 0.03], [0.04, 0.05, 0.06], [0.07, 0.08, 0.09]]
    - [[0.11, 0.12, 0.13], [0.14, 0.15, 0.16], [0.17, 0.18, 0.19]]
    - [[0.21, 0.22, 0.23], [0.24, 0.25, 0.26], [0.27, 0.28, 0.29]]
"""


def _trilinear(dims, values, m, n, k):
    """Brute force: the 8 corners around (m, n, k) in log2 space, weights from each axis;
    clamped above the grid, times sqrt(x / dims[0]) per axis below it (the stated rule)."""
    import itertools
    import math

    def axis(x):
        below = math.sqrt(x / dims[0]) if x < dims[0] else 1.0
        lx = min(max(math.log2(x), math.log2(dims[0])), math.log2(dims[-1]))
        for i in range(len(dims) - 1):
            lo, hi = math.log2(dims[i]), math.log2(dims[i + 1])
            if lx <= hi:
                return i, (lx - lo) / (hi - lo), below
        raise AssertionError

    (i, wi, fi), (j, wj, fj), (l_, wl, fl) = axis(m), axis(n), axis(k)
    return fi * fj * fl * sum(
        (wi if a else 1 - wi) * (wj if b else 1 - wj) * (wl if c else 1 - wl)
        * values[i + a][j + b][l_ + c] for a, b, c in itertools.product((0, 1), repeat=3))


def test_shape_table_reads_cells_exactly_and_trilinear_in_log2_between(tmp_path):
    import numpy as np

    gpu = load_gpu(_cpu_with(tmp_path, _TABLE))
    t = gpu.matmul_shape_efficiency["all"]
    assert gpu.shape_table("bf16") is t and gpu.shape_table("fp32") is t  # one for every dtype
    dims = (16, 256, 4096)
    values = [[[round(0.1 * i + 0.03 * j + 0.01 * (k + 1), 10) for k in range(3)]
               for j in range(3)] for i in range(3)]
    assert t.dims == dims and np.allclose(np.array(t.values), values)
    assert float(t.at(256, 4096, 16)) == pytest.approx(0.17)  # a cell: m=256, n=4096, k=16
    shapes = [(64, 64, 64), (100, 3000, 20), (16, 16, 16), (1, 1, 1), (1e6, 1e6, 1e6),
              (300, 17, 9000), (2048, 128, 512)]
    got = t.at(*np.array(shapes, dtype=float).T)
    for (m, n, k), g in zip(shapes, got):
        assert g == pytest.approx(_trilinear(dims, values, m, n, k), rel=1e-12), (m, n, k)
    # clamped above the grid; below it, sqrt(x / 16) per axis: (1/4)^3 at (1, 1, 1)
    assert float(t.at(1, 1, 1)) == pytest.approx(0.01 / 64) and float(t.at(1e9, 1e9, 1e9)) == 0.29
    assert float(t.at(4, 256, 16)) == pytest.approx(0.04 * 0.5)  # m below: sqrt(4 / 16)
    # a part twice as fast reaches each cell's efficiency at 2x the FLOPs (dims x 2^(1/3))
    s = t.scaled(2.0)
    assert float(s.at(64 * 2 ** (1 / 3), 100 * 2 ** (1 / 3), 9 * 2 ** (1 / 3))) == \
        pytest.approx(float(t.at(64, 100, 9)), rel=1e-9)


_WARM_VALUES = [[[0.3 + 0.1 * i + 0.02 * j + 0.01 * k for k in range(3)] for j in range(3)]
                for i in range(3)]
_WARM = "matmul_shape_efficiency_warm:\n  dims: [16, 64, 256]\n  values:\n" + "".join(
    f"    - {plane}\n" for plane in _WARM_VALUES)


def test_warm_rows_replace_their_m_planes_read_at_the_tables_n_and_k(tmp_path):
    """``matmul_shape_efficiency_warm`` holds rows of the table timed with the weights in the
    last-level cache: ``warm_weights`` gives the table with each m plane the rows measure
    (m = 16 and 256 here; their m = 64 is no plane of the table) read from them, trilinear in
    log2 at the table's n and k (clamped above the rows' grid: brute force), every other plane
    as it was; rows for a table the profile lacks are refused in one line."""
    import numpy as np

    gpu = load_gpu(_cpu_with(tmp_path, _TABLE + _WARM))
    cold = gpu.matmul_shape_efficiency["all"]
    warm = gpu.warm_weights()
    assert warm.matmul_shape_efficiency_warm == {} and gpu.warm_weights() == warm
    got = np.array(warm.matmul_shape_efficiency["all"].values)
    for i, m in enumerate((16, 256, 4096)):
        for j, n in enumerate((16, 256, 4096)):
            for k_, k in enumerate((16, 256, 4096)):
                want = (_trilinear((16, 64, 256), _WARM_VALUES, m, n, k) if m < 4096
                        else cold.values[i][j][k_])
                assert got[i, j, k_] == pytest.approx(want, rel=1e-12), (m, n, k)
    assert got[1, 1, 0] == pytest.approx(_WARM_VALUES[2][2][0])  # a cell of the rows
    assert got[0, 2, 2] == pytest.approx(_WARM_VALUES[0][2][2])  # clamped at n, k = 256
    plain = load_gpu(_cpu_with(tmp_path, _TABLE, "plain.yaml"))
    assert plain.warm_weights() is plain  # no warm rows: the profile as it is
    with pytest.raises(ProfileError) as info:
        load_gpu(_cpu_with(tmp_path, _WARM, "rows-alone.yaml"))
    msg = str(info.value)
    assert "'matmul_shape_efficiency_warm': warm rows of a table matmul_shape_efficiency " \
        "does not have" in msg and "\n" not in msg


def test_the_engine_prices_2d_matmuls_by_the_shape_table(tmp_path):
    """Closed form: an mm with (m, n, k) takes 2mnk / (peak x table(m, n, k)) + launch; a bmm
    (no shape) its FLOPs curve; without a table the mm reads the curve too."""
    import numpy as np

    from archcost.cost.compute import (
        CURVE_MATMUL,
        memory_curve_index,
        overhead_seconds,
        roofline_seconds,
    )

    g = load_gpu(_cpu_with(tmp_path, _TABLE))
    plain = load_gpu("cpu")
    ops = ["aten.mm", "aten.bmm"]
    mnk = np.array([[100.0, 3000.0, 20.0], [0.0, 0.0, 0.0]])
    flops = np.array([2 * 100 * 3000 * 20.0, 2 * 100 * 3000 * 20.0])
    nbytes = np.array([1.0, 1.0])
    peak = np.full(2, g.peak_flops_per_s["fp32"])
    curves = np.full(2, CURVE_MATMUL)
    launch = overhead_seconds(g, ["forward", "forward"])
    t, _ = roofline_seconds(g, flops, nbytes, peak, curves, memory_curve_index(g, ops), launch,
                            mnk=mnk)
    eff = _trilinear((16, 256, 4096), np.array(g.shape_table("fp32").values), 100, 3000, 20)
    assert t[0] == pytest.approx(flops[0] / (peak[0] * eff) + launch[0], rel=1e-12)
    assert t[1] == pytest.approx(flops[1] / (peak[1] * g.matmul_efficiency.at(flops[1]))
                                 + launch[1], rel=1e-12)
    t2, _ = roofline_seconds(plain, flops, nbytes, peak, curves, memory_curve_index(plain, ops),
                             launch, mnk=mnk)
    assert t2[0] == pytest.approx(t[1], rel=1e-12)


def test_a_table_measured_in_one_dtype_is_read_at_the_same_duration_shape_by_another(tmp_path):
    """The one table of every dtype, measured in fp32 (``dtype: fp32``, as a calibration writes
    it): an fp32 mm reads its own cell; a bf16 mm on a part whose bf16 peak is 8x the fp32 one
    reads the cell of the fp32 matmul of equal duration, each dim times cbrt(1/8) = 1/2. A table
    without a dtype is read at the op's own shape by every dtype."""
    import dataclasses

    import numpy as np

    from archcost.cost.compute import CURVE_MATMUL, memory_curve_index, roofline_seconds

    base = load_gpu(_cpu_with(tmp_path, _TABLE.replace("  dims:", "  dtype: fp32\n  dims:")))
    assert base.shape_table("bf16").dtype == "fp32"
    g = dataclasses.replace(base, peak_flops_per_s={**base.peak_flops_per_s, "fp32": 1e13,
                                                    "bf16": 8e13})
    untyped = dataclasses.replace(g, matmul_shape_efficiency={
        k: dataclasses.replace(t, dtype=None) for k, t in g.matmul_shape_efficiency.items()})
    m, n, k = 200.0, 3000.0, 40.0
    flops = np.full(2, 2 * m * n * k)
    peak = np.array([1e13, 8e13])
    args = (flops, np.ones(2), peak, np.full(2, CURVE_MATMUL),
            memory_curve_index(g, ["aten.mm"] * 2), np.zeros(2))
    kw = {"mnk": np.array([[m, n, k]] * 2), "keys": ["fp32", "bf16"]}
    t, _ = roofline_seconds(g, *args, **kw)
    values = np.array(g.shape_table("fp32").values)
    assert t[0] == pytest.approx(flops[0] / (1e13 * _trilinear((16, 256, 4096), values, m, n, k)),
                                 rel=1e-12)
    assert t[1] == pytest.approx(flops[1] / (8e13 * _trilinear((16, 256, 4096), values, m / 2,
                                                               n / 2, k / 2)), rel=1e-12)
    t_plain, _ = roofline_seconds(untyped, *args, **kw)
    assert t_plain[1] == pytest.approx(flops[1] / (8e13 * _trilinear((16, 256, 4096), values,
                                                                     m, n, k)), rel=1e-12)
    assert t[1] > t_plain[1]  # a smaller shape: a lower share of the faster peak


@pytest.mark.parametrize("table, message", [
    ("{dtype: bf61, dims: [16, 64], values: [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]}",
     "'bf61' is not a dtype"),
    ("{dims: [16], values: [[[0.5]]]}", "2 or more increasing positive sizes"),
    ("{dims: [64, 16], values: []}", "2 or more increasing positive sizes"),
    ("{dims: [16, 64], values: [[[0.5, 0.5]]]}", "must be a 2 x 2 x 2 nested list"),
    ("{dims: [16, 64], values: [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 1.5]]]}",
     "cell (64, 64, 64) is 1.5; efficiency must be in (0, 1]"),
    ("{dims: [16, 64], values: [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]], k: 1}",
     "give either dims (one grid for m, n and k) or m, n and k, not both"),
    ("{dims: [16, 64], values: [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]], x: 1}",
     "unknown key; use dims (or m, n and k) and values"),
    ("[1, 2]", "must be a mapping {dims"),
])
def test_bad_shape_tables_are_one_line(tmp_path, table, message):
    with pytest.raises(ProfileError) as info:
        load_gpu(_cpu_with(tmp_path, f"matmul_shape_efficiency: {table}\n", "p.yaml"))
    msg = str(info.value)
    assert msg.startswith("p.yaml: field 'matmul_shape_efficiency") and "\n" not in msg
    assert message in msg, msg
