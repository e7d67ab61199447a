"""Collectives placed on a cluster's link levels (formulas: nccl-tests PERFORMANCE.md)."""

from __future__ import annotations

import pytest

from archcost.cost.comm import Collective, collective_cost, span_levels
from archcost.hardware.profile import load_cluster


@pytest.fixture(scope="module")
def dgx():
    return load_cluster("dgx-h100-ndr", gpus=64)


def test_groups_inside_a_node_use_nvlink_only(dgx):
    assert span_levels(dgx, 8) == (0, 8)
    c = collective_cost(Collective.ALL_REDUCE, 1e9, 8, dgx)
    nv = dgx.levels[0]
    ring = 2 * 7 / 8 * 1e9 / nv.bandwidth_per_gpu_bytes_per_s + 2 * 7 * nv.latency_s
    assert c.seconds == pytest.approx(ring) and c.algorithm == "ring"
    assert set(c.bytes_per_level) == {"nvlink4"}


def test_strided_groups_cross_nodes(dgx):
    # 8 data-parallel ranks 8 apart (tp=8 inside the node): one rank per node, all on the NIC
    outer, per_node = span_levels(dgx, 8, stride=8)
    assert (outer, per_node) == (1, 1)
    c = collective_cost(Collective.ALL_GATHER, 1e9, 8, dgx, stride=8)
    ib = dgx.levels[1]
    assert c.seconds == pytest.approx(7 / 8 * 1e9 / ib.bandwidth_per_gpu_bytes_per_s + 7 * ib.latency_s)
    assert set(c.bytes_per_level) == {"ib-ndr"}


def test_hierarchical_all_reduce_beats_a_flat_ring_across_nodes(dgx):
    c = collective_cost(Collective.ALL_REDUCE, 4e9, 64, dgx)
    assert c.algorithm == "hierarchical"
    nv, ib = dgx.levels
    flat = 2 * 63 / 64 * 4e9 / ib.bandwidth_per_gpu_bytes_per_s
    assert c.seconds < flat
    # inter-node traffic per rank: all-reduce of 1/8 of the buffer across 8 nodes
    assert c.bytes_per_level["ib-ndr"] == pytest.approx(2 * 7 / 8 * 4e9 / 8)
    assert c.bytes_per_level["nvlink4"] == pytest.approx(2 * 7 / 8 * 4e9)


def test_trivial_collectives_are_free(dgx):
    assert collective_cost(Collective.ALL_REDUCE, 1e9, 1, dgx).seconds == 0.0
    assert collective_cost(Collective.SEND_RECV, 0, 2, dgx).seconds == 0.0
