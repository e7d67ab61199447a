"""Collectives placed on a cluster's link levels (formulas: nccl-tests PERFORMANCE.md)."""

from __future__ import annotations

import dataclasses

import pytest

from archcost.cost.comm import Collective, Group, collective_cost
from archcost.hardware.profile import load_cluster


@pytest.fixture(scope="module")
def dgx():
    return load_cluster("dgx-h100-ndr", gpus=64)


def test_groups_inside_a_node_use_nvlink_only(dgx):
    c = collective_cost(Collective.ALL_REDUCE, 1e9, 8, dgx)
    nv = dgx.levels[0]
    ring = 2 * 7 / 8 * 1e9 / nv.bandwidth_per_gpu_bytes_per_s + 2 * 7 * nv.latency_s
    assert c.seconds == pytest.approx(ring) and c.algorithm == "ring"
    assert set(c.bytes_per_level) == {"nvlink4"} and c.levels == ("nvlink4",)


def test_strided_groups_cross_nodes(dgx):
    # 8 data-parallel ranks 8 apart (tp=8 inside the node): one rank per node, all on the NIC
    c = collective_cost(Collective.ALL_GATHER, 1e9, 8, dgx, stride=8)
    ib = dgx.levels[1]
    assert c.seconds == pytest.approx(7 / 8 * 1e9 / ib.bandwidth_per_gpu_bytes_per_s + 7 * ib.latency_s)
    assert set(c.bytes_per_level) == {"ib-ndr"}
    assert c == collective_cost(Collective.ALL_GATHER, 1e9, Group.axis(8, 8, 64), dgx)


def test_hierarchical_all_reduce_wins_where_nvlink_is_far_faster_than_the_nics(dgx):
    """2 nodes of 8, NVLink at 1.8 TB/s a GPU: the flat ring moves 2 (15/16) S over the node's
    8 x 50 GB/s; reduce-scatter inside, all-reduce of S/8 across, all-gather inside moves only
    S/8 per GPU across (2 (1/2) S/8 at 50 GB/s each) at the price of 2 (7/8) S on NVLink."""
    fast = dataclasses.replace(dgx.levels[0], bandwidth_per_gpu_bytes_per_s=1.8e12)
    c16 = dataclasses.replace(dgx, levels=(fast, dgx.levels[1]), gpus=16, nodes=2)
    size = 4e9
    c = collective_cost(Collective.ALL_REDUCE, size, 16, c16)
    assert c.algorithm == "hierarchical"
    inner = 2 * 7 / 8 * size / 1.8e12 + 2 * 7 * 3e-6
    outer = min(2 * 1 / 2 * size / 8 / 50e9 + 2 * 6e-6, 2 * size / 8 / 50e9 + 2 * 6e-6)
    assert c.seconds == pytest.approx(inner + outer)
    assert c.seconds < 2 * 15 / 16 * size / 400e9
    assert c.bytes_per_level["ib-ndr"] == pytest.approx(2 * 1 / 2 * size / 8)
    assert c.bytes_per_level["nvlink4"] == pytest.approx(2 * 7 / 8 * size)
    # on the DGX's own 450 GB/s NVLink the flat ring over all 8 NICs of each node is faster
    assert collective_cost(Collective.ALL_REDUCE, size, 16, dgx).algorithm != "hierarchical"


def test_trivial_collectives_are_free(dgx):
    assert collective_cost(Collective.ALL_REDUCE, 1e9, 1, dgx).seconds == 0.0
    assert collective_cost(Collective.SEND_RECV, 0, 2, dgx).seconds == 0.0
